"""The causal Mamba step on the native kernel (``edge/native/mamba_step.c``): the ``native``
step backend, fp32, from the manifest's ``numpy_weights`` (the same verified file as the numpy
reference; packed here, no file of its own).

One call steps B streams: the pre-MLP (BatchNorm folded into its first layer, 35 K of the 39 K
multiply-adds) runs over all streams in BLAS products, then the kernel runs each stream's three
Mamba layers and head in one pass over its state. ``sequence`` (a replay's queued seconds of one
stream) runs the pre-MLP over all seconds at once and the kernel second by second with the state
carried inside it. Inputs are never modified: the kernel reads the state and writes new arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edge.models.manifest import ModelIntegrityError

N_LAYERS, D_MODEL, D_INNER, D_PAD, D_STATE, D_CONV = 3, 10, 20, 24, 16, 4


def _pad(a: np.ndarray, n: int, axis: int = -1) -> np.ndarray:
    width = [(0, 0)] * a.ndim
    width[axis] = (0, n - a.shape[axis])
    return np.pad(a, width)


def _layer(w: Mapping[str, np.ndarray], p: str) -> list[np.ndarray]:
    """One layer in the kernel's layout (see LAYER_FLOATS in mamba_step.c)."""
    norm = w[p + "norm.weight"]
    w_in = w[p + "in_proj.weight"].T * norm[:, None]  # [d_model, 2 d_inner]
    w_in = np.concatenate([_pad(w_in[:, :D_INNER], D_PAD), _pad(w_in[:, D_INNER:], D_PAD)], 1)
    conv_w = _pad(w[p + "conv1d.weight"][:, 0].T, D_PAD)  # [d_conv, d_pad], newest last
    x_proj = w[p + "x_proj.weight"]  # [1 + 2 d_state, d_inner]: dt, B, C
    return [
        w_in,
        conv_w,
        _pad(w[p + "conv1d.bias"], D_PAD),
        _pad(x_proj[0], D_PAD),
        x_proj[1 : 1 + D_STATE].T,
        x_proj[1 + D_STATE :].T,
        _pad(w[p + "dt_proj.weight"][:, 0], D_PAD),
        _pad(w[p + "dt_proj.bias"], D_PAD),
        -np.exp(w[p + "A_log"].astype(np.float64)),
        _pad(w[p + "D"], D_PAD),
        _pad(w[p + "out_proj.weight"].T, 16),  # [d_inner, d_model padded to 16]
    ]


def pack_layers(w: Mapping[str, np.ndarray]) -> tuple[np.ndarray, int]:
    """(the kernel's weight array, number of classes) from a causal model's state dict."""
    parts: list[np.ndarray] = []
    for i in range(N_LAYERS):
        parts += _layer(w, f"layers.{i}.")
    head = w["post.weight"].T * w["norm.weight"][:, None]  # [d_model, classes]
    parts += [head, w["post.bias"]]
    flat = np.concatenate([np.ascontiguousarray(p, np.float64).ravel() for p in parts])
    return flat.astype(np.float32), int(w["post.bias"].shape[0])


class NativeStepModel:
    """``step`` / ``sequence`` / ``initial_state`` like ``NumpyStepModel``, on the kernel."""

    def __init__(self, path: Path) -> None:
        from edge.native import kernel

        self._kernel = kernel("mamba_step")
        with np.load(path) as z:
            w = {k: z[k].astype(np.float32) for k in z.files}
        try:
            self._weights, self.n_classes = pack_layers(w)
        except (KeyError, ValueError) as exc:
            raise ModelIntegrityError(f"{path}: not a causal Mamba's weights ({exc})") from None
        if self._weights.size != N_LAYERS * self._kernel.LAYER_FLOATS + 11 * self.n_classes:
            raise ModelIntegrityError(f"{path}: layer shapes differ from the native kernel's")
        bn = "pre.0."
        scale = w[bn + "weight"] / np.sqrt(w[bn + "running_var"] + 1e-5)
        shift = w[bn + "bias"] - w[bn + "running_mean"] * scale
        first_w, first_b = w["pre.1.weight"].T, w["pre.1.bias"]
        self._pre = [((first_w * scale[:, None]).astype(np.float32), first_b + shift @ first_w)]
        self._pre += [(w[f"pre.{i}.weight"].T.copy(), w[f"pre.{i}.bias"]) for i in (3, 5, 7)]

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        conv = np.zeros((batch, N_LAYERS, D_INNER, D_CONV - 1), np.float32)
        return conv, np.zeros((batch, N_LAYERS, D_INNER, D_STATE), np.float32)

    def _pre_mlp(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(x, np.float32)
        for i, (wt, b) in enumerate(self._pre):
            out = out @ wt
            out += b
            if i < 3:
                np.maximum(out, np.float32(0.01) * out, out=out)  # LeakyReLU(0.01)
        return np.ascontiguousarray(out, np.float32)

    def _run(self, x, conv, h, per_row: bool):
        pre = self._pre_mlp(x)
        conv = np.ascontiguousarray(conv, np.float32)
        h = np.ascontiguousarray(h, np.float32)
        conv_out, h_out = np.empty_like(conv), np.empty_like(h)
        logits = np.empty((len(pre), self.n_classes), np.float32)
        self._kernel.run(
            self._weights, pre, conv, h, conv_out, h_out, logits, self.n_classes, per_row
        )
        return logits, conv_out, h_out

    def step(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        """features [B, 140] normalised → (logits [B, K], conv', h')."""
        if not (len(features) == len(conv) == len(h)):
            raise ValueError(f"{len(features)} feature rows for {len(conv)} / {len(h)} states")
        return self._run(features, conv, h, True)

    def sequence(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        """One stream's consecutive seconds (features [T, 140], state [1, ...]) → (logits
        [T, K], the state after them)."""
        if len(conv) != 1 or len(h) != 1:
            raise ValueError("sequence steps one stream: state rows must be 1")
        return self._run(features, conv, h, False)
