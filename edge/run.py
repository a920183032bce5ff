"""One edge-run night: source frames → session → outputs, with checkpoints and resume.

Outputs in ``out``: ``epochs.jsonl`` and ``hypnogram.csv`` as the night goes, then
``hypnogram.edf``, ``hypnogram.png``, ``stats.json`` (from the JSONL, so a resumed run reports
the whole night) and ``run.json`` (counters) at the end. Every ``checkpoint_every`` epochs the
session state, the source position and the output position go atomically into
``checkpoint.npz``; ``resume`` truncates the outputs back to that position and continues from
there, so no epoch is written twice or lost. A resume is refused (``CheckpointError``, one line)
before any output changes: a checkpoint of other options, a damaged one, or epoch files shorter
than the checkpoint's position (deleted or cut short under the engine).
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


class OutputError(ValueError):
    """The night's files cannot be written (disk full, a file deleted or cut short under the
    engine): one line, exit 2; the last checkpoint is left intact."""


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
        else:  # everything is checked before a byte of the outputs changes
            arrays, meta = checkpoint.load(self.ck_path)
            if meta["config"] != config:
                raise checkpoint.CheckpointError(
                    f"{self.ck_path} was written by another configuration ({meta['config']}); "
                    "rerun without --resume or with the same options"
                )
            session.restore(arrays)
        self.log = EpochLog(out)
        if resume:
            self.log.truncate(meta["log"])
            self.source_position = meta["source_position"]
            self.resumed_at = meta["log"]["epochs"]
        self._next_ck = self.log.count + checkpoint_every
        self.checkpointed: dict = meta["log"] if resume else {}

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
            self._check_log()
            try:
                checkpoint.save(self.ck_path, self.session.snapshot(), meta)
            except OSError:
                self.ck_path.with_name(self.ck_path.name + ".tmp").unlink(missing_ok=True)
                raise
            self.checkpointed = meta["log"]
            self._next_ck = self.log.count + self.checkpoint_every

    def _check_log(self) -> None:
        """``OutputError`` if an epoch file was deleted, replaced or cut below the last
        checkpoint under the engine (a checkpoint then would resume onto damaged files)."""
        for path, key in ((self.log.jsonl_path, "jsonl"), (self.log.csv_path, "csv")):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                raise OutputError(f"{path} was deleted under the engine; rerun the night") from None
            if size < self.checkpointed.get(key, 0):
                raise OutputError(
                    f"{path} was cut short under the engine ({size} bytes, the last checkpoint "
                    f"had {self.checkpointed[key]}); rerun the night"
                )

    def describe_checkpoint(self) -> str:
        """Where a --resume would continue from, for an error line."""
        if not self.ck_path.exists():
            return "no checkpoint yet: rerun without --resume"
        return (
            f"the last checkpoint (epoch {self.checkpointed.get('epochs', 0)}) is intact: "
            "rerun with --resume"
        )

    def write_tail(self, records: list) -> None:
        """The night's last records: no checkpoint (its files are complete next)."""
        self.checkpoint_every = 0
        self.write(records)

    def close(self) -> None:
        try:
            self.log.close()
        except OSError:
            pass  # a full disk: the lines not written are after the last checkpoint
        if self.publisher is not None:
            self.publisher.close()

    def finish(self, t0: float, source_stats: dict) -> RunResult:
        """The night is complete: reports from the whole log, ``run.json``, no checkpoint."""
        try:
            records = read_records(self.log.jsonl_path)
        except (OSError, ValueError) as exc:
            raise OutputError(
                f"{self.log.jsonl_path} was changed under the engine ({_brief(exc)}); "
                "rerun the night"
            ) from None
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
        try:
            if tail:
                writer.write_tail(records)
            else:
                writer.write(records, getattr(source, "position", None))
        except OSError as exc:
            raise OutputError(
                f"cannot write {out}: {_brief(exc)}; {writer.describe_checkpoint()}"
            ) from None
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
    try:
        return writer.finish(t0, getattr(source, "stats", {}))
    except OSError as exc:
        raise OutputError(
            f"cannot write the reports in {out}: {_brief(exc)}; the epochs are complete in "
            f"{writer.log.jsonl_path}"
        ) from None


def _brief(exc: BaseException) -> str:
    """An exception as a few words: the OS's reason, or its message's first line."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
