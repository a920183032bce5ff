"""Resampler: any chunking == scipy.signal.resample_poly over the whole recording."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ops.resample import Resampler, reference_resample
from tests.streaming import cuts, run_chunked

TOL = 1e-12  # measured ≤ 2e-15 for unit-variance input; different summation order only

RATES = [(512, 100), (128, 100), (210, 100), (100, 100), (1, 100), (100, 256), (250, 100)]


@st.composite
def resample_case(draw, max_n: int = 1500):
    fs_in, fs_out = draw(st.sampled_from(RATES))
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((2, 1, n))
    return fs_in, fs_out, x, draw(cuts(n))


@given(resample_case())
def test_chunked_equals_resample_poly(case):
    fs_in, fs_out, x, points = case
    y = run_chunked(lambda: Resampler(fs_in, fs_out), x, points)
    ref = reference_resample(x, fs_in, fs_out)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=TOL)


@given(resample_case(), st.integers(0, 12))
def test_snapshot_restore_continues_exactly(case, at):
    fs_in, fs_out, x, points = case
    whole = run_chunked(lambda: Resampler(fs_in, fs_out), x, points)
    resumed = run_chunked(lambda: Resampler(fs_in, fs_out), x, points, restore_at=at)
    np.testing.assert_array_equal(whole, resumed)


def test_time_grid_does_not_shift():
    """An impulse at input time t comes out peaking at output sample t·fs_out."""
    for fs_in in (512, 128, 210):
        x = np.zeros((1, fs_in * 20))
        x[0, fs_in * 7] = 1.0  # t = 7 s
        r = Resampler(fs_in, 100)
        y = np.concatenate(
            [r.push(x[:, i : i + 97]) for i in range(0, x.shape[-1], 97)] + [r.flush()], axis=-1
        )
        assert int(np.argmax(y[0])) == 700


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf·0 in BLAS
def test_nan_marks_exactly_the_blocks_that_read_it():
    """Non-finite input is missing data: each output block whose input window holds a NaN is
    NaN (at 512 Hz that is < 0.5 s around the gap); every other output equals the reference."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 5120))
    x[0, 2000:2100] = np.nan
    x[0, 4000] = np.inf
    r = Resampler(512, 100)
    y = np.concatenate([r.push(x[:, i : i + 512]) for i in range(0, 5120, 512)] + [r.flush()], -1)
    block = np.arange(y.shape[-1]) // r.up
    w_start = block * r.down + r._ws
    missing = np.flatnonzero(~np.isfinite(x[0]))
    expect = np.zeros(y.shape[-1], dtype=bool)
    for i in missing:
        expect |= (w_start <= i) & (i < w_start + r._w)
    np.testing.assert_array_equal(~np.isfinite(y[0]), expect)
    clean = reference_resample(np.where(np.isfinite(x), x, 0.0), 512, 100)
    np.testing.assert_allclose(y[0, ~expect], clean[0, ~expect], atol=TOL)


def test_rejects_bad_rates():
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 100)
    with pytest.raises(ValueError, match="odd length"):
        Resampler(512, 100, fir=np.ones(4))
