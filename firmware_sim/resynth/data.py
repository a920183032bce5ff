"""Where the real data lives: ``$SLEEPEDGE_DATA``, else ``../shared/data`` beside the repo."""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    env = os.environ.get("SLEEPEDGE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"
