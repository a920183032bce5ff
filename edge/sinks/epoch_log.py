"""The per-epoch files written as the night goes: ``epochs.jsonl`` and ``hypnogram.csv``.

Both are appended one line per epoch and flushed, so a crash loses at most the lines after the
last checkpoint; ``position()`` is what a checkpoint records and ``truncate(position)`` puts the
files back there on resume, so no epoch is ever written twice. Stage codes follow YASA
(W=0, N1=1, N2=2, N3=3, REM=4, unscored=-1), named in every line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edge.staging import EpochRecord

CSV_HEADER = "epoch,start_s,stage,stage_name,reason\n"


class EpochLog:
    def __init__(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl_path, self.csv_path = out / "epochs.jsonl", out / "hypnogram.csv"
        self.count = 0
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")  # noqa: SIM115 (long-lived)
        self._csv = open(self.csv_path, "a", encoding="utf-8")  # noqa: SIM115
        if self._csv.tell() == 0:
            self._csv.write(CSV_HEADER)
            self._csv.flush()

    def write(self, records: list[EpochRecord]) -> None:
        for r in records:
            self._jsonl.write(json.dumps(r.to_json(), separators=(",", ":")) + "\n")
            reason = (r.reason or "").replace(",", ";")
            self._csv.write(f"{r.index},{r.start_s:g},{r.stage},{r.stage_name},{reason}\n")
        self.count += len(records)
        self._jsonl.flush()
        self._csv.flush()

    def position(self) -> dict:
        return {"epochs": self.count, "jsonl": self._jsonl.tell(), "csv": self._csv.tell()}

    def truncate(self, position: dict) -> None:
        """Back to a checkpointed position: lines written after it are dropped."""
        for f, key in ((self._jsonl, "jsonl"), (self._csv, "csv")):
            f.flush()
            os.truncate(f.name, position[key])
            f.seek(position[key])
        self.count = position["epochs"]

    def sync(self) -> None:
        for f in (self._jsonl, self._csv):
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        self._jsonl.close()
        self._csv.close()


def read_records(path: Path) -> list[EpochRecord]:
    with open(path, encoding="utf-8") as f:
        return [EpochRecord.from_json(json.loads(line)) for line in f if line.strip()]
