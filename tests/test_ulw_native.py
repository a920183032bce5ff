"""The native ULW-SleepNet kernel (edge/native/ulw_sleepnet.c): exact folding of BatchNorm,
shortcuts and head, parity with torch on trained-like and extreme inputs, batch == alone,
thread safety, clear errors, and the same stages as onnxruntime through edge-run."""

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.models import ModelIntegrityError, load_epoch_model
from edge.models.runner import NativeEpochModel
from export.ulw_native import NATIVE_FILE, add_native, pack_native
from tests.commands import run
from training.models.ulw_sleepnet import ULWSleepNet


def _trained_like(seed: int) -> ULWSleepNet:
    """Random weights with non-trivial BatchNorm statistics and input scales."""
    torch.manual_seed(seed)
    model = ULWSleepNet(4)
    model.input_scale.copy_(torch.tensor([1 / 25, 1 / 20, 1 / 40, 1 / 5]))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory):
    """A model directory as an export leaves it (manifest + checkpoint), then add_native."""
    d = tmp_path_factory.mktemp("native")
    model = _trained_like(0)
    torch.save({"model": model.state_dict()}, d / "ulw_sleepnet.pt")
    manifest = {
        "classes": ["W", "N1", "N2", "N3", "REM"],
        "files": {"torch_checkpoint": {"path": "ulw_sleepnet.pt"}},
        "inputs": [{"name": "epochs"}],
        "outputs": [{"name": "logits"}],
        "parity": {},
    }
    (d / "ulw_sleepnet.json").write_text(json.dumps(manifest))
    add_native(d)
    return d, model


def _torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_packed_weights_are_the_model(native_dir):
    d, model = native_dir
    manifest = json.loads((d / "ulw_sleepnet.json").read_text())
    assert manifest["files"]["native_fp32"]["path"] == NATIVE_FILE
    assert manifest["parity"]["native_fp32_vs_torch_max_abs_logit"] <= 1e-4
    packed = np.load(d / NATIVE_FILE)
    np.testing.assert_array_equal(packed, pack_native(model))  # deterministic
    runner = load_epoch_model(d / "ulw_sleepnet.json", "native")
    assert runner.classes == ["W", "N1", "N2", "N3", "REM"]
    x = np.random.default_rng(1).standard_normal((9, 4, 3000)) * [[25], [20], [40], [5]]
    x = x.astype(np.float32)
    want = _torch(model, x)
    got = runner.predict(x)
    # tolerance: fp32 sums in another order over ~3,000 terms, logits of magnitude ~10
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    np.testing.assert_array_equal(runner.predict(x[4:5]), got[4:5])  # batch == alone, exactly
    assert runner.predict(np.zeros((0, 4, 3000), np.float32)).shape == (0, 5)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    amplitude=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
    kind=st.sampled_from(["noise", "step", "sine", "spikes"]),
)
def test_matches_torch_on_varied_inputs(native_dir, seed, amplitude, kind):
    """Signals a device sends (noise, DC steps, tones, isolated spikes at epoch edges, where the
    'same' padding and the ceil-mode pooling act), from microvolts to saturation."""
    d, model = native_dir
    rng = np.random.default_rng(seed)
    t = np.arange(3000) / 100.0
    if kind == "noise":
        x = rng.standard_normal((2, 4, 3000))
    elif kind == "step":
        x = np.where(t >= rng.uniform(0, 30), 1.0, -1.0) * np.ones((2, 4, 1))
    elif kind == "sine":
        x = np.sin(2 * np.pi * rng.uniform(0.1, 49) * t + rng.uniform(0, 6)) * np.ones((2, 4, 1))
    else:
        x = np.zeros((2, 4, 3000))
        x[..., [0, 1, 2, 2997, 2998, 2999, int(rng.integers(3000))]] = rng.standard_normal(7)
    x = (x * amplitude).astype(np.float32)
    want = _torch(model, x)
    got = NativeEpochModel(d / NATIVE_FILE).predict(x)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=2e-6 * scale + 1e-5, rtol=0)


def test_threads_share_one_model(native_dir):
    d, model = native_dir
    runner = NativeEpochModel(d / NATIVE_FILE)
    xs = [np.random.default_rng(i).standard_normal((3, 4, 3000)).astype(np.float32) * 20
          for i in range(4)]  # fmt: skip
    want = [runner.predict(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(5):
            got[i] = runner.predict(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_wrong_or_modified_weights_are_refused(native_dir, tmp_path):
    d, _ = native_dir
    copy = tmp_path / "m"
    shutil.copytree(d, copy)
    np.save(copy / "short.npy", np.zeros(100, np.float32))
    with pytest.raises(ModelIntegrityError, match="packed fp32 weights"):
        NativeEpochModel(copy / "short.npy")
    w = np.load(copy / NATIVE_FILE)
    w[10] += 1.0
    np.save(copy / NATIVE_FILE, w)
    with pytest.raises(ModelIntegrityError, match="does not match the manifest"):
        load_epoch_model(copy / "ulw_sleepnet.json", "native")
    with pytest.raises(ModelIntegrityError, match="packed int8 weights"):
        NativeEpochModel(copy / NATIVE_FILE, int8=True)  # an fp32 file is not an int8 one
    with pytest.raises(ValueError, match="model input must be"):
        NativeEpochModel(d / NATIVE_FILE).predict(np.zeros((1, 4, 2999), np.float32))


def test_edge_run_native_stages_as_onnxruntime(tmp_path):
    """2 h of the bundled night through edge-run: native and numpy fp32 stage exactly as
    onnxruntime; native int8 stages (almost) as fp32."""
    stages = {}
    for backend, precision in [("onnxruntime", "fp32"), ("native", "fp32"), ("numpy", "fp32"),
                               ("native", "int8")]:  # fmt: skip
        name = f"{backend}_{precision}"
        out = tmp_path / name
        r = run("edge.cli", "--source", "sim", "--duration", "7200", "--out", str(out),
                "--plain", "--backend", backend, "--precision", precision)  # fmt: skip
        assert r.returncode == 0, r.stderr
        epochs = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
        stages[name] = [e["stage"] for e in epochs]
        stages[name + "_p"] = np.array([list(e["probabilities"].values()) for e in epochs])
    reference = stages["onnxruntime_fp32"]
    assert len(reference) == 240 and len(set(reference)) >= 3  # wake and sleep stages
    for name in ("native_fp32", "numpy_fp32"):
        assert stages[name] == reference
        # probabilities are written with 5 decimals
        np.testing.assert_allclose(stages[name + "_p"], stages["onnxruntime_fp32_p"], atol=1.1e-5)
    assert len(stages["native_int8"]) == 240
    assert np.mean(np.array(stages["native_int8"]) == np.array(reference)) >= 0.95


def test_a_missing_kernel_is_one_clear_error():
    from edge.native import kernel

    with pytest.raises(ModelIntegrityError, match="is not built.*C compiler|gcc or clang"):
        kernel("no_such_kernel")
