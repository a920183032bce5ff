"""One edge-run night: source frames → session → outputs, with checkpoints and resume.

Outputs in ``out``: ``epochs.jsonl`` and ``hypnogram.csv`` as the night goes, then
``hypnogram.edf``, ``hypnogram.png``, ``stats.json`` (from the JSONL, so a resumed run reports
the whole night) and ``run.json`` (counters) at the end. Every ``checkpoint_every`` epochs the
session state, the source position and the output position go atomically into
``checkpoint.npz``; ``resume`` truncates the outputs back to that position and continues from
there, so no epoch is written twice or lost.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

from edge import checkpoint
from edge.live import LiveView
from edge.session import Session
from edge.sinks.epoch_log import EpochLog, read_records
from edge.sinks.reports import write_reports

CHECKPOINT = "checkpoint.npz"


@dataclass
class RunResult:
    records: list  # every epoch of the night (read back from epochs.jsonl, resumed runs too)
    epochs: int
    seconds: float
    counts: dict
    stats: dict
    source_stats: dict = field(default_factory=dict)
    resumed_at: int | None = None


class NightWriter:
    """One device's outputs in ``out``: the epoch log, the publisher, checkpoints every
    ``checkpoint_every`` epochs and, at the end, the reports. ``edge-run`` has one; a fleet
    (many devices in one process) has one per device."""

    def __init__(
        self,
        out: Path,
        session: Session,
        config: dict,
        checkpoint_every: int = 20,
        resume: bool = False,
        publisher=None,
    ) -> None:
        out.mkdir(parents=True, exist_ok=True)
        self.out, self.session, self.config = out, session, config
        self.checkpoint_every, self.publisher = checkpoint_every, publisher
        self.ck_path = out / CHECKPOINT
        self.resumed_at: int | None = None
        self.source_position = None
        if not resume:
            for name in ("epochs.jsonl", "hypnogram.csv", CHECKPOINT):
                (out / name).unlink(missing_ok=True)
        self.log = EpochLog(out)
        if resume:
            arrays, meta = checkpoint.load(self.ck_path)
            if meta["config"] != config:
                raise checkpoint.CheckpointError(
                    f"{self.ck_path} was written by another configuration ({meta['config']}); "
                    "rerun without --resume or with the same options"
                )
            self.log.truncate(meta["log"])
            session.restore(arrays)
            self.source_position = meta["source_position"]
            self.resumed_at = meta["log"]["epochs"]
        self._next_ck = self.log.count + checkpoint_every

    def write(self, records: list, source_position=None) -> None:
        """Append ``records``; checkpoint when due (``source_position``: where a replay would
        resume)."""
        if not records:
            return
        self.log.write(records)
        if self.publisher is not None:
            self.publisher.write(records)
        if self.checkpoint_every and self.log.count >= self._next_ck:
            self.log.sync()
            meta = {"config": self.config, "log": self.log.position()}
            meta["source_position"] = source_position
            checkpoint.save(self.ck_path, self.session.snapshot(), meta)
            self._next_ck = self.log.count + self.checkpoint_every

    def write_tail(self, records: list) -> None:
        """The night's last records: no checkpoint (its files are complete next)."""
        self.checkpoint_every = 0
        self.write(records)

    def close(self) -> None:
        self.log.close()
        if self.publisher is not None:
            self.publisher.close()

    def finish(self, t0: float, source_stats: dict) -> RunResult:
        """The night is complete: reports from the whole log, ``run.json``, no checkpoint."""
        records = read_records(self.log.jsonl_path)
        stats = write_reports(records, self.out, list(self.session.stager.model.classes))
        self.ck_path.unlink(missing_ok=True)  # nothing left to resume
        result = RunResult(
            records,
            len(records),
            time.perf_counter() - t0,
            self.session.counts(),
            stats,
            dict(source_stats),
            self.resumed_at,
        )
        summary = {
            "config": self.config,
            **{f.name: getattr(result, f.name) for f in fields(result) if f.name != "records"},
            "rejected_by_reason": dict(self.session.receiver.rejected),
        }
        text = json.dumps(summary, indent=1) + "\n"
        (self.out / "run.json").write_text(text, encoding="utf-8")
        return result


def _records(source, session: Session) -> Iterator[list]:
    """The session's records as the source's frames go in: many frames per call when the
    source can hand them out that way (an unpaced replay), else frame by frame."""
    if hasattr(source, "batches") and not source.paced:
        for frames in source.batches():
            yield session.feed_many(frames)
    else:
        for data in source:
            yield session.feed(data)


def run_night(
    source,
    session: Session,
    out: Path,
    config: dict,
    checkpoint_every: int = 20,
    resume: bool = False,
    publisher=None,
    view: LiveView | None = None,
    live: bool = False,
) -> RunResult:
    """Stage ``source`` to the end (or, for a ``live`` source, until Ctrl-C / SIGTERM)."""
    try:
        writer = NightWriter(out, session, config, checkpoint_every, resume, publisher)
    except Exception:
        source.close()
        raise
    if writer.source_position is not None and hasattr(source, "seek"):
        source.seek(writer.source_position)
    t0 = time.perf_counter()

    def emit(records, tail: bool = False) -> None:
        if tail:
            writer.write_tail(records)
        else:
            writer.write(records, getattr(source, "position", None))
        if view is not None:
            view.update(records, session.counts(), session.model_seconds)

    try:
        try:
            for records in _records(source, session):
                if records:
                    emit(records)
        except KeyboardInterrupt:
            if not live:
                raise  # a replay stopped by hand resumes later from its checkpoint
            # a live night ends when the user stops it: finish and write the reports
        emit(session.finish(getattr(source, "stats", {}).get("duration_s")), tail=True)
    finally:
        writer.close()
        if view is not None:
            view.close()
        source.close()
    return writer.finish(t0, getattr(source, "stats", {}))
