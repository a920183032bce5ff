"""The causal Mamba step on the native kernel (``edge/native/mamba_step.c``): the ``native``
step backend, fp32, on the numpy reference's weights (the manifest's verified
``numpy_weights``; packed here, no file of its own).

One call steps B streams: the reference's pre-MLP (``NumpyMamba.pre_mlp``: BLAS products over
all streams, 35 K of the 39 K multiply-adds), then the kernel runs each stream's three Mamba
layers and head in one pass over its state. ``sequence`` (a replay's queued seconds of one
stream) runs the pre-MLP over all seconds at once and the kernel second by second with the state
carried inside it. Inputs are never modified: the kernel reads the state and writes new arrays.
"""

from __future__ import annotations

import numpy as np

from edge.models.mamba_numpy import NumpyMamba
from edge.models.manifest import ModelIntegrityError

# the kernel's fixed shapes: layers, d_model, d_inner, d_state, d_conv, dt_rank
KERNEL_SHAPE = (3, 10, 20, 16, 4, 1)
D_PAD, D_MODEL_PAD = 24, 16  # d_inner and d_model padded to whole 8-float vectors


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    return np.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, n - a.shape[-1])])


def _layer(layer: dict, d_inner: int) -> list[np.ndarray]:
    """One of ``NumpyMamba.layers`` in the kernel's layout (LAYER_FLOATS in mamba_step.c)."""
    w_in = layer["in"] * layer["norm"][:, None]  # [d_model, 2 d_inner], RMSNorm weight folded
    dt, b_end = layer["split"]
    x_proj = layer["x"]  # [d_inner, dt | B | C]
    return [
        np.concatenate([_pad(w_in[:, :d_inner], D_PAD), _pad(w_in[:, d_inner:], D_PAD)], 1),
        _pad(layer["conv_w"].T, D_PAD),  # [d_conv, d_pad], newest last
        _pad(layer["conv_b"], D_PAD),
        _pad(x_proj[:, 0], D_PAD),
        x_proj[:, dt:b_end],
        x_proj[:, b_end:],
        _pad(layer["dt_w"][0], D_PAD),
        _pad(layer["dt_b"], D_PAD),
        layer["A"],
        _pad(layer["D"], D_PAD),
        _pad(layer["out"], D_MODEL_PAD),
    ]


def pack(model: NumpyMamba) -> np.ndarray:
    """The kernel's weight array: the layers, then the head (final RMSNorm weight folded)."""
    parts: list[np.ndarray] = []
    for layer in model.layers:
        parts += _layer(layer, model.d_inner)
    post_w, post_b = model.post
    parts += [post_w * model.norm[:, None], post_b]
    return np.concatenate([np.ascontiguousarray(p, np.float32).ravel() for p in parts])


class NativeStepModel:
    """``step`` / ``sequence`` / ``initial_state`` like ``NumpyStepModel``, on the kernel."""

    def __init__(self, reference: NumpyMamba) -> None:
        from edge.native import kernel

        shape = (
            reference.n_layers, reference.layers[0]["in"].shape[0], reference.d_inner,
            reference.d_state, reference.d_conv, reference.layers[0]["split"][0],
        )  # fmt: skip
        if shape != KERNEL_SHAPE:
            raise ModelIntegrityError(
                f"the native step is built for layers, d_model, d_inner, d_state, d_conv, "
                f"dt_rank = {KERNEL_SHAPE}; this model has {shape}"
            )
        self._kernel = kernel("mamba_step")
        self.reference = reference
        self.n_classes = int(reference.post[1].shape[0])
        self._weights = pack(reference)

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return self.reference.initial_state(batch)

    def _run(self, x, conv, h, per_row: bool):
        pre = np.ascontiguousarray(self.reference.pre_mlp(x), np.float32)
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
