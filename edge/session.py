"""One device's live pipeline: wire frames in, staged 30-s epochs out (DESIGN §1).

bytes → ``Receiver`` (decode, order, count) → ``SampleAssembler`` (session time grid, gaps as
NaN) → ~1-s chunks per stream → either ``EpochPipeline`` (operators, AASM epochs) →
``EpochStager`` (per-epoch model, quality rule), or ``FramePipeline`` (one feature vector per
second) → ``FrameStager`` (step model with carried state, mean logits per 30-s epoch).
``snapshot()`` captures all of it: the operators' and the stager's array snapshots (the step
model's state included) plus the receiver's and assembler's bookkeeping (JSON text plus arrays:
data only, never pickle), so a restored session continues exactly where the snapshot was taken;
``restore`` checks what it reads and refuses a malformed snapshot with ``CheckpointError``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from edge import checkpoint as ck
from edge.devices.profile import DeviceProfile, EpochInputSpec, FrameInputSpec
from edge.devices.receiver import FrameRun, Receiver, Released
from edge.devices.samples import Chunk, SampleAssembler
from edge.features import EpochPipeline, FramePipeline
from edge.ops.base import Snapshot
from edge.ops.epochs import UNSCORED
from edge.staging import EpochRecord, EpochStager, FrameStager


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

    def feed(self, data: bytes) -> list[EpochRecord]:
        """One frame's bytes; the epochs this frame completed (usually none)."""
        return self._consume(self.receiver.feed(data))

    def feed_many(self, frames: Sequence[bytes]) -> list[EpochRecord]:
        """Many frames' bytes at once (a replay): the epochs they completed. The same epochs
        as ``feed`` frame by frame — each stream's uninterrupted stretch is decoded, placed
        on the grid and pushed through the operators in one piece (chunking changes nothing)."""
        records: list[EpochRecord] = []
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
        ``end_s`` (the recording's known length), epochs after the last data received (a link
        down at the end) are written unscored, so every epoch of the recording appears once."""
        records = self._consume(self.receiver.flush())
        for name in list(self._pending):
            records += self._push(name)
        records += self._stage(self.pipeline.flush())
        records += self._staged(self.stager.flush())
        if end_s is not None:
            n = math.ceil(round(end_s / self.epoch_s, 6))
            records += [self._no_data(k) for k in range(self.next_index, n)]
        return records

    def _no_data(self, index: int) -> EpochRecord:
        self.next_index = index + 1
        return EpochRecord(
            index,
            index * self.epoch_s,
            UNSCORED,
            None,
            dict.fromkeys(self.stager.channels, 1.0),
            ("no_data",),
            "no data received",
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
        return {**self.receiver.counts(), "gap_samples": gaps}

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
