"""Export ULW-SleepNet: ``python -m export.ulw --checkpoint runs/ulw/best.pt --out DIR``.

Writes ``ulw_sleepnet_fp32.onnx`` (one file: ``torch.onnx.export(dynamo=True,
external_data=False)``, dynamic batch, input ``epochs`` [B, 4, 3000] in physical units, output
``logits`` [B, 5]) and ``ulw_sleepnet.json``, the manifest the runtime checks before loading:
sha256 and size of every file, inputs, outputs, classes, parameters, MACs, and whatever the
training and evaluation summaries given say about data and metrics. Parity with torch is checked
on export (max |Δ logits| recorded in the manifest). ONNX int8 is static QDQ (``export.quantize``),
TFLite fp32 and int8 come from litert-torch (``export.tflite``), the native kernel's packed
fp32 weights from ``export.ulw_native``; parity and int8 agreement on the calibration epochs are
recorded in the manifest (held-out agreement: ``training.evaluate``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from export.quantize import quantize_int8, realistic_calibration
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


def _file_entry(path: Path) -> dict:
    return {"path": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}


def _logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of an exported file through the edge runtime (the code that will run it)."""
    from edge.models.runner import LiteRTEpochModel, OnnxEpochModel

    if path.suffix == ".tflite":
        return LiteRTEpochModel(path).predict(x)
    return OnnxEpochModel(path, "epochs", "logits").predict(x)


def default_calibration(nights: int = 2, seed: int = 0) -> np.ndarray:
    """Deployment-like epochs: the first training nights, resynthesised, artefacts added."""
    from training.data.psg import resynth_sleep_edf
    from training.splits import load as load_split

    names = load_split("sleep-edf")["nights"]["train"][:nights]
    epochs = np.concatenate([resynth_sleep_edf(n, seed).x for n in names])
    return realistic_calibration(epochs, n=256, seed=seed)


def export_ulw(
    checkpoint: Path,
    out: Path,
    train_summary: Path | None = None,
    evaluation: Path | None = None,
    calibration: np.ndarray | None = None,
    tflite: bool = True,
) -> dict:
    """ONNX fp32 + int8 (and TFLite fp32 + int8 when ``tflite``) and the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    model = ULWSleepNet.from_checkpoint(checkpoint)
    calib = default_calibration() if calibration is None else calibration
    files = {"onnx_fp32": out / f"{NAME}_fp32.onnx", "onnx_int8": out / f"{NAME}_int8.onnx"}
    export_onnx(model, files["onnx_fp32"])
    # int8 models take channel-normalised input (the runtime multiplies by input_scale first):
    # one per-tensor int8 input scale cannot serve EEG (~30 uV) and EMG (~1 uV) together
    core, scale = prescaled(model)
    calib_scaled = calib * scale[None, :, None]
    core_onnx = out / f"{NAME}_core.tmp.onnx"
    export_onnx(core, core_onnx)
    quantize_int8(core_onnx, files["onnx_int8"], calib_scaled)
    core_onnx.unlink()
    parity = {"onnx_fp32_vs_torch_max_abs_logit": onnx_parity(model, files["onnx_fp32"])}
    probe, probe_scaled = calib[:64], calib_scaled[:64]
    with torch.no_grad():
        fp32 = model(torch.from_numpy(probe)).numpy()
    parity["onnx_int8_agreement_on_calibration"] = _agreement(
        _logits(files["onnx_int8"], probe_scaled), fp32
    )
    if tflite:
        from export.tflite import export_tflite_fp32, export_tflite_int8

        example = torch.from_numpy(calib[:1])
        files["tflite_fp32"] = export_tflite_fp32(model, out / f"{NAME}_fp32.tflite", example)
        files["tflite_int8"] = export_tflite_int8(
            core, out / f"{NAME}_int8.tflite", torch.from_numpy(calib_scaled[:1]), calib_scaled
        )
        parity["tflite_fp32_vs_onnx_fp32_max_abs_logit"] = float(
            np.abs(_logits(files["tflite_fp32"], probe) - _logits(files["onnx_fp32"], probe)).max()
        )
        parity["tflite_int8_agreement_on_calibration"] = _agreement(
            _logits(files["tflite_int8"], probe_scaled), fp32
        )
    files["torch_checkpoint"] = out / f"{NAME}.pt"  # the weights, for parity and baselines
    torch.save({"model": model.state_dict()}, files["torch_checkpoint"])
    entries = {k: _file_entry(v) for k, v in files.items()}
    for k in ("onnx_int8", "tflite_int8"):
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

    return add_native(out, calib)


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a.argmax(axis=1) == b.argmax(axis=1)).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m export.ulw", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("edge/models/ulw_sleepnet"))
    ap.add_argument("--train-summary", type=Path)
    ap.add_argument("--evaluation", type=Path, help="JSON from python -m training.evaluate")
    ap.add_argument("--no-tflite", action="store_true", help="skip TFLite (no litert extra)")
    args = ap.parse_args(argv)
    m = export_ulw(
        args.checkpoint, args.out, args.train_summary, args.evaluation, tflite=not args.no_tflite
    )
    print(
        f"export: {args.out / m['files']['onnx_fp32']['path']} "
        f"(parity {m['parity']['onnx_fp32_vs_torch_max_abs_logit']:.2e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
