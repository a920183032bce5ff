"""Where the real data lives: ``$SLEEPEDGE_DATA``, else ``../shared/data`` beside the repo;
two small records are bundled for machines without it."""

from __future__ import annotations

import os
from pathlib import Path

BUNDLED = Path(__file__).resolve().parents[1] / "data"  # two small real records (README there)


def data_root() -> Path:
    env = os.environ.get("SLEEPEDGE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def find_record(relative: str, root: Path | None = None) -> Path:
    """A record under ``root`` if given, else under the data root, else among the bundled."""
    roots = [root] if root is not None else [data_root(), BUNDLED]
    for r in roots:
        if (r / relative).exists():
            return r / relative
    raise FileNotFoundError(f"no record {relative} under {', '.join(str(r) for r in roots)}")
