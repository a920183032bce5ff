"""The causal Mamba step in numpy: the reference runtime, torch-free, many streams per call.

Weights are the torch state_dict's arrays (names as in ``training/models/mamba.py``). The state
of B streams is two arrays, ``conv`` [B, layers, d_inner, d_conv-1] and ``h`` [B, layers,
d_inner, d_state]; streams join or leave by concatenating or indexing rows, and a stream's
snapshot is its rows. Everything is vectorised over the batch: one call steps every stream.
``sequence`` steps one stream through many seconds at once (a replay): everything but the
SSM recurrence runs over all seconds together, the recurrence is two array operations a second.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _rms(x: np.ndarray, w: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


class NumpyMamba:
    def __init__(self, weights: Mapping[str, np.ndarray], n_layers: int = 3) -> None:
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        self.w, self.n_layers = w, n_layers
        # BatchNorm (running statistics) folded into the first linear layer: exact up to rounding
        bn = "pre.0."
        scale = w[bn + "weight"] / np.sqrt(w[bn + "running_var"] + 1e-5)
        shift = w[bn + "bias"] - w[bn + "running_mean"] * scale
        first = w["pre.1.weight"].T
        self._pre = [((first * scale[:, None]).astype(np.float32), w["pre.1.bias"] + shift @ first)]
        self._pre += [(w[f"pre.{i}.weight"].T.copy(), w[f"pre.{i}.bias"]) for i in (3, 5, 7)]
        self.layers = []
        for i in range(n_layers):
            p = f"layers.{i}."
            d_state = w[p + "A_log"].shape[1]
            dt_rank = w[p + "dt_proj.weight"].shape[1]
            self.layers.append(
                {
                    "norm": w[p + "norm.weight"],
                    "in": w[p + "in_proj.weight"].T,
                    "conv_w": w[p + "conv1d.weight"][:, 0],  # [d_inner, d_conv]
                    "conv_b": w[p + "conv1d.bias"],
                    "x": w[p + "x_proj.weight"].T,
                    "dt_w": w[p + "dt_proj.weight"].T,
                    "dt_b": w[p + "dt_proj.bias"],
                    "A": -np.exp(w[p + "A_log"]),
                    "D": w[p + "D"],
                    "out": w[p + "out_proj.weight"].T,
                    "split": (dt_rank, dt_rank + d_state),
                }
            )
        self.norm, self.post = w["norm.weight"], (w["post.weight"].T, w["post.bias"])
        first = self.layers[0]
        self.d_inner, self.d_conv = first["conv_w"].shape
        self.d_state = first["A"].shape[1]

    @classmethod
    def load(cls, path) -> NumpyMamba:
        """The model of a ``numpy_weights`` file (the state dict's arrays, ``np.savez``)."""
        with np.load(path) as z:
            return cls({k: z[k] for k in z.files})

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        conv = np.zeros((batch, self.n_layers, self.d_inner, self.d_conv - 1), np.float32)
        return conv, np.zeros((batch, self.n_layers, self.d_inner, self.d_state), np.float32)

    def pre_mlp(self, x: np.ndarray) -> np.ndarray:
        """features [N, 140] → the first layer's input [N, d_model]: four BLAS products over
        all N rows (35 K of a step's 39 K multiply-adds)."""
        out = np.asarray(x, np.float32)
        for i, (wt, b) in enumerate(self._pre):
            out = out @ wt
            out += b
            if i < 3:
                np.maximum(out, np.float32(0.01) * out, out=out)  # LeakyReLU(0.01)
        return out

    def sequence(self, x: np.ndarray, conv: np.ndarray, h: np.ndarray):
        """One stream, T seconds: x [T, 140], state of one stream (conv [1, ...], h [1, ...])
        → (logits [T, classes], conv', h'), equal to T calls of ``step`` (to float rounding:
        the matrix products run over T rows at once)."""
        out = self.pre_mlp(x)
        steps, keep = len(out), self.d_conv - 1
        new_conv, new_h = np.empty_like(conv), np.empty_like(h)
        for i, L in enumerate(self.layers):
            u, z = np.split(_rms(out, L["norm"]) @ L["in"], 2, axis=-1)
            window = np.concatenate([conv[0, i].T, u])  # [keep + T, d_inner], oldest first
            u_c = window[:steps] * L["conv_w"][:, 0]
            for k in range(1, self.d_conv):
                u_c += window[k : k + steps] * L["conv_w"][:, k]
            u_c = _silu(u_c + L["conv_b"])
            dbc = u_c @ L["x"]
            a, b = L["split"]
            delta = _softplus(dbc[:, :a] @ L["dt_w"] + L["dt_b"])
            decay = np.exp(delta[..., None] * L["A"])  # [T, d_inner, d_state]
            hs = (delta * u_c)[..., None] * dbc[:, None, a:b]  # inputs, then the states
            hs[0] += decay[0] * h[0, i]
            for t in range(1, steps):  # the recurrence: h_t = decay_t · h_{t-1} + input_t
                hs[t] += decay[t] * hs[t - 1]
            y = (hs * dbc[:, None, b:]).sum(-1) + u_c * L["D"]
            out = out + (y * _silu(z)) @ L["out"]
            new_conv[0, i], new_h[0, i] = window[len(window) - keep :].T, hs[-1]
        logits = _rms(out, self.norm) @ self.post[0] + self.post[1]
        return logits, new_conv, new_h

    def step(self, x: np.ndarray, conv: np.ndarray, h: np.ndarray):
        """x [B, 140] → (logits [B, classes], conv', h'); inputs are not modified."""
        out = self.pre_mlp(x)
        new_conv, new_h = np.empty_like(conv), np.empty_like(h)
        for i, L in enumerate(self.layers):
            u, z = np.split(_rms(out, L["norm"]) @ L["in"], 2, axis=-1)
            window = np.concatenate([conv[:, i], u[..., None]], axis=-1)
            u_c = _silu((window * L["conv_w"]).sum(-1) + L["conv_b"])
            dbc = u_c @ L["x"]
            a, b = L["split"]
            delta = _softplus(dbc[:, :a] @ L["dt_w"] + L["dt_b"])
            bb, cc = dbc[:, a:b], dbc[:, b:]
            hi = (
                np.exp(delta[..., None] * L["A"]) * h[:, i]
                + (delta * u_c)[..., None] * bb[:, None, :]
            )
            y = (hi * cc[:, None, :]).sum(-1) + u_c * L["D"]
            out = out + (y * _silu(z)) @ L["out"]
            new_conv[:, i], new_h[:, i] = window[..., 1:], hi
        logits = _rms(out, self.norm) @ self.post[0] + self.post[1]
        return logits, new_conv, new_h
