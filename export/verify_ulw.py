"""Held-out verification of every exported ULW-SleepNet variant, recorded in the manifest.

``python -m export.verify_ulw [--model-dir DIR] [--max-nights N] [--max-epochs N]`` stages the
test-split Sleep-EDF nights (subjects never trained or validated on, resynthesised from their
real band powers as ``training.evaluate`` does) with every file of the export through the edge
runtime, and writes the manifest's ``agreement`` section: for each ``BACKEND:PRECISION``, its
file and the fraction of epochs staged as the fp32 reference stages them, beside accuracy and
kappa against the scored stages. The runtime serves a variant only when that agreement is at
least ``minimum`` (``edge.models.manifest.Manifest.variant_file``); ``export.ulw`` runs this on
every export. Research variants (the static int8 files) are measured and listed, never served.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import warnings
from pathlib import Path

import numpy as np

from edge.models.manifest import MIN_AGREEMENT
from export.ulw_files import read_manifest, write_manifest

REFERENCE = "onnxruntime:fp32"
# variant → manifest file key; the first is the reference
VARIANTS = {
    REFERENCE: "onnx_fp32",
    "onnxruntime:int8": "onnx_int8",
    "litert:fp32": "tflite_fp32",
    "native:fp32": "native_fp32",
    "native:int8": "native_int8",
    "numpy:fp32": "native_fp32",
    "numpy:int8": "native_int8",
    "onnxruntime:int8-static": "research_onnx_int8_static",
    "litert:int8": "research_tflite_int8_static",
}


def heldout_epochs(
    max_nights: int | None = None, max_epochs: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Epochs [E, 4, 3000] and stages of the test-split nights, resynthesised."""
    from training.data.psg import resynth_sleep_edf
    from training.splits import load as load_split

    nights = load_split("sleep-edf")["nights"]["test"][:max_nights]
    parts = [resynth_sleep_edf(n, seed, max_epochs=max_epochs) for n in nights]
    return np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), nights


def _stages(model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate(
        [model.predict(x[i : i + batch]).argmax(1) for i in range(0, len(x), batch)]
    )


def verify(
    model_dir: Path,
    max_nights: int | None = None,
    max_epochs: int | None = None,
    minimum: float = MIN_AGREEMENT,
) -> dict:
    """Measure every variant whose file the export has; write and return the section."""
    from edge.models import load_epoch_model
    from training.metrics import stage_metrics

    manifest = read_manifest(model_dir)
    x, y, nights = heldout_epochs(max_nights, max_epochs)
    path = model_dir / "ulw_sleepnet.json"
    rows: dict[str, dict] = {}
    reference = None
    for name, key in VARIANTS.items():
        if key not in manifest["files"]:
            continue
        backend, precision = name.split(":")
        try:
            model = load_epoch_model(path, backend, precision, research=True, file=key)
        except ImportError as exc:  # e.g. no compiler for the native kernel: not measured
            print(f"verify: {name} not measured ({exc})", file=sys.stderr)
            continue
        p = _stages(model, x)
        reference = p if reference is None else reference
        with warnings.catch_warnings():  # one-class slices make sklearn warn; kappa is None
            warnings.simplefilter("ignore")
            m = stage_metrics(y, p)
        rows[name] = {
            "file": key,
            "agreement": float(np.mean(p == reference)),
            "accuracy": m["accuracy"],
            "kappa": m["kappa"] if np.isfinite(m["kappa"]) else None,
            "research": key.startswith("research_"),
        }
    manifest = read_manifest(model_dir)  # re-read: nothing else changed it meanwhile
    manifest["agreement"] = {
        "reference": REFERENCE,
        "minimum": minimum,
        "epochs": len(y),
        "nights": nights,
        "data": "Sleep-EDF SC test-split nights (subjects never trained or validated on), "
        "resynthesised from their real band powers by firmware_sim.resynth",
        "command": "python -m export.verify_ulw"
        + (f" --max-nights {max_nights}" if max_nights else "")
        + (f" --max-epochs {max_epochs}" if max_epochs else ""),
        "date": datetime.date.today().isoformat(),
        "variants": rows,
    }
    write_manifest(model_dir, manifest)
    return manifest["agreement"]


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def table_markdown(section: dict) -> str:
    """The agreement section as the Markdown table the model card and docs show."""
    lines = [
        f"| variant | file | agreement with {section['reference']} | accuracy | kappa | edge-run |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, row in section["variants"].items():
        ok = row["agreement"] >= section["minimum"] and not row["research"]
        served = "served" if ok else "research export" if row["research"] else "refused"
        lines.append(
            f"| {name} | `{row['file']}` | {row['agreement']:.3f} | {row['accuracy']:.3f} | "
            f"{_num(row['kappa'])} | {served} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m export.verify_ulw", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model-dir", type=Path, default=Path("edge/models/ulw_sleepnet"))
    ap.add_argument("--max-nights", type=int, help="first N test-split nights (default: all)")
    ap.add_argument("--max-epochs", type=int, help="first N epochs of each night")
    ap.add_argument(
        "--table", action="store_true", help="print the recorded figures as Markdown, measure none"
    )
    args = ap.parse_args(argv)
    if args.table:
        print(table_markdown(read_manifest(args.model_dir)["agreement"]))
        return 0
    section = verify(args.model_dir, args.max_nights, args.max_epochs)
    print(f"held-out agreement with {REFERENCE} ({section['epochs']} epochs):")
    for name, row in section["variants"].items():
        ok = row["agreement"] >= section["minimum"] and not row["research"]
        served = "served" if ok else "research export" if row["research"] else "NOT served"
        print(
            f"  {name:26s} {row['agreement']:.3f}  accuracy {row['accuracy']:.3f}  "
            f"kappa {_num(row['kappa'])}  {served}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
