"""Step models behind one interface: ``step(features [B, F], conv, h) → (logits, conv', h')``.

``OnnxStepModel`` runs an exported step graph (``export/mamba.py``) in onnxruntime; the numpy
reference is ``edge.models.mamba_numpy.NumpyMamba``. State arrays have the streams on axis 0:
streams join or leave by concatenating or indexing rows, and one call steps them all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class OnnxStepModel:
    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        shapes = {i.name: i.shape for i in self.session.get_inputs()}
        self._conv_shape, self._h_shape = shapes["conv"][1:], shapes["h"][1:]

    def initial_state(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.zeros((batch, *self._conv_shape), np.float32),
            np.zeros((batch, *self._h_shape), np.float32),
        )

    def step(self, features: np.ndarray, conv: np.ndarray, h: np.ndarray):
        feeds = {"features": np.ascontiguousarray(features, np.float32), "conv": conv, "h": h}
        logits, conv, h = self.session.run(None, feeds)
        return logits, conv, h
