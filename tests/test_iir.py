"""SOSFilter: any chunking == scipy.signal.sosfilt over the whole recording."""

import numpy as np
import pytest
import scipy.signal as sps
from hypothesis import given
from hypothesis import strategies as st

from edge.ops.iir import SOSFilter, design_butter, reference_sosfilt
from tests.streaming import cuts, run_chunked

TOL = 1e-12  # same compiled kernel, same sample order: equal to rounding


@st.composite
def filter_case(draw):
    fs = draw(st.sampled_from([100.0, 128.0, 512.0]))
    kind = draw(st.sampled_from(["bandpass", "lowpass", "highpass"]))
    order = draw(st.integers(1, 4))
    low, high = 0.5, min(40.0, fs / 2 - 1)
    sos = design_butter(
        kind, fs, low if kind != "lowpass" else None, high if kind != "highpass" else None, order
    )
    n = draw(st.integers(0, 700))
    seed = draw(st.integers(0, 2**32 - 1))
    x = np.random.default_rng(seed).standard_normal((2, n)) + 3.0  # DC offset: steady init
    return sos, x, draw(cuts(n)), draw(st.sampled_from(["steady", "zeros"]))


@given(filter_case())
def test_chunked_equals_scipy(case):
    sos, x, points, init = case
    y = run_chunked(lambda: SOSFilter(sos, init), x, points)
    if x.shape[-1] == 0:
        ref = x
    elif init == "steady":  # scipy's steady state for a step of the first sample
        ref, _ = sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos)[:, None, :] * x[None, :, :1])
    else:
        ref = sps.sosfilt(sos, x)
    np.testing.assert_allclose(y, ref, rtol=0, atol=TOL)


@given(filter_case(), st.integers(0, 12))
def test_snapshot_restore_continues_exactly(case, at):
    sos, x, points, init = case
    whole = run_chunked(lambda: SOSFilter(sos, init), x, points)
    resumed = run_chunked(lambda: SOSFilter(sos, init), x, points, restore_at=at)
    np.testing.assert_array_equal(whole, resumed)


@given(filter_case(), st.data())
def test_nan_gaps_restart_the_filter(case, data):
    """NaN samples stay NaN and each finite run is filtered as its own recording."""
    sos, x, points, init = case
    n = x.shape[-1]
    if n:
        a = data.draw(st.integers(0, n - 1))
        b = data.draw(st.integers(a, min(n, a + 50)))
        x = x.copy()
        x[0, a:b] = np.nan
        x[1, n // 2] = np.inf
    y = run_chunked(lambda: SOSFilter(sos, init), x, points)
    ref = reference_sosfilt(sos, x, init)
    np.testing.assert_allclose(y, ref, rtol=0, atol=TOL)
    assert np.array_equal(np.isnan(y), ~np.isfinite(x))


def test_bad_designs_and_inputs_fail_clearly():
    with pytest.raises(ValueError, match="corners need"):
        design_butter("bandpass", 100, 40, 10)
    with pytest.raises(ValueError, match="fs/2"):
        design_butter("lowpass", 100, high=60)
    f = SOSFilter.butter("lowpass", 100, high=10)
    with pytest.raises(TypeError, match="real numeric"):
        f.push(np.array(["a", "b"]))
    with pytest.raises(ValueError, match="time axis"):
        f.push(np.float64(1.0))
    f.push(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="leading shape"):
        f.push(np.zeros((3, 5)))
    f.flush()
    with pytest.raises(RuntimeError, match="flushed"):
        f.push(np.zeros((2, 5)))
