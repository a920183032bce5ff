"""Per-epoch model runners behind one interface: ``predict(epochs [B, C, T]) → logits [B, K]``.

Backends: onnxruntime (default). Sessions run with a fixed number of intra-op threads (one by
default: a Pi-class device stages one stream; a server batches many streams into one call).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edge.models.manifest import Manifest, ModelIntegrityError


class EpochModel(Protocol):
    classes: list[str]

    def predict(self, epochs: np.ndarray) -> np.ndarray: ...


class OnnxEpochModel:
    def __init__(self, manifest: Manifest, threads: int = 1) -> None:
        import onnxruntime as ort

        path = manifest.file("onnx_fp32")  # sha256 checked before anything reads the model
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = manifest.data["inputs"][0]
        self.output = manifest.data["outputs"][0]["name"]
        self.classes = manifest.classes

    def predict(self, epochs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(epochs, dtype=np.float32)
        want = self.input["shape"][1:]
        if x.ndim != 3 or list(x.shape[1:]) != want:
            raise ValueError(f"model input must be [batch, {want[0]}, {want[1]}], got {x.shape}")
        return self.session.run([self.output], {self.input["name"]: x})[0]


def load_epoch_model(manifest_path, backend: str = "onnxruntime", threads: int = 1) -> EpochModel:
    manifest = Manifest.load(manifest_path)
    if backend != "onnxruntime":
        raise ModelIntegrityError(
            f"backend {backend!r} is not available for "
            f"{manifest.data.get('name')} yet (onnxruntime is)"
        )
    return OnnxEpochModel(manifest, threads)
