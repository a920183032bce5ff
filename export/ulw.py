"""Export ULW-SleepNet: ``python -m export.ulw --checkpoint runs/ulw/best.pt --out DIR``.

Writes ``ulw_sleepnet_fp32.onnx`` (one file: ``torch.onnx.export(dynamo=True,
external_data=False)``, dynamic batch, input ``epochs`` [B, 4, 3000] in physical units, output
``logits`` [B, 5]) and ``ulw_sleepnet.json``, the manifest the runtime checks before loading:
sha256 and size of every file, inputs, outputs, classes, parameters, MACs, and whatever the
training and evaluation summaries given say about data and metrics. Parity with torch is checked
on export (max |Δ logits| recorded in the manifest). TFLite fp32 comes from litert-torch
(``export.tflite``), the native kernel's packed fp32 and int8 weights from
``export.ulw_native``, ONNX int8 (per-epoch activation scales in the graph) from those int8
weights (``export.ulw_onnx_int8``). The static int8 files (ONNX QDQ, ``export.quantize``; TFLite
PT2E) are written as research exports (``research_*_int8_static``): they lose accuracy on
held-out nights and are never served. Last, ``export.verify_ulw`` measures every variant's
agreement with fp32 on held-out nights into the manifest, which the runtime's gate reads.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from export.quantize import quantize_int8
from export.ulw_files import NAME, default_calibration, file_entry
from training.models.ulw_sleepnet import CLASSES, ULWSleepNet, count_macs, count_parameters


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
    x = (np.random.default_rng(seed).standard_normal((n, 4, 3000)) * 30).astype(np.float32)
    got = _logits(path, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())


def prescaled(model: ULWSleepNet) -> tuple[ULWSleepNet, np.ndarray]:
    """A copy taking channel-normalised input, and the per-channel scale to apply first."""
    core = copy.deepcopy(model).eval()
    scale = model.input_scale.detach().numpy().astype(np.float32).copy()
    core.input_scale.fill_(1.0)
    return core, scale


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of an exported file through the edge runtime (the code that will run it)."""
    from edge.models.runner import LiteRTEpochModel, OnnxEpochModel

    if path.suffix == ".tflite":
        return LiteRTEpochModel(path).predict(x)
    return OnnxEpochModel(path, "epochs", "logits").predict(x)


def export_ulw(
    checkpoint: Path,
    out: Path,
    train_summary: Path | None = None,
    evaluation: Path | None = None,
    calibration: np.ndarray | None = None,
    tflite: bool = True,
    heldout_nights: int | None = None,
    heldout_epochs: int | None = None,
) -> dict:
    """ONNX fp32 + int8, native fp32 + int8 (and TFLite fp32 when ``tflite``), the static int8
    research exports, and the manifest with every variant's held-out agreement (on the first
    ``heldout_nights`` test-split nights, ``heldout_epochs`` each; default all)."""
    out.mkdir(parents=True, exist_ok=True)
    model = ULWSleepNet.from_checkpoint(checkpoint)
    calib = default_calibration() if calibration is None else calibration
    files = {
        "onnx_fp32": out / f"{NAME}_fp32.onnx",
        "research_onnx_int8_static": out / f"{NAME}_research_int8_static.onnx",
    }
    export_onnx(model, files["onnx_fp32"])
    # int8 models take channel-normalised input (the runtime multiplies by input_scale first):
    # one per-tensor int8 input scale cannot serve EEG (~30 uV) and EMG (~1 uV) together
    core, scale = prescaled(model)
    calib_scaled = calib * scale[None, :, None]
    core_onnx = out / f"{NAME}_core.tmp.onnx"
    export_onnx(core, core_onnx)
    quantize_int8(core_onnx, files["research_onnx_int8_static"], calib_scaled)
    core_onnx.unlink()
    parity = {"onnx_fp32_vs_torch_max_abs_logit": onnx_parity(model, files["onnx_fp32"])}
    probe, probe_scaled = calib[:64], calib_scaled[:64]
    with torch.no_grad():
        fp32 = model(torch.from_numpy(probe)).numpy()
    parity["research_onnx_int8_static_agreement_on_calibration"] = _agreement(
        _logits(files["research_onnx_int8_static"], probe_scaled), fp32
    )
    if tflite:
        from export.tflite import export_tflite_fp32, export_tflite_int8

        example = torch.from_numpy(calib[:1])
        files["tflite_fp32"] = export_tflite_fp32(model, out / f"{NAME}_fp32.tflite", example)
        files["research_tflite_int8_static"] = export_tflite_int8(
            core,
            out / f"{NAME}_research_int8_static.tflite",
            torch.from_numpy(calib_scaled[:1]),
            calib_scaled,
        )
        parity["tflite_fp32_vs_onnx_fp32_max_abs_logit"] = float(
            np.abs(_logits(files["tflite_fp32"], probe) - _logits(files["onnx_fp32"], probe)).max()
        )
        parity["research_tflite_int8_static_agreement_on_calibration"] = _agreement(
            _logits(files["research_tflite_int8_static"], probe_scaled), fp32
        )
    files["torch_checkpoint"] = out / f"{NAME}.pt"  # the weights, for parity and baselines
    torch.save({"model": model.state_dict()}, files["torch_checkpoint"])
    entries = {k: file_entry(v) for k, v in files.items()}
    for k in ("research_onnx_int8_static", "research_tflite_int8_static"):
        if k in entries:
            entries[k]["input_scale"] = [float(v) for v in scale]
    manifest = {
        "name": NAME,
        "task": "per-epoch sleep staging, 30-s epochs of Sleep-EDF channels at 100 Hz",
        "device": "psg",
        "input_spec": "ulw_sleepnet",
        "files": entries,
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
        "parity": parity,
    }
    if train_summary and train_summary.exists():
        s = json.loads(train_summary.read_text())
        manifest["training"] = {
            k: s.get(k) for k in ("train_nights", "val_nights", "train_epochs", "epoch", "best")
        }
    if evaluation and evaluation.exists():
        manifest["metrics"] = json.loads(evaluation.read_text())
    (out / f"{NAME}.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    from export.ulw_native import add_native
    from export.ulw_onnx_int8 import add_int8_onnx
    from export.verify_ulw import verify

    add_native(out, calib)
    add_int8_onnx(out, calib)
    verify(out, heldout_nights, heldout_epochs)
    return json.loads((out / f"{NAME}.json").read_text(encoding="utf-8"))


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.ulw", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("edge/models/ulw_sleepnet"))
    ap.add_argument("--train-summary", type=Path)
    ap.add_argument("--evaluation", type=Path, help="JSON from python -m training.evaluate")
    ap.add_argument("--no-tflite", action="store_true", help="skip TFLite (no litert extra)")
    ap.add_argument("--heldout-nights", type=int, help="verify on the first N test nights")
    args = ap.parse_args(argv)
    m = export_ulw(
        args.checkpoint,
        args.out,
        args.train_summary,
        args.evaluation,
        tflite=not args.no_tflite,
        heldout_nights=args.heldout_nights,
    )
    print(
        f"export: {args.out / m['files']['onnx_fp32']['path']} "
        f"(parity {m['parity']['onnx_fp32_vs_torch_max_abs_logit']:.2e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
