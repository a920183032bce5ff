"""Checkpoints: the whole pipeline's state in one file, written atomically.

One ``.npz``: the session snapshot (operator arrays + bookkeeping) and a JSON ``meta`` record
(source position, output position, the run's configuration). Written to a temporary file,
fsynced, then renamed over the previous one, so a crash at any instant leaves either the old or
the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


class CheckpointError(RuntimeError):
    """No usable checkpoint, or one written by a run with another configuration."""


def save(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path} to resume from")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "meta"}
        meta = json.loads(z["meta"].tobytes())
    return arrays, meta
