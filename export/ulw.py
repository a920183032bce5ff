"""Export ULW-SleepNet: ``python -m export.ulw --checkpoint runs/ulw/best.pt --out DIR``.

Writes ``ulw_sleepnet_fp32.onnx`` (one file: ``torch.onnx.export(dynamo=True,
external_data=False)``, dynamic batch, input ``epochs`` [B, 4, 3000] in physical units, output
``logits`` [B, 5]) and ``ulw_sleepnet.json``, the manifest the runtime checks before loading:
sha256 and size of every file, inputs, outputs, classes, parameters, MACs, and whatever the
training and evaluation summaries given say about data and metrics. Parity with torch is checked
on export (max |Δ logits| recorded in the manifest). int8 and TFLite variants: see the issue.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from training.models.ulw_sleepnet import CLASSES, ULWSleepNet, count_macs, count_parameters

NAME = "ulw_sleepnet"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_onnx(model: ULWSleepNet, path: Path) -> None:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (torch.zeros(2, 4, 3000),),
            input_names=["epochs"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    program.save(str(path))


def onnx_parity(model: ULWSleepNet, path: Path, n: int = 64, seed: int = 0) -> float:
    import onnxruntime as ort

    x = (np.random.default_rng(seed).standard_normal((n, 4, 3000)) * 30).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"epochs": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())


def export_ulw(
    checkpoint: Path, out: Path, train_summary: Path | None = None, evaluation: Path | None = None
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    model = ULWSleepNet.from_checkpoint(checkpoint)
    onnx_path = out / f"{NAME}_fp32.onnx"
    export_onnx(model, onnx_path)
    parity = onnx_parity(model, onnx_path)
    manifest = {
        "name": NAME,
        "task": "per-epoch sleep staging, 30-s epochs of Sleep-EDF channels at 100 Hz",
        "device": "psg",
        "input_spec": "ulw_sleepnet",
        "files": {
            "onnx_fp32": {
                "path": onnx_path.name,
                "sha256": sha256(onnx_path),
                "bytes": onnx_path.stat().st_size,
            }
        },
        "inputs": [
            {
                "name": "epochs",
                "shape": ["batch", 4, 3000],
                "dtype": "float32",
                "channels": ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"],
                "unit": "uV",
            }
        ],
        "outputs": [{"name": "logits", "shape": ["batch", len(CLASSES)], "dtype": "float32"}],
        "classes": list(CLASSES),
        "stage_codes": {c: i for i, c in enumerate(CLASSES)},
        "params": count_parameters(model),
        "macs": count_macs(model, (1, 4, 3000)),
        "flops_note": "2 FLOPs per MAC; the paper's 7.89 MFLOPs uses another convention",
        "parity": {"onnx_fp32_vs_torch_max_abs_logit": parity},
    }
    if train_summary and train_summary.exists():
        s = json.loads(train_summary.read_text())
        manifest["training"] = {
            k: s.get(k) for k in ("train_nights", "val_nights", "train_epochs", "epoch", "best")
        }
    if evaluation and evaluation.exists():
        manifest["metrics"] = json.loads(evaluation.read_text())
    (out / f"{NAME}.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.ulw", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("edge/models/ulw_sleepnet"))
    ap.add_argument("--train-summary", type=Path)
    ap.add_argument("--evaluation", type=Path, help="JSON from python -m training.evaluate")
    args = ap.parse_args(argv)
    m = export_ulw(args.checkpoint, args.out, args.train_summary, args.evaluation)
    print(
        f"export: {args.out / m['files']['onnx_fp32']['path']} "
        f"(parity {m['parity']['onnx_fp32_vs_torch_max_abs_logit']:.2e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
