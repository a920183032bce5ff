"""Pack ULW-SleepNet's weights for the native kernel (``edge/native/ulw_sleepnet.c``).

``python -m export.ulw_native [--model-dir edge/models/ulw_sleepnet]`` reads the export's torch
checkpoint, writes ``ulw_sleepnet_native_fp32.npy`` and ``ulw_sleepnet_native_int8.npy`` (one
float32 array each) beside it and adds them to the manifest (sha256, bytes, parity with torch and
with the numpy reference); ``export.ulw`` calls the same on every export.

The packing folds what inference makes constant, exactly (no retraining, no approximation):
- BatchNorm (running statistics) into the pointwise convolution before it;
- each shortcut, two stride-2 separable convolutions with kernel 1 and no activation, into one
  1×1 convolution on ``x[::4]`` (a product of diagonal and dense matrices);
- the head's two dense layers into one (``ULWSleepNet.folded_head``).
Max-pooling then ReLU equals ReLU then max-pooling (both monotone), so the kernel pools first.
Layout (all matrices [in][out], the kernel's vectors run over output channels): input_scale[4];
per block dw_a[3][cin] w_a[cin][cout] b_a[cout] dw_b[3][cout] w_b[cout][cout] b_b[cout]
w_s[cin][cout] b_s[cout]; head w[5][128] b[5].

The int8 array has the same layout with the five pointwise matrices that have more than one
input channel holding int8 values (symmetric, one scale per output channel, round half to even),
then those 104 scales appended in stage order. Activations need no calibration: the kernel
quantises each layer's input per epoch and channel (``edge.models.ulw_numpy`` says why).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from export.ulw_files import NAME, default_calibration, file_entry, read_manifest, write_manifest
from training.models.ulw_sleepnet import ULWSleepNet

NATIVE_FILE = f"{NAME}_native_fp32.npy"
NATIVE_INT8_FILE = f"{NAME}_native_int8.npy"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _stage(sep, bn) -> list[np.ndarray]:
    """dw [3][cin], pointwise with BatchNorm folded [cin][cout], bias [cout]."""
    dw, pw = sep[0], sep[1]
    g = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
    w = _np(pw.weight)[:, :, 0] * g[:, None]
    b = (_np(pw.bias) - _np(bn.running_mean)) * g + _np(bn.bias)
    return [_np(dw.weight)[:, 0, :].T, w.T, b]


def _shortcut(block) -> list[np.ndarray]:
    """pw2·diag(dw2)·(pw1·diag(dw1)·x + c1) + c2 on every 4th sample: one [cin][cout], bias."""
    (d1, p1), (d2, p2) = block.shortcut[0], block.shortcut[1]
    a1 = _np(p1.weight)[:, :, 0] * _np(d1.weight)[:, 0, 0][None, :]
    a2 = _np(p2.weight)[:, :, 0] * _np(d2.weight)[:, 0, 0][None, :]
    return [(a2 @ a1).T, a2 @ _np(p1.bias) + _np(p2.bias)]


def pack_native(model: ULWSleepNet) -> np.ndarray:
    """The native kernel's weight array for ``model`` (eval mode; C = 4, 5 classes)."""
    model = model.eval()
    parts = [_np(model.input_scale)]
    for block in model.extractor:
        parts += _stage(block.main[0], block.main[1])
        parts += _stage(block.main[4], block.main[5])
        parts += _shortcut(block)
    head = model.folded_head()
    parts += [_np(head.weight), _np(head.bias)]
    return np.concatenate([np.ascontiguousarray(p).ravel() for p in parts]).astype(np.float32)


def pack_native_int8(model: ULWSleepNet) -> np.ndarray:
    """The int8 kernel's array: the fp32 packing with the weights of the int8 pointwise
    convolutions (``edge.models.ulw_numpy.INT8_STAGES``) replaced by int8 values, symmetric,
    one scale per output channel, and those scales appended in stage order."""
    from edge.models.ulw_numpy import INT8_STAGES, PackedULW

    weights = pack_native(model)
    packed = PackedULW(weights)  # views into ``weights``, edited in place
    scales = []
    for blk, st in INT8_STAGES:
        stage = packed.stage(blk, st)
        w = stage.w.astype(np.float64)
        scale = np.abs(w).max(axis=0) / 127.0
        scale[scale == 0] = 1.0
        stage.w[...] = np.clip(np.rint(w / scale), -127, 127)
        scales.append(scale)
    return np.concatenate([weights, np.concatenate(scales)]).astype(np.float32)


def native_parity(model: ULWSleepNet, path: Path, n: int = 64, seed: int = 0) -> float:
    """max |Δ logits| between the native kernel on ``path`` and torch, on random epochs."""
    from edge.models.runner import NativeEpochModel

    x = (np.random.default_rng(seed).standard_normal((n, 4, 3000)) * 30).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return float(np.abs(NativeEpochModel(path).predict(x) - want).max())


def native_int8_parity(model: ULWSleepNet, path: Path, epochs: np.ndarray) -> dict:
    """The int8 kernel on ``path`` against its numpy reference (max |Δ logits|) and against
    torch fp32 (agreement of the staged class) on ``epochs``."""
    from edge.models.runner import NativeEpochModel
    from edge.models.ulw_numpy import NumpyEpochModel

    got = NativeEpochModel(path, int8=True).predict(epochs)
    ref = NumpyEpochModel(np.load(path), int8=True).predict(epochs)
    with torch.no_grad():
        fp32 = model(torch.from_numpy(epochs)).numpy()
    return {
        "native_int8_vs_numpy_int8_max_abs_logit": float(np.abs(got - ref).max()),
        "native_int8_agreement_on_calibration": float(np.mean(got.argmax(1) == fp32.argmax(1))),
    }


def add_native(model_dir: Path, probe: np.ndarray | None = None) -> dict:
    """Write the packed fp32 and int8 weights beside an export's checkpoint and list them in
    its manifest; ``probe`` (deployment-like epochs, default: ``export.ulw``'s calibration set)
    measures the int8 kernel's agreement with fp32."""
    manifest = read_manifest(model_dir)
    model = ULWSleepNet.from_checkpoint(model_dir / manifest["files"]["torch_checkpoint"]["path"])
    path, path_int8 = model_dir / NATIVE_FILE, model_dir / NATIVE_INT8_FILE
    np.save(path, pack_native(model))
    np.save(path_int8, pack_native_int8(model))
    manifest["files"]["native_fp32"] = file_entry(path)
    manifest["files"]["native_int8"] = file_entry(path_int8)
    manifest["parity"]["native_fp32_vs_torch_max_abs_logit"] = native_parity(model, path)
    probe = default_calibration() if probe is None else probe
    manifest["parity"].update(native_int8_parity(model, path_int8, probe.astype(np.float32)))
    write_manifest(model_dir, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m export.ulw_native", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model-dir", type=Path, default=Path("edge/models/ulw_sleepnet"))
    args = ap.parse_args(argv)
    m = add_native(args.model_dir)
    p = m["parity"]
    print(
        f"export: {args.model_dir / NATIVE_FILE} "
        f"(parity {p['native_fp32_vs_torch_max_abs_logit']:.2e}), "
        f"{args.model_dir / NATIVE_INT8_FILE} (vs its numpy reference "
        f"{p['native_int8_vs_numpy_int8_max_abs_logit']:.2e}, agreement with fp32 "
        f"{p['native_int8_agreement_on_calibration']:.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
