"""Per-epoch model runners behind one interface: ``predict(epochs [B, C, T]) → logits [B, K]``.

Backends: onnxruntime (default; ``onnx_fp32`` / ``onnx_int8`` files, int8 with per-epoch
activation scales in the graph), LiteRT (``ai-edge-litert``, the ``litert`` extra;
``tflite_fp32``; its static int8 file is a research export, not served), native (a C
kernel built at install, ``edge/native``; ``native_fp32`` / ``native_int8``, packed weights) and
numpy (``edge.models.ulw_numpy``, the kernel's reference, on the same files). Sessions run with
a fixed number of intra-op threads (one by default: a Pi-class device stages one stream; a
server batches many streams into one call). Every file's sha256 is checked against the
manifest before it is read, and a variant is served only if the manifest records that it
stages at least 98 % of held-out epochs as fp32.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from edge.models.epoch_input import check_input
from edge.models.manifest import Manifest, ModelIntegrityError

# backend → the manifest's file prefix (numpy runs the native kernel's packed weights)
BACKENDS = {"onnxruntime": "onnx", "litert": "tflite", "native": "native", "numpy": "native"}
PRECISIONS = ("fp32", "int8")


class EpochModel(Protocol):
    classes: list[str]

    def predict(self, epochs: np.ndarray) -> np.ndarray: ...


class OnnxEpochModel:
    def __init__(self, path: Path, input_name: str, output_name: str, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input, self.output = input_name, output_name
        self.shape = list(self.session.get_inputs()[0].shape[1:])

    def predict(self, epochs: np.ndarray) -> np.ndarray:
        x = check_input(epochs, self.shape)
        return self.session.run([self.output], {self.input: x})[0]


def litert_interpreter(path: Path, threads: int):
    """A LiteRT interpreter for ``path``, or a one-line error naming the extra to install."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ModelIntegrityError(
            "the litert backend needs ai-edge-litert: pip install 'sleepedge[litert]'"
        ) from None
    return Interpreter(model_path=str(path), num_threads=threads)


class LiteRTEpochModel:
    """A .tflite model exported for batch 1, invoked once per epoch of a batch (XNNPACK cannot
    reshape the exported graph's fixed reshapes; a Pi stages one epoch per 30 s anyway, and
    servers batching many streams use onnxruntime's dynamic batch).

    int8 models take and return int8 tensors: inputs are quantised with the file's own scale and
    zero point, logits dequantised the same way, so callers always see float32.
    """

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.interpreter = litert_interpreter(path, threads)
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self.shape = [int(v) for v in self._in["shape"][1:]]
        self.interpreter.allocate_tensors()

    def predict(self, epochs: np.ndarray) -> np.ndarray:
        x = check_input(epochs, self.shape)
        if self._in["dtype"] == np.int8:
            scale, zero = self._in["quantization"]
            x = np.clip(np.rint(x / scale) + zero, -128, 127).astype(np.int8)
        out = []
        for epoch in x:
            self.interpreter.set_tensor(self._in["index"], epoch[None])
            self.interpreter.invoke()
            out.append(self.interpreter.get_tensor(self._out["index"])[0])
        y = np.stack(out) if out else np.zeros((0, *self._out["shape"][1:]), self._out["dtype"])
        if self._out["dtype"] == np.int8:
            scale, zero = self._out["quantization"]
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return y.astype(np.float32)


class NativeEpochModel:
    """ULW-SleepNet through the compiled kernel (``edge/native/ulw_sleepnet.c``), one thread,
    the GIL released while it runs; weights are the packed array ``export.ulw_native`` writes
    (BatchNorm, shortcuts and head folded; with ``int8``, the int8 pointwise weights and their
    scales; ``edge.models.ulw_numpy`` is the reference of both)."""

    def __init__(self, path: Path, threads: int = 1, int8: bool = False) -> None:
        from edge.native import kernel

        self._kernel = kernel("ulw_sleepnet")
        self.shape = [self._kernel.CHANNELS, self._kernel.SAMPLES]
        count = self._kernel.WEIGHT_COUNT + (self._kernel.INT8_SCALES if int8 else 0)
        weights = np.load(path, allow_pickle=False)
        if weights.dtype != np.float32 or weights.shape != (count,):
            raise ModelIntegrityError(
                f"{path}: {weights.dtype} {weights.shape} is not the native ULW-SleepNet's "
                f"packed {'int8' if int8 else 'fp32'} weights (float32 [{count}])"
            )
        self._weights = weights
        self._forward = self._kernel.forward_int8 if int8 else self._kernel.forward
        work = self._kernel.WORK_INT8_FLOATS if int8 else self._kernel.WORK_FLOATS
        self._work = np.empty(work, np.float32)
        self._lock = threading.Lock()  # one scratch buffer; the kernel runs without the GIL

    def predict(self, epochs: np.ndarray) -> np.ndarray:
        x = check_input(epochs, self.shape)
        logits = np.empty((len(x), self._kernel.CLASSES), np.float32)
        with self._lock:
            self._forward(self._weights, x, logits, self._work)
        return logits


def load_epoch_model(
    manifest_path,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    threads: int = 1,
    research: bool = False,
    file: str | None = None,
) -> EpochModel:
    """The verified model file for ``backend`` × ``precision``, ready to ``predict``.

    Only variants whose held-out agreement with fp32, recorded in the manifest, meets its
    minimum are served (``Manifest.variant_file``; a refusal names the alternative);
    ``research=True`` loads research exports too, for evaluation and benchmarks, and ``file``
    (with ``research``) names the manifest's file key outright (held-out verification measures
    files before the manifest maps variants to them)."""
    if backend not in BACKENDS:
        raise ModelIntegrityError(f"unknown backend {backend!r} (choose from {sorted(BACKENDS)})")
    if precision not in PRECISIONS and not research:
        raise ModelIntegrityError(f"unknown precision {precision!r} (choose from {PRECISIONS})")
    manifest = Manifest.load(manifest_path)
    if file is not None and not research:
        raise ModelIntegrityError("a file key is loaded by name only with research=True")
    key = file or manifest.variant_file(backend, precision, BACKENDS[backend], research)
    path = manifest.file(key)  # sha256 checked here
    if backend == "litert":
        model: EpochModel = LiteRTEpochModel(path, threads)
    elif backend == "native":
        model = NativeEpochModel(path, threads, int8=precision == "int8")
    elif backend == "numpy":
        from edge.models.ulw_numpy import NumpyEpochModel

        model = NumpyEpochModel(np.load(path, allow_pickle=False), int8=precision == "int8")
    else:
        model = OnnxEpochModel(
            path, manifest.data["inputs"][0]["name"], manifest.data["outputs"][0]["name"], threads
        )
    scale = manifest.data["files"][key].get("input_scale")
    if scale is not None:
        model = Prescaled(model, np.asarray(scale, np.float32))
    model.classes = manifest.classes
    return model


class Prescaled:
    """Multiplies each input channel by a fixed scale before the model (int8 files take
    channel-normalised input so that one per-tensor int8 scale fits every channel)."""

    def __init__(self, model: EpochModel, scale: np.ndarray) -> None:
        self.model, self.scale = model, scale[None, :, None]
        self.shape = model.shape

    def predict(self, epochs: np.ndarray) -> np.ndarray:
        x = check_input(epochs, self.shape)
        return self.model.predict(x * self.scale)
