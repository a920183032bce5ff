"""SlidingSTFT: any chunking == scipy.signal.stft over the whole recording."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ops.stft import SlidingSTFT, reference_stft
from tests.streaming import cuts, run_chunked

TOL = 1e-12  # linear magnitude, unit-variance input; log compared on the same values


@st.composite
def stft_case(draw):
    n_fft = draw(st.sampled_from([100, 64, 7]))
    hop = draw(st.integers(1, n_fft))
    bins = draw(st.one_of(st.none(), st.integers(1, n_fft // 2 + 1)))
    window = draw(st.sampled_from(["hamming", "hann", ("kaiser", 4.0)]))
    n = draw(st.integers(0, 900))
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((2, n))
    return dict(n_fft=n_fft, hop=hop, n_bins=bins, window=window), x, draw(cuts(n))


@given(stft_case(), st.booleans())
def test_chunked_equals_scipy_stft(case, log):
    params, x, points = case
    y = run_chunked(lambda: SlidingSTFT(**params, log=log), x, points)
    ref = reference_stft(
        x, params["n_fft"], params["hop"], params["window"], params["n_bins"], log=False
    )
    assert y.shape == ref.shape
    np.testing.assert_allclose(np.exp(y) - 1e-8 if log else y, ref, rtol=1e-9, atol=TOL)


@given(stft_case(), st.integers(0, 12))
def test_snapshot_restore_continues_exactly(case, at):
    params, x, points = case
    whole = run_chunked(lambda: SlidingSTFT(**params), x, points)
    resumed = run_chunked(lambda: SlidingSTFT(**params), x, points, restore_at=at)
    np.testing.assert_array_equal(whole, resumed)


def test_frames_sit_on_the_second_grid():
    """Frame f covers samples [100 f, 100 f + 100): a burst in second 10 lights frame 10 only."""
    x = np.zeros((1, 3000))
    x[0, 1000:1100] = np.sin(np.arange(100) * 2 * np.pi * 10 / 100)
    y = SlidingSTFT(100, 100, n_bins=51).push(x)
    energy = y[0].max(axis=0)
    assert int(np.argmax(energy)) == 10
    assert np.all(energy[np.arange(30) != 10] < energy[10] - 10)


def test_nan_frame_only():
    x = np.random.default_rng(0).standard_normal((1, 500))
    x[0, 250] = np.nan
    y = SlidingSTFT(100, 100).push(x)
    assert np.isnan(y[0, :, 2]).all() and np.isfinite(np.delete(y[0], 2, axis=-1)).all()


def test_bad_parameters():
    with pytest.raises(ValueError, match="hop"):
        SlidingSTFT(100, 101)
    with pytest.raises(ValueError, match="n_bins"):
        SlidingSTFT(100, 100, n_bins=52)
