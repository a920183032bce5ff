"""Lifelog operators: any chunking equals the batch reference; snapshot/restore continues exactly;
the renderer is deterministic and keeps unknown minutes apart from zero."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.lifelog.ops import BinAggregator, BlockBuffer, reference_bins, reference_blocks
from edge.lifelog.render import event_windows, render_block, render_day


def _stream(seed: int, n: int, lead: int, nan_frac: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(lead, n)) * 10
    x[rng.random((lead, n)) < nan_frac] = np.nan
    return x


def _cuts(seed: int, n: int, k: int) -> list[int]:
    rng = np.random.default_rng(seed + 1)
    return sorted(set(rng.integers(0, n + 1, size=k).tolist()) | {0, n})


def _run(op, x: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    cuts = cuts if len(cuts) > 1 else [0, x.shape[-1]]  # at least one (maybe empty) push
    return [op.push(x[..., a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)] + [op.flush()]


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 700),
    size=st.integers(1, 70),
    phase_frac=st.floats(0, 0.999),
    how=st.sampled_from(["mean", "sum", "max"]),
    nan_frac=st.sampled_from([0.0, 0.3, 1.0]),
    k=st.integers(0, 12),
)
def test_bins_any_chunking_equals_reference(seed, n, size, phase_frac, how, nan_frac, k):
    x = _stream(seed, n, 2, nan_frac)
    phase = int(phase_frac * size)
    out = _run(BinAggregator(size, how, phase), x, _cuts(seed, n, k))
    got = np.concatenate(out, axis=-1)
    np.testing.assert_array_equal(got, reference_bins(x, size, how, phase))


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 1500),
    start=st.integers(0, 1439),
    k=st.integers(0, 10),
    cut=st.floats(0, 1),
)
def test_blocks_chunking_and_snapshot_mid_day(seed, n, start, k, cut):
    x = _stream(seed, n, 3, 0.2)
    ref = reference_blocks(x, 240, start)
    got = np.concatenate(_run(BlockBuffer(240, start), x, _cuts(seed, n, k)), axis=0)
    np.testing.assert_array_equal(got, ref)
    # snapshot mid-stream, restore into a fresh operator, continue
    m = int(cut * n)
    a = BlockBuffer(240, start)
    first = a.push(x[:, :m])
    b = BlockBuffer(240, start)
    b.restore(a.snapshot())
    rest = [b.push(x[:, m:]), b.flush()]
    np.testing.assert_array_equal(np.concatenate([first, *rest], axis=0), ref)
    assert b.block_of_day(0) == start // 240


@given(seed=st.integers(0, 10_000), n=st.integers(0, 400), cut=st.floats(0, 1))
def test_bins_snapshot_restore_continues_exactly(seed, n, cut):
    x = _stream(seed, n, 1, 0.1)
    m = int(cut * n)
    a = BinAggregator(60, "mean", 17)
    first = a.push(x[:, :m])
    b = BinAggregator(60, "mean", 17)
    b.restore(a.snapshot())
    got = np.concatenate([first, b.push(x[:, m:]), b.flush()], axis=-1)
    np.testing.assert_array_equal(got, reference_bins(x, 60, "mean", 17))


def test_bins_values_and_errors():
    np.testing.assert_array_equal(
        reference_bins(np.array([1.0, np.nan, 3.0, np.nan, np.nan, 5.0]), 3, "mean"),
        [2.0, 5.0],
    )
    op = BinAggregator(2, "sum")
    with pytest.raises(TypeError, match="BinAggregator"):
        op.push(np.array(["a"]))
    op.push(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="leading shape"):
        op.push(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="other parameters"):
        BinAggregator(3, "sum").restore(op.snapshot())
    op.flush()
    with pytest.raises(RuntimeError, match="already flushed"):
        op.push(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="start_minute"):
        BlockBuffer(240, 1440)


def test_render_block_deterministic_and_marks_unknown():
    rng = np.random.default_rng(0)
    block = np.stack([rng.integers(0, 150, 240).astype(float), rng.random(240), rng.random(240)])
    block[0, :30] = np.nan
    img = render_block(block, ("steps", "in_bed", "asleep"))
    assert img.shape == (6, 12, 20) and img.dtype == np.float32
    np.testing.assert_array_equal(img, render_block(block.copy(), ("steps", "in_bed", "asleep")))
    assert (img[3].reshape(-1)[:30] == 0).all() and (img[3].reshape(-1)[30:] == 1).all()
    assert (img[0].reshape(-1)[:30] == 0).all()
    assert 0 <= img.min() and img.max() <= 1
    day = np.tile(block, (1, 6))
    np.testing.assert_array_equal(render_day(day, ("steps", "in_bed", "asleep"))[4], img)
    ev = np.zeros((2, 240))
    ev[0, 5:15] = 1.0
    w = event_windows(ev)
    assert w.shape == (2, 24) and w[0, 0] == 0.5 and w[0, 1] == 0.5 and w[1].sum() == 0
