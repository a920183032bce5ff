"""TFLite export through litert-torch (the ``litert`` extra): fp32, and static int8 by PT2E.

fp32 is a direct conversion. int8 inserts observers with litert-torch's PT2E quantizer
(symmetric per-channel int8 weights, per-tensor int8 activations with histogram observers),
calibrates on the same deployment-like epochs as the ONNX int8 model, and converts; the
resulting model takes and returns int8 tensors whose scale and zero point the runtime reads
from the file. Both are exported for batch 1 (the runtime invokes once per epoch).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
import torch


@contextlib.contextmanager
def _quiet():
    """litert-torch prints progress lines and absl logs; keep export output readable."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def export_tflite_fp32(model: torch.nn.Module, path: Path, example: torch.Tensor) -> Path:
    import litert_torch

    model.eval()
    with _quiet():
        litert_torch.convert(model, (example,)).export(str(path))
    return path


def export_tflite_int8(
    model: torch.nn.Module, path: Path, example: torch.Tensor, calibration: np.ndarray
) -> Path:
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer as pq
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    model.eval()
    quantizer = pq.PT2EQuantizer().set_global(
        pq.get_symmetric_quantization_config(is_per_channel=True)
    )
    with _quiet():
        graph = torch.export.export(model, (example,)).module()
        prepared = quantize_pt2e.prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for epoch in calibration:  # batch 1, as exported
                prepared(torch.from_numpy(np.ascontiguousarray(epoch[None], np.float32)))
        converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
        move_exported_model_to_eval(converted)
        litert_torch.convert(
            converted, (example,), quant_config=QuantConfig(pt2e_quantizer=quantizer)
        ).export(str(path))
    return path
