"""Many devices in one engine (``edge-run --source mqtt --device-id +``).

One ``Session`` and one ``NightWriter`` per device id heard on the broker, each writing to
``<out>/<device-id>/`` exactly what a one-device ``edge-run`` writes (epochs, checkpoints,
reports at the device's end). A device's frames are held (``FrameHold``) until they reach the
point where its next epoch can be staged, then decoded and pushed in one batch: a live device
costs what a replayed one does, and each epoch comes out as soon as its last samples are in.
Step models share one ``StreamBank``: after each batch of frames,
every device whose seconds completed is stepped in one batched model call (``step_together``),
so the model's cost per device-second falls as the fleet grows. A device joins on its first
frame (from its checkpoint with ``--resume``: a checkpoint that is refused, see
``edge.checkpoint``, leaves that device's frames ignored, counted in ``refused_checkpoints``,
and the other devices running) and leaves when it says ``finished``; a later frame from the
same id starts a new night in the same folder. A finished night's reports (the hypnogram plot
takes ~0.3 s) are written on a background thread, so that one device ending does not hold back
every other device's epochs.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from edge.checkpoint import CheckpointError
from edge.fleet_hold import DEFAULT_HOLD_S, FrameHold
from edge.models.streams import StreamBank
from edge.pipeline_lead import output_lead_s
from edge.run import CHECKPOINT, NightWriter, RunResult
from edge.session import Session
from edge.staging import FrameStager, step_together

log = logging.getLogger("sleepedge.fleet")

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass
class FleetStats:
    devices_joined: int = 0
    devices_finished: int = 0
    rejected_ids: int = 0
    refused_checkpoints: int = 0  # devices whose checkpoint --resume refused (frames ignored)
    frames: int = 0
    batches: int = 0
    epochs: int = 0
    model_seconds: float = 0.0
    handovers: int = 0  # held frames handed to a session at once (frames / handovers: batch)
    finished: dict[str, RunResult] = field(default_factory=dict)  # complete after close()


@dataclass
class _Device:
    session: Session
    writer: NightWriter
    started: float  # perf_counter at join
    hold: FrameHold


class Fleet:
    """``make_session(bank, device_id)`` builds one device's session (its stager on ``bank``
    when the model steps); ``publisher`` (a ``StagePublisher``) is shared by every device.
    ``hold_s``: the most device time of frames held per device (0: each frame is decoded and
    pushed as it comes)."""

    def __init__(
        self,
        make_session: Callable[[StreamBank | None, str], Session],
        bank: StreamBank | None,
        out: Path,
        config: dict,
        checkpoint_every: int = 20,
        resume: bool = False,
        publisher=None,
        hold_s: float = DEFAULT_HOLD_S,
    ) -> None:
        self.make_session, self.bank, self.hold_s = make_session, bank, hold_s
        self.out, self.config = out, config
        self.checkpoint_every, self.resume, self.publisher = checkpoint_every, resume, publisher
        self.devices: dict[str, _Device] = {}
        self._lead_s: float | None = None  # the pipeline's lead, measured on the first device
        self.stats = FleetStats()
        self._touched: set[str] = set()
        self._reports = ThreadPoolExecutor(1, thread_name_prefix="fleet-reports")
        self._writing: dict[str, Future] = {}
        self._refused: set[str] = set()  # ids whose checkpoint was refused: frames ignored

    def feed(self, device_id: str, data: bytes) -> None:
        """One frame of ``device_id``; epochs it completes are written after ``step``."""
        device = self.devices.get(device_id) or self._join(device_id)
        if device is None:
            return
        self.stats.frames += 1
        if device.hold.add(data, self._due_ns(device.session)):
            self._hand_over(device_id, device)

    def _due_ns(self, session: Session) -> int | None:
        """Device time every stream must reach before the session's next epoch can be staged
        (None before the session has its time anchor)."""
        anchor = session.assembler.anchor_ns
        if anchor is None:
            return None
        end_s = (session.next_index + 1) * session.epoch_s + self._lead_s
        return anchor + int(round(end_s * 1e9))

    def _hand_over(self, device_id: str, device: _Device) -> None:
        frames = device.hold.take()
        if not frames:
            return
        self.stats.handovers += 1
        session = device.session
        records = session.feed(frames[0]) if len(frames) == 1 else session.feed_many(frames)
        self._write(device.writer, records)  # per-epoch models stage at once
        self._touched.add(device_id)

    def _write(self, writer: NightWriter, records: list, tail: bool = False) -> None:
        (writer.write_tail if tail else writer.write)(records)
        self.stats.epochs += len(records)

    def step(self) -> None:
        """Step every device with seconds queued in one batched call per second; write the
        epochs this finished."""
        self.stats.batches += 1
        touched = [d for d in self._touched if d in self.devices]
        self._touched.clear()
        stagers = [self.devices[d].session.stager for d in touched]
        framed = [s for s in stagers if isinstance(s, FrameStager) and s.deferred]
        if framed:
            t0 = time.perf_counter()
            step_together(framed)
            self.stats.model_seconds += time.perf_counter() - t0
        for d in touched:
            device = self.devices[d]
            self._write(device.writer, device.session.collect())
            device.hold.stepped()

    def finish(self, device_id: str) -> Future | None:
        """The device's night is over: stage its tail and free its state now; its reports are
        written in the background (the returned future gives its ``RunResult``)."""
        device = self.devices.get(device_id)
        if device is None:
            return None
        if device.hold.frames:  # what it sent last, staged before its tail
            self._hand_over(device_id, device)
            self.step()
        del self.devices[device_id]
        session, writer, t0 = device.session, device.writer, device.started
        try:
            self._write(writer, session.finish(), tail=True)
        finally:
            writer.close()
            session.stager.close()
        self.stats.devices_finished += 1
        future = self._reports.submit(self._report, device_id, writer, t0)
        self._writing[device_id] = future
        return future

    def _report(self, device_id: str, writer: NightWriter, t0: float) -> RunResult:
        result = writer.finish(t0, {})
        self.stats.finished[device_id] = result
        log.info("device %s: %d epochs", device_id, result.epochs)
        return result

    def close(self) -> None:
        """End of the engine's run: every device still open finishes its night; returns once
        every report is written."""
        try:
            for device_id in list(self.devices):
                self.finish(device_id)
        finally:
            self._reports.shutdown(wait=True)
            for future in self._writing.values():
                future.result()  # a failed report raises here
            if self.publisher is not None:
                self.publisher.close()

    def _join(self, device_id: str):
        if not SAFE_ID.match(device_id):  # it names a folder: no path tricks
            self.stats.rejected_ids += 1
            log.warning("ignoring frames from device id %r: not a safe folder name", device_id)
            return None
        if device_id in self._refused:
            return None
        earlier = self._writing.pop(device_id, None)
        if earlier is not None:
            earlier.result()  # its last night's reports, before a new night takes the folder
        out = self.out / device_id
        resume = self.resume and (out / CHECKPOINT).exists()
        session = self.make_session(self.bank, device_id)
        if self._lead_s is None:
            self._lead_s = output_lead_s(type(session.pipeline)(session.spec))
        publisher = self.publisher.for_device(device_id) if self.publisher else None
        try:
            writer = NightWriter(
                out, session, self.config, self.checkpoint_every, resume, publisher
            )
        except CheckpointError as exc:  # one device's bad checkpoint stops no other device
            session.stager.close()
            self._refused.add(device_id)
            self.stats.refused_checkpoints += 1
            log.error("device %s: its frames are ignored, checkpoint refused: %s", device_id, exc)
            return None
        hold = FrameHold.for_session(session, self.hold_s)
        self.devices[device_id] = _Device(session, writer, time.perf_counter(), hold)
        self.stats.devices_joined += 1
        log.info("device %s joined%s", device_id, " (resumed)" if resume else "")
        return self.devices[device_id]


def run_fleet(source, fleet: Fleet, report_every_s: float = 10.0, echo=print) -> FleetStats:
    """Feed ``source.batches()`` into ``fleet`` until the source ends or Ctrl-C / SIGTERM."""
    last = time.monotonic()
    try:
        try:
            for batch in source.batches():
                for device_id, data in batch:
                    if data is None:
                        fleet.step()  # what it sent before finishing is staged first
                        fleet.finish(device_id)
                    else:
                        fleet.feed(device_id, data)
                fleet.step()
                if report_every_s and time.monotonic() - last > report_every_s:
                    last = time.monotonic()
                    s = fleet.stats
                    echo(
                        f"edge-run: {len(fleet.devices)} devices live, {s.devices_finished} "
                        f"finished, {s.epochs:,} epochs, {s.frames:,} frames"
                    )
        except KeyboardInterrupt:
            pass  # the engine is stopped: finish every open night
    finally:
        try:
            fleet.close()
        finally:
            source.close()
            stats = getattr(source, "stats", {})
            if stats:  # the engine's queue drops and reconnects belong to no one device
                echo("edge-run: source " + ", ".join(f"{k} {v:,}" for k, v in stats.items()))
    return fleet.stats
