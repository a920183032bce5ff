"""What the ULW-SleepNet export steps share: file entries for the manifest and the calibration
epochs (``export.ulw``, ``export.ulw_native``, ``export.ulw_onnx_int8`` and ``export.verify_ulw``
all use them; kept here so that none of them imports another's internals)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from export.quantize import realistic_calibration

NAME = "ulw_sleepnet"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def file_entry(path: Path) -> dict:
    """A manifest ``files`` entry: name, sha256 and size (the runtime checks the hash)."""
    return {"path": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}


def manifest_path(model_dir: Path) -> Path:
    return model_dir / f"{NAME}.json"


def read_manifest(model_dir: Path) -> dict:
    return json.loads(manifest_path(model_dir).read_text(encoding="utf-8"))


def write_manifest(model_dir: Path, manifest: dict) -> None:
    manifest_path(model_dir).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


def default_calibration(nights: int = 2, seed: int = 0) -> np.ndarray:
    """Deployment-like epochs: the first training nights, resynthesised, artefacts added."""
    from training.data.psg import resynth_sleep_edf
    from training.splits import load as load_split

    names = load_split("sleep-edf")["nights"]["train"][:nights]
    epochs = np.concatenate([resynth_sleep_edf(n, seed).x for n in names])
    return realistic_calibration(epochs, n=256, seed=seed)
