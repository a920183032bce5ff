"""Step models behind one interface: ``step(features [B, F], conv, h) → (logits, conv', h')``.

Backends: onnxruntime (``onnx_fp32`` / ``onnx_int8`` step graphs from ``export/mamba.py``,
dynamic batch), LiteRT (``tflite_fp32`` for one stream and ``tflite_fp32_block`` for blocks of
streams), native (a C kernel built at install, ``edge.models.native_step``, on ``numpy_weights``)
and numpy (the reference, ``numpy_weights``). State arrays have the streams on axis
0, so streams join or leave by concatenating or indexing rows and one call steps them all
(``edge.models.streams``).
``load_step_model`` verifies the file's sha256 and wraps the model with the manifest's fixed
feature normalisation (causal: training-set statistics; a missing feature becomes 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from edge.models.manifest import Manifest, ModelIntegrityError

STEP_BACKENDS = ("onnxruntime", "litert", "native", "numpy")


class StepModel(Protocol):
    classes: list[str]

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]: ...

    def step(
        self, features: np.ndarray, conv: np.ndarray, h: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def run_sequence(model: StepModel, x: np.ndarray, conv: np.ndarray, h: np.ndarray):
    """One stream's consecutive seconds x [T, F] → (logits [T, K], conv', h'): the model's own
    ``sequence`` where it has one, else ``step_by_step``."""
    if hasattr(model, "sequence"):
        return model.sequence(x, conv, h)
    return step_by_step(model, x, conv, h)


def step_by_step(model: StepModel, x: np.ndarray, conv: np.ndarray, h: np.ndarray):
    """``sequence`` for a model without one: a batch-1 step per second, state carried."""
    logits = []
    for t in range(len(x)):
        y, conv, h = model.step(x[t : t + 1], conv, h)
        logits.append(y)
    return (np.concatenate(logits) if logits else np.zeros((0, 0), np.float32)), conv, h


class OnnxStepModel:
    """onnxruntime step; with ``sequence_path`` (``onnx_fp32_seq``: a fixed number of
    consecutive seconds of one stream per call) ``sequence`` runs a replay's queued seconds
    that many at a time instead of one call a second."""

    def __init__(self, path: Path, threads: int = 1, sequence_path: Path | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self._conv_shape, self._h_shape = shapes["conv"][1:], shapes["h"][1:]
        self._seq = None
        if sequence_path is not None:
            self._seq = ort.InferenceSession(
                str(sequence_path), options, providers=["CPUExecutionProvider"]
            )
            self._seq_steps = int(self._seq.get_inputs()[0].shape[0])

    def sequence(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        """One stream's consecutive seconds (features [T, F], state [1, ...]) → (logits [T, K],
        state after them); the last call is zero-padded and its state read at its last real
        second (the graph returns the state after every second)."""
        x = np.ascontiguousarray(features, np.float32)
        if self._seq is None:
            return step_by_step(self, x, conv, h)
        k, keep = self._seq_steps, self._conv_shape[-1]
        logits = []
        for a in range(0, len(x), k):
            chunk = x[a : a + k]
            m = len(chunk)
            if m < k:
                chunk = np.concatenate([chunk, np.zeros((k - m, x.shape[1]), np.float32)])
            y, windows, states = self._seq.run(None, {"features": chunk, "conv": conv, "h": h})
            logits.append(y[:m])
            conv = np.ascontiguousarray(windows[:, m : m + keep].transpose(0, 2, 1)[None])
            h = states[m - 1 : m]
        return (np.concatenate(logits) if logits else np.zeros((0, 0), np.float32)), conv, h

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.zeros((batch, *self._conv_shape), np.float32),
            np.zeros((batch, *self._h_shape), np.float32),
        )

    def step(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        feeds = {"features": np.ascontiguousarray(features, np.float32), "conv": conv, "h": h}
        logits, conv, h = self.session.run(None, feeds)
        return logits, conv, h


class _TFLiteStep:
    """One .tflite step graph with a fixed batch. litert-torch names the signature's tensors
    ``args_<i>`` and ``output_<i>`` in the order of the step's arguments and results."""

    def __init__(self, path: Path, threads: int) -> None:
        from edge.models.runner import litert_interpreter

        self.interpreter = litert_interpreter(path, threads)
        self.interpreter.allocate_tensors()
        ins = self.interpreter.get_input_details()
        outs = self.interpreter.get_output_details()
        found = [self._find(ins, f"args_{i}") for i in range(3)]
        self._in = [d["index"] for d in found]
        self._out = [self._find(outs, f"output_{i}")["index"] for i in range(3)]
        self.batch = int(found[0]["shape"][0])
        self.conv_shape = tuple(int(v) for v in found[1]["shape"][1:])
        self.h_shape = tuple(int(v) for v in found[2]["shape"][1:])

    @staticmethod
    def _find(details: list[dict], name: str) -> dict:
        for d in details:
            if d["name"].endswith(name) or f"{name}_" in d["name"] or f"{name}:" in d["name"]:
                return d
        raise ModelIntegrityError(f"the .tflite step has no tensor {name!r}")

    def run(self, x: np.ndarray, conv: np.ndarray, h: np.ndarray):
        """Exactly ``self.batch`` rows in; copies of the three outputs back. ``set_tensor`` is
        the cheapest way in (0.6 µs against 0.95 µs for writing through ``tensor()`` views,
        measured; it copies strided arrays itself): at one stream the Python around ``invoke`` is
        a fifth of the step."""
        put, get = self.interpreter.set_tensor, self.interpreter.get_tensor
        put(self._in[0], x if x.dtype == np.float32 else x.astype(np.float32))
        put(self._in[1], conv)  # states are the graph's own float32 outputs
        put(self._in[2], h)
        self.interpreter.invoke()
        return get(self._out[0]), get(self._out[1]), get(self._out[2])


class LiteRTStepModel:
    """LiteRT (XNNPACK) step: ``tflite_fp32`` is exported for one stream; with a block file
    (``tflite_fp32_block``, a fixed batch of e.g. 64 streams) larger batches run block by block,
    the last block padded (the .tflite graphs have fixed shapes: litert-torch cannot export a
    dynamic batch for this model, and resizing the batch-1 graph gives wrong states)."""

    def __init__(self, path: Path, threads: int = 1, block_path: Path | None = None) -> None:
        self._one = _TFLiteStep(path, threads)
        self._block = _TFLiteStep(block_path, threads) if block_path is not None else None
        self._conv_shape, self._h_shape = self._one.conv_shape, self._one.h_shape

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.zeros((batch, *self._conv_shape), np.float32),
            np.zeros((batch, *self._h_shape), np.float32),
        )

    def step(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        n = len(features)
        if n == 1:
            return self._one.run(features, conv, h)
        graph = self._block if self._block is not None and n > 4 else self._one
        k = graph.batch
        logits = None
        new_conv, new_h = np.empty_like(conv), np.empty_like(h)
        for a in range(0, n, k):
            b = min(n, a + k)
            x, c, s = features[a:b], conv[a:b], h[a:b]
            if b - a < k:  # pad the last block
                pad = k - (b - a)
                x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), np.float32)])
                c = np.concatenate([c, np.zeros((pad, *c.shape[1:]), np.float32)])
                s = np.concatenate([s, np.zeros((pad, *s.shape[1:]), np.float32)])
            y, c2, s2 = graph.run(x, c, s)
            if logits is None:
                logits = np.empty((n, y.shape[1]), np.float32)
            logits[a:b], new_conv[a:b], new_h[a:b] = y[: b - a], c2[: b - a], s2[: b - a]
        if logits is None:
            return np.zeros((0, 0), np.float32), conv, h
        return logits, new_conv, new_h


class NumpyStepModel:
    """The numpy reference step (``edge.models.mamba_numpy``) on the manifest's weights."""

    def __init__(self, path: Path) -> None:
        from edge.models.mamba_numpy import NumpyMamba

        self.model = NumpyMamba.load(path)

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.initial_state(batch)

    def step(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        return self.model.step(features, conv, h)

    def sequence(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        return self.model.sequence(features, conv, h)


class Normalised:
    """Applies the manifest's fixed per-feature statistics before the model; NaN (a sensor
    that is absent or in a gap) becomes 0, the training-set mean — what modality dropout
    trained the model to expect."""

    def __init__(self, model: StepModel, mean: np.ndarray, std: np.ndarray) -> None:
        self.model = model
        self.mean = np.asarray(mean, np.float32)
        self.inv_std = (1.0 / np.asarray(std, np.float32)).astype(np.float32)
        self.classes: list[str] = []

    def normalise(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, np.float32) - self.mean) * self.inv_std
        return np.where(np.isfinite(z), z, np.float32(0.0))

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return self.model.initial_state(batch)

    def step(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        return self.model.step(self.normalise(features), conv, h)

    def sequence(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        """One stream's consecutive seconds (features [T, F], state of one stream) → logits
        [T, K] and its state after them: the backend's ``sequence`` where it has one (numpy;
        onnxruntime fp32 with its sequence graph), else one batch-1 step a second; normalised
        once for all T."""
        return run_sequence(self.model, self.normalise(features), conv, h)


def load_step_model(
    manifest_path, backend: str = "onnxruntime", precision: str = "fp32", threads: int = 1
) -> Normalised:
    """The verified step model for ``backend`` × ``precision`` with its normalisation."""
    if backend not in STEP_BACKENDS:
        raise ModelIntegrityError(f"unknown backend {backend!r} (choose from {STEP_BACKENDS})")
    manifest = Manifest.load(manifest_path)
    if backend in ("numpy", "native"):
        if precision != "fp32":
            raise ModelIntegrityError(f"the {backend} step is fp32 only")
        if backend == "numpy":
            model: StepModel = NumpyStepModel(manifest.file("numpy_weights"))
        else:
            from edge.models.mamba_numpy import NumpyMamba
            from edge.models.native_step import NativeStepModel

            model = NativeStepModel(NumpyMamba.load(manifest.file("numpy_weights")))
    elif backend == "litert":
        block = f"tflite_{precision}_block"
        model = LiteRTStepModel(
            manifest.file(f"tflite_{precision}"),
            threads,
            manifest.file(block) if block in manifest.data["files"] else None,
        )
    else:
        seq = "onnx_fp32_seq" if precision == "fp32" else None
        model = OnnxStepModel(
            manifest.file(f"onnx_{precision}"),
            threads,
            manifest.file(seq) if seq in manifest.data["files"] else None,
        )
    norm = manifest.data["normalisation"]
    wrapped = Normalised(model, norm["mean"], norm["std"])
    wrapped.classes = manifest.classes
    return wrapped
