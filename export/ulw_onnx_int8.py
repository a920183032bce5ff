"""ULW-SleepNet int8 for onnxruntime with per-epoch activation scales inside the graph.

The static QDQ file (one activation scale per tensor, fixed by a calibration set) stages only
~70-78 % of held-out epochs as fp32: EEG amplitude spans orders of magnitude between stages
and people, so a fixed scale leaves low-amplitude epochs a few quantisation levels. This graph
computes what the native int8 kernel computes (``edge.models.ulw_numpy`` is the reference of
both), from the same packed int8 weights (``export.ulw_native``): each int8 pointwise
convolution quantises its input per epoch, channel and layer (``max |d| / 127``, round half
away from zero) inside the graph, multiplies integers with ``MatMulInteger`` (int8 × int8 →
int32) and rescales by that row's scale and the per-output-channel weight scale. Everything
else is the folded fp32 network. Input ``epochs`` [batch, 4, 3000] in µV, output ``logits``.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.models.ulw_numpy import CHANNELS, CLASSES, SAMPLES, WIDTHS, PackedULW, Stage


class _Graph:
    """A small builder: constants and nodes with generated names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = itertools.count()

    def const(self, value, dtype=np.float32) -> str:
        name = f"c{next(self._n)}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        out = f"t{next(self._n)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _quantised_pointwise(g: _Graph, d: str, s: Stage) -> str:
    """d [R, cin, L] → int8 per row (max |d| / 127) → MatMulInteger with the int8 weights →
    rescaled by row scale × weight scale, plus bias. Rounding is half to even (``Round``); the
    reference rounds half away from zero, which differs only on exact ties."""
    m = g.op("ReduceMax", g.op("Abs", d), g.const([1, 2], np.int64), keepdims=1)  # [R, 1, 1]
    inv = g.op("Div", g.const(127.0), g.op("Max", m, g.const(1e-30)))  # all-zero row: q = 0
    r = g.op("Round", g.op("Mul", d, inv))
    q = g.op("Cast", g.op("Clip", r, g.const(-127.0), g.const(127.0)), to=TensorProto.INT8)
    w = g.const(s.w.T, np.int8)  # [cout, cin] @ [R, cin, L] → [R, cout, L]
    acc = g.op("Cast", g.op("MatMulInteger", w, q), to=TensorProto.FLOAT)
    scale = g.op("Mul", g.op("Div", m, g.const(127.0)), g.const(s.w_scale[:, None]))
    return g.op("Add", g.op("Mul", acc, scale), g.const(s.b[:, None]))


def _stage(g: _Graph, x: str, s: Stage) -> str:
    """relu(maxpool2,ceil(pointwise(depthwise(x)))) for x [R, cin, L] → [R, cout, ceil(L/2)]."""
    cin, cout = s.w.shape
    d = g.op("Conv", x, g.const(s.dw.T[:, None, :]), group=cin, pads=[1, 1], kernel_shape=[3])
    if s.w_scale is not None:
        y = _quantised_pointwise(g, d, s)
    else:
        y = g.op("Conv", d, g.const(s.w.T[:, :, None]), g.const(s.b), kernel_shape=[1])
    pooled = g.op("MaxPool", y, kernel_shape=[2], strides=[2], ceil_mode=1)
    return g.op("Relu", pooled)


def build_int8_graph(weights: np.ndarray) -> onnx.ModelProto:
    """The ONNX model of ``ulw_numpy.forward`` on packed int8 ``weights``."""
    p = PackedULW(weights, int8=True)
    g = _Graph()
    x = g.op("Mul", "epochs", g.const(p.input_scale[None, :, None]))
    x = g.op("Reshape", x, g.const([-1, 1, SAMPLES], np.int64))  # [N·C, 1, L]
    for blk in p.blocks:
        y = _stage(g, _stage(g, x, blk.a), blk.b)
        short = g.op("Conv", x, g.const(blk.ws.T[:, :, None]), g.const(blk.bs), kernel_shape=[1],
                     strides=[4])  # fmt: skip
        x = g.op("Add", y, short)
    feat = g.op("ReduceMean", x, g.const([2], np.int64), keepdims=0)  # [N·C, 32]
    feat = g.op("Reshape", feat, g.const([-1, CHANNELS * WIDTHS[-1]], np.int64))
    logits = g.op("Gemm", feat, g.const(p.head_w), g.const(p.head_b), transB=1)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
    graph = helper.make_graph(
        g.nodes,
        "ulw_sleepnet_int8_per_epoch",
        [helper.make_tensor_value_info("epochs", TensorProto.FLOAT, ["batch", CHANNELS, SAMPLES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def export_int8_onnx(int8_weights: Path, path: Path) -> Path:
    """Write the per-epoch-scale int8 ONNX model for the packed int8 weights at ``int8_weights``."""
    model = build_int8_graph(np.load(int8_weights, allow_pickle=False))
    path.write_bytes(model.SerializeToString())
    return path


def add_int8_onnx(model_dir: Path, probe: np.ndarray | None = None) -> dict:
    """Write ``ulw_sleepnet_int8.onnx`` from the export's packed int8 weights, list it in the
    manifest as ``onnx_int8`` and record its parity with the numpy int8 reference on ``probe``
    (default: the export's calibration epochs)."""
    from edge.models.runner import OnnxEpochModel
    from edge.models.ulw_numpy import NumpyEpochModel
    from export.ulw_files import (
        NAME,
        default_calibration,
        file_entry,
        read_manifest,
        write_manifest,
    )

    manifest = read_manifest(model_dir)
    weights = model_dir / manifest["files"]["native_int8"]["path"]
    path = export_int8_onnx(weights, model_dir / f"{NAME}_int8.onnx")
    probe = (default_calibration() if probe is None else probe)[:64].astype(np.float32)
    got = OnnxEpochModel(path, "epochs", "logits").predict(probe)
    ref = NumpyEpochModel(np.load(weights, allow_pickle=False), int8=True).predict(probe)
    manifest["files"]["onnx_int8"] = file_entry(path)
    manifest["parity"]["onnx_int8_vs_numpy_int8_max_abs_logit"] = float(np.abs(got - ref).max())
    manifest["parity"]["onnx_int8_same_stage_as_numpy_int8"] = float(
        np.mean(got.argmax(1) == ref.argmax(1))
    )
    write_manifest(model_dir, manifest)
    return manifest
