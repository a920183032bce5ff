"""ULW-SleepNet int8 with per-epoch activation scales: the numpy reference (edge.models.ulw_numpy)
against torch in fp32, the quantiser's bounds, the packed int8 weights, and the C kernel against
the reference on signals a device sends."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.models.runner import NativeEpochModel
from edge.models.ulw_numpy import INT8_STAGES, NumpyEpochModel, PackedULW, quantize_rows
from export.ulw_native import pack_native, pack_native_int8
from tests.test_ulw_native import _trained_like


@pytest.fixture(scope="module")
def model():
    return _trained_like(3)


@pytest.fixture(scope="module")
def int8_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "w.npy"
    np.save(path, pack_native_int8(model))
    return path


def _signal(kind: str, amplitude: float, seed: int, n: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(3000) / 100.0
    if kind == "noise":
        x = rng.standard_normal((n, 4, 3000))
    elif kind == "sine":
        x = np.sin(2 * np.pi * rng.uniform(0.1, 49) * t + rng.uniform(0, 6)) * np.ones((n, 4, 1))
    elif kind == "zeros":
        x = np.zeros((n, 4, 3000))
    else:  # spikes at the epoch edges, where 'same' padding and ceil-mode pooling act
        x = np.zeros((n, 4, 3000))
        x[..., [0, 1, 2, 2997, 2998, 2999, int(rng.integers(3000))]] = rng.standard_normal(7)
    return (x * amplitude).astype(np.float32)


def test_numpy_fp32_reference_is_the_torch_model(model):
    x = _signal("noise", 30.0, 0, n=5)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = NumpyEpochModel(pack_native(model)).predict(x)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(d=arrays(np.float32, (2, 7, 8), elements=st.floats(-1e4, 1e4, width=32)))
def test_quantize_rows_is_symmetric_int8_within_half_a_step(d):
    q, scale = quantize_rows(d)
    assert np.all(np.abs(q) <= 127) and np.all(q == np.rint(q))
    for row in range(len(d)):
        m = np.abs(d[row]).max()
        if m == 0:
            assert np.all(q[row] == 0)
            continue
        assert np.abs(q[row]).max() == 127  # the row's largest value uses the full range
        err = np.abs(d[row] - q[row] * scale[row])
        assert err.max() <= 0.5 * scale[row] * (1 + 1e-5)


def test_packed_int8_weights_round_the_fp32_weights(model):
    fp32, int8 = PackedULW(pack_native(model)), PackedULW(pack_native_int8(model), int8=True)
    for blk, stage_index in INT8_STAGES:
        w = fp32.stage(blk, stage_index).w
        q = int8.stage(blk, stage_index)
        assert np.abs(q.w).max() == 127 and np.all(q.w == np.rint(q.w))
        assert np.all(np.abs(w - q.w * q.w_scale) <= 0.5 * q.w_scale * (1 + 1e-5))
    # every other weight is carried unchanged
    np.testing.assert_array_equal(fp32.blocks[0].a.w, int8.blocks[0].a.w)  # 1 input channel
    np.testing.assert_array_equal(fp32.head_w, int8.head_w)
    w = pack_native_int8(model)
    PackedULW(w, int8=True).blocks[2].b.w[0, 0] = 0.5  # edit through a view of w
    with pytest.raises(ValueError, match="not int8 values"):
        PackedULW(w, int8=True)
    with pytest.raises(ValueError, match="packed int8 weights"):
        PackedULW(pack_native(model), int8=True)
    with pytest.raises(ValueError, match="model input must be"):  # one clear error, as the runners
        NumpyEpochModel(pack_native(model)).predict(np.zeros((1, 4, 2999), np.float32))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    amplitude=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
    kind=st.sampled_from(["noise", "sine", "spikes", "zeros"]),
)
def test_native_int8_is_its_numpy_reference(model, int8_file, seed, amplitude, kind):
    """Integer sums are exact in both; the two differ only where the fp32 depthwise output
    (summed in another order, with FMA in C) lands within rounding error of a quantisation
    boundary, moving one activation one step: tolerance 1 % of the logits' magnitude."""
    x = _signal(kind, amplitude, seed)
    want = NumpyEpochModel(np.load(int8_file), int8=True).predict(x)
    got = NativeEpochModel(int8_file, int8=True).predict(x)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=1e-2 * scale, rtol=0)
    np.testing.assert_array_equal(NativeEpochModel(int8_file, int8=True).predict(x[1:]), got[1:])


@pytest.fixture(scope="module")
def int8_onnx(int8_file, tmp_path_factory):
    """The onnxruntime int8 graph (per-epoch activation scales inside it) for the same weights."""
    from edge.models.runner import OnnxEpochModel
    from export.ulw_onnx_int8 import export_int8_onnx

    path = export_int8_onnx(int8_file, tmp_path_factory.mktemp("onnx") / "int8.onnx")
    return OnnxEpochModel(path, "epochs", "logits")


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    amplitude=st.sampled_from([1e-3, 1.0, 30.0, 1e4]),
    kind=st.sampled_from(["noise", "sine", "spikes", "zeros"]),
)
def test_onnx_int8_graph_is_its_numpy_reference(int8_file, int8_onnx, seed, amplitude, kind):
    """Same integers, same scales: the graph differs from the reference only by rounding ties
    (half to even in ONNX) and fp32 summation order moving an activation one step, as the
    kernel does; batch == alone."""
    x = _signal(kind, amplitude, seed)
    want = NumpyEpochModel(np.load(int8_file), int8=True).predict(x)
    got = int8_onnx.predict(x)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=1e-2 * scale, rtol=0)
    np.testing.assert_allclose(int8_onnx.predict(x[1:]), got[1:], atol=1e-5 * scale)


def test_int8_follows_fp32_across_amplitudes(model, int8_file):
    """Per-epoch scales: a 1e-3 µV epoch and a 1e4 µV one are quantised as finely as a 30 µV
    one, so int8 logits track fp32 at every amplitude (a static scale cannot)."""
    for amplitude in (1e-2, 30.0, 1e4):
        x = _signal("noise", amplitude, 7, n=4)
        with torch.no_grad():
            fp32 = model(torch.from_numpy(x)).numpy()
        got = NativeEpochModel(int8_file, int8=True).predict(x)
        spread = float(fp32.max() - fp32.min()) + 1e-6
        assert np.abs(got - fp32).max() <= 0.05 * spread, amplitude


def _build_kernel(tmp_path, flags: list[str]):
    """edge/native/ulw_sleepnet.c compiled with ``flags`` into its own module, imported."""
    import importlib.util
    import subprocess
    import sysconfig
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "edge" / "native" / "ulw_sleepnet.c"
    out = tmp_path / ("_ulw_sleepnet" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = ["gcc", "-O3", *flags, "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}",
           str(src), "-o", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    spec = importlib.util.spec_from_file_location("_ulw_sleepnet", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


X86_PATHS = {
    "vnni-u8": ["-march=x86-64-v3", "-mavxvnni"],  # vpdpbusd, activations offset to u8
    "avx2-s16": ["-march=x86-64-v3"],  # vpmaddwd on s16 pairs
    "generic": ["-march=x86-64"],  # SSE2 only: the plain loop
}


@pytest.mark.parametrize("path", sorted(X86_PATHS))
def test_every_instruction_path_is_the_reference(model, int8_file, tmp_path, path):
    """Each int8 dot-product path the kernel can compile to (the installed build takes one,
    chosen by -march=native) against the numpy reference. A host without AVX-VNNI cannot run
    the vnni-u8 build: there that case checks the host's own native build instead."""
    import platform
    from pathlib import Path

    if platform.machine() not in ("x86_64", "AMD64"):
        flags: list[str] = []  # another architecture: its own vector width, the plain loop
    else:
        flags = X86_PATHS[path]
        if path == "vnni-u8" and "avx_vnni" not in Path("/proc/cpuinfo").read_text():
            flags = ["-march=native"]  # this host's best path instead of one it cannot run
    k = _build_kernel(tmp_path, flags)
    x = np.concatenate([_signal(kind, 30.0, 5) for kind in ("noise", "sine", "spikes")])
    weights = np.load(int8_file)
    got = np.empty((len(x), 5), np.float32)
    k.forward_int8(weights, x, got, np.empty(k.WORK_INT8_FLOATS, np.float32))
    want = NumpyEpochModel(weights, int8=True).predict(x)
    np.testing.assert_allclose(got, want, atol=1e-2 * max(1.0, float(np.abs(want).max())))
