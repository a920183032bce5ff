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
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / CHECKPOINT
    resumed_at = None
    if not resume:
        for name in ("epochs.jsonl", "hypnogram.csv", CHECKPOINT):
            (out / name).unlink(missing_ok=True)
    log = EpochLog(out)
    if resume:
        arrays, meta = checkpoint.load(ck_path)
        if meta["config"] != config:
            raise checkpoint.CheckpointError(
                f"{ck_path} was written by another configuration ({meta['config']}); "
                "rerun without --resume or with the same options"
            )
        log.truncate(meta["log"])
        session.restore(arrays)
        if hasattr(source, "seek"):
            source.seek(meta["source_position"])
        resumed_at = meta["log"]["epochs"]
    t0 = time.perf_counter()
    next_ck = log.count + checkpoint_every

    def emit(records) -> None:
        log.write(records)
        if publisher is not None:
            publisher.write(records)
        if view is not None:
            view.update(records, session.counts(), session.model_seconds)

    try:
        try:
            for data in source:
                records = session.feed(data)
                if not records:
                    continue
                emit(records)
                if checkpoint_every and log.count >= next_ck:
                    log.sync()
                    meta = {
                        "config": config,
                        "log": log.position(),
                        "source_position": getattr(source, "position", None),
                    }
                    checkpoint.save(ck_path, session.snapshot(), meta)
                    next_ck = log.count + checkpoint_every
        except KeyboardInterrupt:
            if not live:
                raise  # a replay stopped by hand resumes later from its checkpoint
            # a live night ends when the user stops it: finish and write the reports
        emit(session.finish(getattr(source, "stats", {}).get("duration_s")))
    finally:
        log.close()
        if view is not None:
            view.close()
        if publisher is not None:
            publisher.close()
        source.close()
    records = read_records(log.jsonl_path)
    stats = write_reports(records, out, list(session.stager.model.classes))
    ck_path.unlink(missing_ok=True)  # the night is complete: nothing left to resume
    result = RunResult(
        records,
        len(records),
        time.perf_counter() - t0,
        session.counts(),
        stats,
        dict(getattr(source, "stats", {})),
        resumed_at,
    )
    summary = {
        "config": config,
        **{f.name: getattr(result, f.name) for f in fields(result) if f.name != "records"},
        "rejected_by_reason": dict(session.receiver.rejected),
    }
    (out / "run.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return result
