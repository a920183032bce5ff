"""One device's live pipeline: wire frames in, staged 30-s epochs out (DESIGN §1).

bytes → ``Receiver`` (decode, order, count) → ``SampleAssembler`` (session time grid, gaps as
NaN) → ~1-s chunks per stream → either ``EpochPipeline`` (operators, AASM epochs) →
``EpochStager`` (per-epoch model, quality rule), or ``FramePipeline`` (one feature vector per
second) → ``FrameStager`` (step model with carried state, mean logits per 30-s epoch).
``snapshot()`` captures all of it: the operators' and the stager's array snapshots (the step
model's state included) plus the receiver's and assembler's bookkeeping (JSON text plus arrays:
data only, never pickle), so a restored session continues exactly where the snapshot was taken;
``restore`` checks what it reads and refuses a malformed snapshot with ``CheckpointError``.

A device's end-of-session message (``codec.encode_end``, in the place of a frame) is kept aside:
at ``finish`` the frames after the last one received up to each stream's last sequence number
are counted lost (``lost_at_end``, also in ``lost``) and the epochs up to the session's end are
written unscored (``no_data``) with the reason, so a night whose tail was lost keeps its length.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from edge import checkpoint as ck
from edge.devices.codec import Rejected, SessionEnd, decode_end, is_end
from edge.devices.profile import DeviceProfile, EpochInputSpec, FrameInputSpec
from edge.devices.receiver import FrameRun, Receiver, Released
from edge.devices.samples import Chunk, SampleAssembler
from edge.features import EpochPipeline, FramePipeline
from edge.ops.base import Snapshot
from edge.ops.epochs import UNSCORED
from edge.staging import EpochRecord, EpochStager, FrameStager

log = logging.getLogger("sleepedge.session")


class Session:
    def __init__(
        self,
        profile: DeviceProfile,
        spec: EpochInputSpec | FrameInputSpec,
        stager: EpochStager | FrameStager,
        push_s: float = 1.0,
    ) -> None:
        self.profile, self.spec, self.stager = profile, spec, stager
        self.receiver = Receiver(profile)
        self.assembler = SampleAssembler(profile)
        self.pipeline = (
            FramePipeline(spec) if isinstance(spec, FrameInputSpec) else EpochPipeline(spec)
        )
        self.epoch_s = stager.epoch_s
        # samples wait per stream until ``push_s`` seconds have come, then go through the
        # operators in one call: 1 s keeps replays cheap; live engines push sooner, since an
        # epoch's last second can only be staged once the samples after it have been pushed
        self._push_at = {
            n: max(1, int(round(push_s * s.rate_hz))) for n, s in profile.streams.items()
        }
        self._pending: dict[str, list[Chunk]] = {}
        self._waiting: Counter = Counter()
        self.model_seconds = 0.0  # time spent in the model, for the live view
        self.next_index = 0  # epoch index after the last one staged
        self.end: SessionEnd | None = None  # the device's end-of-session message, once heard
        self.lost_at_end: dict[str, int] = {}  # frames after the last received, per stream

    def feed(self, data: bytes) -> list[EpochRecord]:
        """One frame's bytes; the epochs this frame completed (usually none)."""
        if is_end(data):
            self._take_end(data)
            return []
        return self._consume(self.receiver.feed(data))

    def _take_end(self, data: bytes) -> None:
        end = decode_end(data)
        if isinstance(end, Rejected):
            self.receiver.rejected[end.reason] += 1
            log.warning("rejected end of session: %s", end.detail)
        else:
            self.end = end

    def feed_many(self, frames: Sequence[bytes]) -> list[EpochRecord]:
        """Many frames' bytes at once (a replay): the epochs they completed. The same epochs
        as ``feed`` frame by frame — each stream's uninterrupted stretch is decoded, placed
        on the grid and pushed through the operators in one piece (chunking changes nothing)."""
        records: list[EpochRecord] = []
        if any(is_end(f) for f in frames):
            for f in frames:
                if is_end(f):
                    self._take_end(f)
            frames = [f for f in frames if not is_end(f)]
        for item in self.receiver.feed_many(frames):
            if isinstance(item, FrameRun):
                records += self._take(self.assembler.add_run(item))
            else:
                records += self._take(self.assembler.add(item))
        return records

    def collect(self) -> list[EpochRecord]:
        """Epochs finished since the last call by a step the session's owner ran (a shared
        bank, see ``FrameStager``)."""
        return self._staged(self.stager.collect())

    def finish(self, end_s: float | None = None) -> list[EpochRecord]:
        """End of the night: release held frames, flush every operator, stage the tail. With
        ``end_s`` (the recording's known length) or the device's end-of-session message,
        epochs after the last data received (a link down at the end) are written unscored, so
        every epoch of the recording appears once."""
        records = self._consume(self.receiver.flush())
        for name in list(self._pending):
            records += self._push(name)
        records += self._stage(self.pipeline.flush())
        records += self._staged(self.stager.flush())
        reason = "no data received"
        if self.end is not None:
            self.lost_at_end = self._trailing_loss(self.end)
            lost = sum(self.lost_at_end.values())
            if lost:
                reason += f": {lost} frame(s) lost before the device's end of session"
            if end_s is None:
                end_s = self._end_s(self.end)
        if end_s is not None:
            n = math.ceil(round(end_s / self.epoch_s, 6))
            records += [self._no_data(k, reason) for k in range(self.next_index, n)]
        return records

    def _end_s(self, end: SessionEnd) -> float | None:
        """The session's end in seconds from the anchor (None if implausible: before the
        anchor, or more than two days after it)."""
        anchor = self.assembler.anchor_ns
        if anchor is None:
            return None
        end_s = (end.t_end_ns - anchor) / 1e9
        if not 0 <= end_s <= MAX_SESSION_S:
            log.warning("ignoring an end of session %.0f s from the first frame", end_s)
            return None
        return end_s

    def _trailing_loss(self, end: SessionEnd) -> dict[str, int]:
        """Per stream, the frames after the last one received up to the device's last
        sequence number (wraps of the u16 resolved by the end time)."""
        by_code = {s.wire.code: n for n, s in self.profile.streams.items() if s.wire is not None}
        lost: dict[str, int] = {}
        for code, last_seq in end.last_seq.items():
            name = by_code.get(code)
            if name is None:
                continue
            tracker = self.receiver.trackers.get(name)
            if tracker is None or tracker._next is None:
                lost[name] = last_seq + 1  # nothing of it came; devices number from 0
                continue
            missing = (last_seq - (tracker._next - 1)) % SEQ_MOD
            spec = self.profile.streams[name]
            last_t = self.receiver._last_t.get(name)
            if last_t is not None:  # the u16 may have wrapped: the end time says how often
                per_frame_s = spec.wire.frame_samples / spec.rate_hz
                expected = (end.t_end_ns - last_t[1]) / 1e9 / per_frame_s - 1
                missing += SEQ_MOD * round((expected - missing) / SEQ_MOD)
            elif missing >= SEQ_MOD // 2:
                missing = -1
            if missing < 0:
                log.warning("%s: the end of session is behind the last frame received", name)
            elif missing:
                lost[name] = missing
        return lost

    def _no_data(self, index: int, reason: str = "no data received") -> EpochRecord:
        self.next_index = index + 1
        return EpochRecord(
            index,
            index * self.epoch_s,
            UNSCORED,
            None,
            dict.fromkeys(self.stager.channels, 1.0),
            ("no_data",),
            reason,
            self.stager.model_name,
        )

    def _consume(self, released: list[Released]) -> list[EpochRecord]:
        records: list[EpochRecord] = []
        for r in released:
            records += self._take(self.assembler.add(r))
        return records

    def _take(self, c: Chunk) -> list[EpochRecord]:
        """Queue a chunk; push its stream through the operators once ``push_s`` has come."""
        if c.stream not in self.pipeline.streams:
            return []  # a stream this model does not use
        self._pending.setdefault(c.stream, []).append(c)
        self._waiting[c.stream] += c.samples.shape[1]
        if self._waiting[c.stream] >= self._push_at[c.stream]:
            return self._push(c.stream)
        return []

    def _push(self, name: str) -> list[EpochRecord]:
        chunks = self._pending.pop(name, [])
        self._waiting[name] = 0
        if not chunks:
            return []
        x = np.concatenate([c.samples for c in chunks], axis=1)
        if isinstance(self.pipeline, FramePipeline):  # grid steps take timestamped streams' times
            times = None if chunks[0].times is None else np.concatenate([c.times for c in chunks])
            return self._stage(self.pipeline.push(name, x, times))
        return self._stage(self.pipeline.push(name, x))

    def _stage(self, ready) -> list[EpochRecord]:
        """Epochs (EpochPipeline) or feature frames (FramePipeline) → staged records."""
        empty = ready.shape[-1] == 0 if isinstance(ready, np.ndarray) else len(ready) == 0
        if empty:
            return []
        t0 = time.perf_counter()
        if isinstance(self.pipeline, FramePipeline):
            records = self.stager.stage(ready, self.pipeline.last_bridged)
        else:
            records = self.stager.stage(ready)
        self.model_seconds += time.perf_counter() - t0
        return self._staged(records)

    def _staged(self, records: list[EpochRecord]) -> list[EpochRecord]:
        if records:
            self.next_index = records[-1].index + 1
        return records

    def counts(self) -> dict[str, int]:
        gaps = sum(self.assembler.gap_samples.values())
        counts = {**self.receiver.counts(), "gap_samples": gaps}
        if self.end is not None:
            at_end = sum(self.lost_at_end.values())
            counts["lost"] = counts.get("lost", 0) + at_end
            counts["lost_at_end"] = at_end
        return counts

    def snapshot(self) -> Snapshot:
        snap = {f"pipe.{k}": np.asarray(v) for k, v in self.pipeline.snapshot().items()}
        snap.update({f"stager.{k}": np.asarray(v) for k, v in self.stager.snapshot().items()})
        pending = {
            name: [{"samples": c.samples, "times": c.times} for c in chunks]
            for name, chunks in self._pending.items()
        }
        book = {
            "receiver": self.receiver.state(),
            "assembler": self.assembler.state(),
            "pending": pending,
            "waiting": dict(self._waiting),
            "next_index": self.next_index,
            "end": _end_state(self.end),
        }
        snap["bookkeeping"], arrays = ck.pack(book, BOOK_ARRAYS)
        snap.update(arrays)
        return snap

    def restore(self, snap: Snapshot) -> None:
        """Back to ``snapshot()``; ``CheckpointError`` (and nothing else) if ``snap`` is not
        a snapshot of this pipeline: missing keys, wrong types, arrays that do not fit."""
        for name, a in snap.items():
            if not isinstance(a, np.ndarray) or a.dtype.kind not in ck.ARRAY_KINDS:
                raise ck.CheckpointError(f"checkpoint array {name!r} is not plain numbers")
        if "bookkeeping" not in snap:
            raise ck.CheckpointError("checkpoint has no bookkeeping record")
        book = ck.unpack(snap["bookkeeping"], snap, BOOK_ARRAYS, "checkpoint bookkeeping")
        ck.expect(book, dict, "bookkeeping")
        for part, restore, prefix in (
            ("operators", self.pipeline.restore, "pipe."),
            ("model state", self.stager.restore, "stager."),
        ):
            try:
                restore({k[len(prefix) :]: v for k, v in snap.items() if k.startswith(prefix)})
            except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
                raise ck.refuse(part, exc) from None
        self.receiver.set_state(book.get("receiver"))
        self.assembler.set_state(book.get("assembler"))
        self._pending = self._pending_from(book.get("pending"))
        waiting = ck.counts(book.get("waiting"), set(self.pipeline.streams), "waiting")
        self._waiting = Counter(waiting)
        self.next_index = ck.count(book.get("next_index"), "next_index")
        self.end = _end_from(book.get("end"))

    def _pending_from(self, pending: object) -> dict[str, list[Chunk]]:
        """The queued chunks of a snapshot, checked against the streams they belong to."""
        out: dict[str, list[Chunk]] = {}
        for name, chunks in ck.expect(pending, dict, "pending").items():
            if name not in self.pipeline.streams:
                raise ck.CheckpointError(f"checkpoint pending: stream {name!r} is not used")
            axes = self.profile.streams[name].n_axes
            for c in ck.expect(chunks, list, f"pending {name!r}"):
                ck.expect(c, dict, f"pending {name!r} chunk")
                x = ck.float_array(c.get("samples"), axes, f"pending {name!r} samples")
                times = c.get("times")
                if times is not None:
                    times = ck.float_array(times, x.shape[1], f"pending {name!r} times", ndim=1)
                out.setdefault(name, []).append(Chunk(name, x, times))
        return out


BOOK_ARRAYS = "book."  # prefix of the bookkeeping's arrays in a snapshot
SEQ_MOD = 1 << 16
MAX_SESSION_S = 48 * 3600.0  # an end of session further than this from the anchor is ignored


def _end_state(end: SessionEnd | None) -> list | None:
    """The end-of-session record as data (``snapshot``)."""
    if end is None:
        return None
    return [end.t_end_ns, [[code, seq] for code, seq in end.last_seq.items()]]


def _end_from(state: object) -> SessionEnd | None:
    """A snapshot's end-of-session record back (absent in older checkpoints), checked."""
    if state is None:
        return None
    what = "end of session"
    ck.expect(state, list, what)
    if len(state) != 2:
        raise ck.CheckpointError(f"checkpoint {what}: not [time, [[code, seq], ...]]")
    last = {}
    for pair in ck.expect(state[1], list, what):
        if not isinstance(pair, list) or len(pair) != 2:
            raise ck.CheckpointError(f"checkpoint {what}: not [code, seq]")
        code, seq = ck.count(pair[0], what), ck.count(pair[1], what)
        if code > 255 or seq >= SEQ_MOD:
            raise ck.CheckpointError(f"checkpoint {what}: stream {code} seq {seq} out of range")
        last[code] = seq
    return SessionEnd(ck.count(state[0], what), last)
