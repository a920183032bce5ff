"""EpochBuffer and EpochAggregator: any chunking == the numpy reshape reference."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.ops.epochs import (
    UNSCORED,
    EpochAggregator,
    EpochBuffer,
    reference_aggregate,
    reference_epochs,
)
from tests.streaming import cuts, pieces, through_npz


@st.composite
def epoch_case(draw):
    epoch_len = draw(st.sampled_from([30, 100, 3000]))
    start = draw(st.integers(0, 3 * epoch_len))
    n = draw(st.integers(0, 5 * epoch_len))
    x = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal((2, 3, n))
    return epoch_len, start, x, draw(cuts(n))


def run_buffer(epoch_len, start, x, points, restore_at=None):
    b = EpochBuffer(epoch_len, start)
    outs = []
    for i, sl in enumerate(pieces(x.shape[-1], points)):
        if restore_at == i:
            snap = through_npz(b.snapshot())
            b = EpochBuffer(epoch_len, start)
            b.restore(snap)
        outs.append(b.push(x[..., sl]))
    outs.append(b.flush())
    return outs


@given(epoch_case())
def test_buffer_equals_reshape(case):
    epoch_len, start, x, points = case
    outs = run_buffer(epoch_len, start, x, points)
    data = np.concatenate([o.data for o in outs])
    ref = reference_epochs(x, epoch_len, start)
    np.testing.assert_array_equal(data, ref)
    index = np.concatenate([o.index for o in outs])
    np.testing.assert_array_equal(index, start // epoch_len + np.arange(ref.shape[0]))
    partial = np.concatenate([o.partial for o in outs])
    np.testing.assert_array_equal(partial, np.isnan(ref).any(axis=(1, 2, 3)))
    frac = np.concatenate([o.nan_fraction for o in outs])
    np.testing.assert_allclose(frac, np.isnan(ref).mean(axis=-1))


@given(epoch_case(), st.integers(0, 12))
def test_buffer_snapshot_restore(case, at):
    epoch_len, start, x, points = case
    a = np.concatenate([o.data for o in run_buffer(epoch_len, start, x, points)])
    b = np.concatenate([o.data for o in run_buffer(epoch_len, start, x, points, at)])
    np.testing.assert_array_equal(a, b)


@st.composite
def logit_case(draw):
    n = draw(st.integers(0, 200))
    start = draw(st.integers(0, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logits = rng.standard_normal((3, n, 5))
    if n:
        a = draw(st.integers(0, n - 1))
        logits[draw(st.integers(0, 2)), a : a + draw(st.integers(0, 40))] = np.nan
    return start, logits, draw(cuts(n))


@given(logit_case(), st.sampled_from([0.5, 1.0]))
def test_aggregator_equals_nanmean_reference(case, min_valid):
    start, logits, points = case
    agg = EpochAggregator(30, start, min_valid)
    outs = [agg.push(logits[:, sl]) for sl in pieces(logits.shape[1], points)] + [agg.flush()]
    mean = np.concatenate([o.logits for o in outs])
    stage = np.concatenate([o.stage for o in outs])
    ref_mean, ref_stage = reference_aggregate(logits, 30, start, min_valid)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(stage, ref_stage)
    assert ((stage == UNSCORED) == np.isnan(mean).all(axis=-1)).all()


def test_aggregator_rules():
    logits = np.zeros((60, 3))
    logits[:30, 2] = 1.0  # epoch 0: class 2
    logits[30:, 1] = 1.0
    logits[30:50] = np.nan  # epoch 1: only 10 of 30 seconds valid
    out = EpochAggregator(30).push(logits)
    assert out.stage.tolist() == [2, UNSCORED]
    np.testing.assert_allclose(out.valid_fraction, [1.0, 1 / 3])


def test_bad_arguments():
    with pytest.raises(ValueError, match="start_index"):
        EpochBuffer(30, -1)
    with pytest.raises(ValueError, match="min_valid"):
        EpochAggregator(30, 0, 0.0)
    with pytest.raises(ValueError, match="steps, classes"):
        EpochAggregator(30).push(np.zeros(5))
