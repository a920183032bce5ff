"""Export the causal Mamba step: one graph with explicit state inputs and outputs.

``export_step_onnx(model, path)`` writes one ONNX file (dynamic batch B): inputs ``features``
[B, 140], ``conv`` [B, layers, d_inner, d_conv-1], ``h`` [B, layers, d_inner, d_state]; outputs
``logits`` [B, classes], ``conv_out``, ``h_out`` (the next state). The runtime feeds the outputs
back as the next call's inputs, so a night is stepped one second at a time with its state
carried over. LiteRT and int8 variants: issue #6, not yet.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from training.models.mamba import MambaStager


class _Step(torch.nn.Module):
    def __init__(self, model: MambaStager) -> None:
        super().__init__()
        self.model = model

    def forward(self, features, conv, h):
        return self.model.step(features, conv, h)


def export_step_onnx(model: MambaStager, path: Path) -> Path:
    model.eval()
    conv, h = model.initial_state(2)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Step(model),
            (torch.zeros(2, model.pre[1].in_features), conv, h),
            input_names=["features", "conv", "h"],
            output_names=["logits", "conv_out", "h_out"],
            dynamic_shapes={"features": {0: batch}, "conv": {0: batch}, "h": {0: batch}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(path))
    return path
