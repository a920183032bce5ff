"""The causal Mamba: step == full sequence, numpy step == torch, batching and snapshots."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.models.mamba_numpy import NumpyMamba
from tests.streaming import cuts, sequence_in_pieces, stepped_state
from training.models.mamba import MambaStager, state_floats


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = MambaStager()
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        m.pre[0].running_mean.uniform_(-1, 1)
        m.pre[0].running_var.uniform_(0.5, 2)
    return m.eval()


def features(b, steps, seed=0):
    return torch.from_numpy(
        np.random.default_rng(seed).standard_normal((b, steps, 140)).astype(np.float32)
    )


def test_state_per_stream_is_the_designs_1140_floats(model):
    assert state_floats(model) == 3 * (20 * 16 + 20 * 3) == 1140


def test_5000_steps_equal_the_full_sequence_forward(model):
    x = features(2, 5000)
    with torch.no_grad():
        full = model(x)
        conv, h = model.initial_state(2)
        steps = []
        for t in range(x.shape[1]):
            y, conv, h = model.step(x[:, t], conv, h)
            steps.append(y)
    np.testing.assert_allclose(torch.stack(steps, 1).numpy(), full.numpy(), atol=1e-4)


def test_numpy_step_equals_torch_and_batches_equal_streams_alone(model):
    ref = NumpyMamba({k: v.numpy() for k, v in model.state_dict().items()})
    x = features(4, 2000, seed=1)
    with torch.no_grad():
        want = model(x).numpy()
    conv, h = ref.initial_state(4)
    got = []
    for t in range(x.shape[1]):
        y, conv, h = ref.step(x[:, t].numpy(), conv, h)
        got.append(y)
    np.testing.assert_allclose(np.stack(got, 1), want, atol=1e-3)
    # stream 2 alone, restored from a mid-night snapshot of its rows, continues exactly
    c1, h1 = ref.initial_state(1)
    for t in range(1000):
        _, c1, h1 = ref.step(x[2:3, t].numpy(), c1, h1)
    snap = {"conv": c1.copy(), "h": h1.copy()}
    alone = []
    c2, h2 = snap["conv"], snap["h"]
    for t in range(1000, 2000):
        y, c2, h2 = ref.step(x[2:3, t].numpy(), c2, h2)
        alone.append(y[0])
    np.testing.assert_allclose(np.stack(alone), np.stack(got, 1)[2, 1000:], atol=1e-5)


def test_bidirectional_variant_sees_the_future_and_has_no_step():
    torch.manual_seed(0)
    m = MambaStager(bidirectional=True).eval()
    x = features(1, 50)
    with torch.no_grad():
        a = m(x)
        x2 = x.clone()
        x2[:, 40:] += 5.0
        b = m(x2)
    assert not torch.allclose(a[:, :40], b[:, :40])  # the past changes when the future does
    causal = MambaStager().eval()
    with torch.no_grad():
        np.testing.assert_allclose(causal(x)[:, :40].numpy(), causal(x2)[:, :40].numpy(), atol=1e-6)
    with pytest.raises(RuntimeError, match="no causal step"):
        m.step(x[:, 0], *m.initial_state(1))


def test_lean_export_graph_equals_the_step_and_refuses_unbounded_dt(model):
    """export.mamba_graph.LeanStep (folded norms, one dt/B/C layer, softplus without a select)
    computes MambaStager.step, for inputs far outside the training range and any state; it
    refuses weights whose dt pre-activation could overflow its softplus."""
    import copy

    from export.mamba_graph import EXP_SAFE, LeanStep, softplus_bound

    rng = np.random.default_rng(5)
    x = torch.from_numpy((rng.standard_normal((64, 140)) * 50).astype(np.float32))
    conv = torch.from_numpy(rng.standard_normal((64, 3, 20, 3)).astype(np.float32))
    h = torch.from_numpy(rng.standard_normal((64, 3, 20, 16)).astype(np.float32))
    with torch.no_grad():
        want, got = model.step(x, conv, h), LeanStep(model)(x, conv, h)
    for a, b in zip(want, got, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=2e-5, rtol=1e-5)
    assert 0 < softplus_bound(model) < EXP_SAFE
    wild = copy.deepcopy(model)
    with torch.no_grad():
        wild.layers[1].dt_proj.weight.mul_(1e4)
    assert softplus_bound(wild) >= EXP_SAFE
    with pytest.raises(ValueError, match="softplus needs a clamp"):
        LeanStep(wild)


def test_exported_onnx_step_equals_torch_over_10000_carried_steps(model, tmp_path):
    from edge.models.step_runner import OnnxStepModel
    from export.mamba import export_step_onnx

    runner = OnnxStepModel(export_step_onnx(model, tmp_path / "step.onnx"))
    x = features(3, 10_000, seed=2)
    with torch.no_grad():
        want = model(x).numpy()
    conv, h = runner.initial_state(3)
    worst = 0.0
    for t in range(x.shape[1]):
        y, conv, h = runner.step(x[:, t].numpy(), conv, h)
        worst = max(worst, float(np.abs(y - want[:, t]).max()))
    assert worst <= 1e-3, worst
    alone = OnnxStepModel(tmp_path / "step.onnx")  # one stream of the batch, stepped alone
    c1, h1 = alone.initial_state(1)
    for t in range(200):
        y1, c1, h1 = alone.step(x[1:2, t].numpy(), c1, h1)
    np.testing.assert_allclose(y1[0], want[1, 199], atol=1e-4)


@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_exported_onnx_sequence_graph_in_any_chunks_equals_torch(data, model, sequence_graph):
    """``onnx_fp32_seq`` (32 seconds a call, the last call zero-padded, the state read at its
    last real second), fed a stream in random chunks: torch's full-sequence forward (≤ 1e-4
    on logits over 3,000 carried seconds) and the state the step graph carries."""
    runner, x, want = sequence_graph
    got, conv, h = sequence_in_pieces(runner, x, data.draw(cuts(len(x))))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    c1, h1 = stepped_state(runner, x)
    np.testing.assert_allclose(conv, c1, atol=1e-5, rtol=0)
    np.testing.assert_allclose(h, h1, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def sequence_graph(model, tmp_path_factory):
    from edge.models.step_runner import OnnxStepModel
    from export.mamba import export_sequence_onnx, export_step_onnx

    d = tmp_path_factory.mktemp("seq")
    runner = OnnxStepModel(
        export_step_onnx(model, d / "step.onnx"),
        sequence_path=export_sequence_onnx(model, d / "seq.onnx", 32),
    )
    x = features(1, 3000, seed=4)[0]
    with torch.no_grad():
        want = model(x[None])[0].numpy()
    return runner, x.numpy(), want
