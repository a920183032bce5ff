"""GapBridge: short gaps filled in the sample domain, streaming equal to the batch reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ops.bridge import GapBridge, nan_runs, reference_bridge
from tests.streaming import cuts, run_chunked


@st.composite
def gappy(draw, max_rows: int = 3, max_n: int = 400) -> np.ndarray:
    """A (rows, n) signal with NaN runs of random lengths at random places, per row."""
    rows = draw(st.integers(1, max_rows))
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(rows, n)), axis=1) + np.sin(np.arange(n) / 3.0)
    for r in range(rows):
        for _ in range(draw(st.integers(0, 6))):
            if n == 0:
                break
            s = int(rng.integers(0, n))
            x[r, s : s + int(rng.integers(1, 30))] = np.nan
    return x


@settings(max_examples=150, deadline=None)
@given(data=st.data(), method=st.sampled_from(["linear", "pattern"]))
def test_streaming_equals_batch_for_any_chunking(data, method):
    x = data.draw(gappy())
    max_gap = data.draw(st.integers(0, 20))
    points = data.draw(cuts(x.shape[-1]))
    restore_at = data.draw(st.none() | st.integers(0, len(points)))
    want, _ = reference_bridge(x, max_gap, method)
    got = run_chunked(lambda: GapBridge(max_gap, method), x, points, restore_at)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), method=st.sampled_from(["linear", "pattern"]))
def test_bridged_mask_streams_too_and_marks_exactly_the_filled_samples(data, method):
    x = data.draw(gappy(max_rows=1))
    max_gap = data.draw(st.integers(1, 20))
    points = data.draw(cuts(x.shape[-1]))
    want, mask = reference_bridge(x, max_gap, method)
    op = GapBridge(max_gap, method)
    masks = []
    for a, b in zip([0, *points], [*points, x.shape[-1]], strict=True):
        op.push(x[..., a:b])
        masks.append(op.last_bridged)
    op.flush()
    masks.append(op.last_bridged)
    np.testing.assert_array_equal(np.concatenate(masks, axis=-1), mask)
    np.testing.assert_array_equal(mask, np.isnan(x) & ~np.isnan(want))


def test_rule_short_interior_gaps_only():
    x = np.arange(20.0)
    x[3:5] = np.nan  # 2 samples: bridged
    x[8:12] = np.nan  # 4 samples: longer than max_gap 3, stays a gap
    x[0] = np.nan  # nothing before it
    x[18:] = np.nan  # nothing after it
    got, mask = reference_bridge(x[None], 3, "linear")
    np.testing.assert_allclose(got[0, 3:5], [3.0, 4.0])
    assert np.isnan(got[0, [0, 8, 9, 10, 11, 18, 19]]).all()
    assert mask[0].sum() == 2


def test_pattern_repeats_the_waveform_and_joins_both_ends():
    t = np.arange(400)
    x = np.sin(2 * np.pi * t / 40.0)  # period 40
    gap = slice(200, 240)  # one whole period lost
    y = x.copy()
    y[gap] = np.nan
    pattern, _ = reference_bridge(y, 40, "pattern")
    linear, _ = reference_bridge(y, 40, "linear")
    assert np.abs(pattern[gap] - x[gap]).max() < 1e-9  # a periodic signal comes back exactly
    assert np.abs(linear[gap] - x[gap]).max() > 0.5  # a straight line loses the wave


def test_pattern_falls_back_to_linear_without_enough_history():
    y = np.array([1.0, np.nan, np.nan, np.nan, 5.0])
    got, _ = reference_bridge(y, 3, "pattern")
    np.testing.assert_allclose(got, [1, 2, 3, 4, 5])


def test_output_waits_only_while_a_short_gap_is_open():
    op = GapBridge(4, "linear")
    assert op.push(np.array([1.0, 2.0, np.nan, np.nan])).tolist() == [1.0, 2.0]
    out = op.push(np.array([np.nan, 6.0]))  # the gap closed at 3 samples: bridged
    np.testing.assert_allclose(out, [3.0, 4.0, 5.0, 6.0])
    out = op.push(np.full(6, np.nan))  # 6 > 4: decided as a gap at once
    assert out.shape == (6,) and np.isnan(out).all()


def test_nan_runs_pairs_starts_and_stops_per_row():
    nan = np.array([[1, 1, 0, 0, 1], [0, 1, 1, 1, 0]], dtype=bool)
    rows, starts, stops = nan_runs(nan)
    assert list(zip(rows, starts, stops, strict=True)) == [(0, 0, 2), (0, 4, 5), (1, 1, 4)]


@pytest.mark.parametrize("bad", [-1, 1.5])
def test_bad_parameters_are_clear(bad):
    with pytest.raises(ValueError, match="max_gap"):
        GapBridge(bad)
    with pytest.raises(ValueError, match="method"):
        GapBridge(3, "cubic")
