"""GridResampler: any chunking == the np.interp batch reference (PixleepFlow rules)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ops.grid import BRIDGED, GAP, OK, OUTSIDE, GridResampler, reference_grid
from tests.streaming import cuts, pieces, through_npz

TOL = 1e-12


@st.composite
def grid_case(draw):
    n = draw(st.integers(0, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.exponential(draw(st.sampled_from([0.3, 1.0, 3.0])), n)
    if draw(st.booleans()):
        steps = np.round(steps, 1) + 0.1  # timestamps landing exactly on grid points
    t = np.cumsum(steps) + draw(st.floats(0, 5))
    v = rng.standard_normal((2, n))
    if n > 4 and draw(st.booleans()):
        v[1, n // 3] = np.nan  # a missing value in one channel
    params = dict(
        period=draw(st.sampled_from([1.0, 0.5, 2.0])),
        method=draw(st.sampled_from(["linear", "nearest"])),
        max_gap=draw(st.sampled_from([2.5, 5.0, np.inf])),
    )
    return params, t, v, draw(cuts(n))


def run(params, t, v, points, restore_at=None):
    g = GridResampler(**params)
    outs, flags = [], []
    for i, sl in enumerate(pieces(t.size, points)):
        if restore_at == i:
            snap = through_npz(g.snapshot())
            g = GridResampler(**params)
            g.restore(snap)
        outs.append(g.push((t[sl], v[..., sl])))
        flags.append(g.last_flags)
    outs.append(g.flush())
    return np.concatenate(outs, axis=-1), np.concatenate(flags)


@given(grid_case())
def test_chunked_equals_reference(case):
    params, t, v, points = case
    y, flags = run(params, t, v, points)
    ref, ref_flags = reference_grid(t, v, **params)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=TOL)
    np.testing.assert_array_equal(flags, ref_flags)
    assert np.array_equal(np.isnan(y).any(axis=0), (flags == GAP) | (flags == OUTSIDE))


@given(grid_case(), st.integers(0, 12))
def test_snapshot_restore_continues_exactly(case, at):
    params, t, v, points = case
    np.testing.assert_array_equal(
        run(params, t, v, points)[0], run(params, t, v, points, restore_at=at)[0]
    )


def test_pixleepflow_rules():
    t = np.array([2.5, 3.0, 4.0, 20.0, 21.0])
    v = np.array([[1.0, 2.0, 4.0, 5.0, 6.0]])
    g = GridResampler(max_gap=10.0)
    y = g.push((t, v))
    # grid 0..2 lie before the first sample: left empty, never extrapolated
    assert np.isnan(y[0, :3]).all() and (g.last_flags[:3] == OUTSIDE).all()
    assert y[0, 3] == 2.0 and y[0, 4] == 4.0  # points on samples take them
    assert (g.last_flags[5:20] == GAP).all()  # a 16-s interval is longer than max_gap
    assert y[0, 20] == 5.0 and y[0, 21] == 6.0
    assert y.shape[-1] == 22  # nothing after the last sample (ends left empty)
    g2 = GridResampler(max_gap=20.0)
    y2 = g2.push((t, v))
    np.testing.assert_allclose(y2[0, 5:20], 4.0 + (np.arange(5, 20) - 4.0) / 16.0)


def test_point_is_emitted_only_when_final():
    g = GridResampler()
    assert g.push((np.array([0.2]), np.array([[1.0]]))).shape[-1] == 1  # grid 0 is OUTSIDE
    assert g.push((np.array([0.9]), np.array([[2.0]]))).shape[-1] == 0  # grid 1 not final
    y = g.push((np.array([1.5]), np.array([[4.0]])))
    np.testing.assert_allclose(y, [[2.0 + 2.0 * 0.1 / 0.6]])


def test_bad_timestamps_are_rejected_and_change_nothing():
    g = GridResampler()
    g.push((np.array([0.0, 1.0]), np.array([[1.0, 2.0]])))
    before = through_npz(g.snapshot())
    for t in ([0.5], [np.nan], [3.0, 2.0], [5.0, 5.0]):
        with pytest.raises(ValueError, match="timestamps"):
            g.push((np.array(t), np.ones((1, len(t)))))
    after = g.snapshot()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="one entry per sample"):
        g.push((np.array([3.0]), np.ones((1, 2))))
    with pytest.raises(TypeError, match="times, values"):
        g.push(np.ones(3))


def test_a_missing_sample_is_bridged_and_flagged():
    """1 Hz samples at x.3 s with the one at 4.3 s lost: the grid points 4 and 5 are
    interpolated across it (BRIDGED); a 12-s hole is longer than max_gap (GAP)."""
    t = np.array([0.3, 1.3, 2.3, 3.3, 5.3, 6.3, 18.3, 19.3])
    v = t[None] * 2.0
    y, flags = reference_grid(t, v, period=1.0, max_gap=10.0)
    assert flags.tolist()[:8] == [OUTSIDE, OK, OK, OK, BRIDGED, BRIDGED, OK, GAP]
    np.testing.assert_allclose(y[0, 4:6], [8.0, 10.0])
    got, got_flags = run({"period": 1.0, "method": "linear", "max_gap": 10.0}, t, v, [3, 5])
    np.testing.assert_array_equal(got_flags, flags)
