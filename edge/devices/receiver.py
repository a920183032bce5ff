"""Receiving frames: decode, check, put back in order, count everything that went wrong.

``SequenceTracker`` (one per stream) unwraps the u16 sequence number and holds frames that arrive
early in a reorder window: a late frame within the window is put back in place (``reordered``),
a repeated one dropped (``duplicates``), and a missing one declared ``lost`` only once the window
has moved past it. A frame older than that is rejected as a ``sequence regression``.

``Receiver`` decodes bytes against the device's stream table, rejects malformed frames and
implausible timestamps with a reason (counted, logged, never raised), and releases good frames
per stream in sequence order with their absolute frame number. A frame whose timestamp is far
from where its sequence number places it, but whose number continues the stream (within the
reorder window), is a step of the device clock: the stream's clock is re-anchored to the
sequence (``clock_steps``; later frames are shifted by the same offset), so a clock that jumps
loses no data and invents no gap. ``Receiver.feed_many`` does the
same for a batch of frames (a replay): a stream's frames that simply continue it (next
sequence numbers, plausible times, nothing held) are decoded together and released as one
``FrameRun``; any other frame takes the frame-by-frame path, so the result is the same.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edge.devices import bulk
from edge.devices.codec import SENSOR_OFF_BIT, Frame, Rejected, decode
from edge.devices.profile import DeviceProfile

log = logging.getLogger("sleepedge.receiver")
SEQ_MOD = 1 << 16
MAX_TIME_NS = 1 << 62  # device times and clock offsets stay below this (int64 sums)


@dataclass
class StreamStats:
    frames: int = 0
    lost: int = 0
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    sensor_off: int = 0


@dataclass(frozen=True)
class Released:
    """A frame in sequence order; ``number`` is its unwrapped sequence number (0, 1, 2, …
    from the first frame seen); ``lost_before`` frames were declared lost just before it."""

    frame: Frame
    number: int
    lost_before: int


@dataclass(frozen=True)
class FrameRun:
    """Consecutive frames of one stream released together (``Receiver.feed_many``): the
    first one's frame number, then +1 each, none lost before them."""

    stream: str
    number: int  # unwrapped sequence number of the first frame
    seq: np.ndarray  # u16 per frame
    t_device_ns: np.ndarray  # int64 per frame
    n: np.ndarray  # samples per axis, per frame
    samples: np.ndarray  # (axes, Σn) float64, physical units; NaN while the sensor was off
    sensor_off: np.ndarray  # bool per frame

    def frames(self) -> list[Frame]:
        """The run as single frames (for the frame-by-frame path)."""
        ends = np.cumsum(self.n)
        return [
            Frame(self.stream, int(q), int(t), self.samples[:, e - k : e], bool(o), 0)
            for q, t, k, e, o in zip(
                self.seq, self.t_device_ns, self.n, ends, self.sensor_off, strict=True
            )
        ]


class SequenceTracker:
    """Orders one stream's frames by unwrapped sequence number (see module docstring)."""

    def __init__(self, window: int = 32) -> None:
        if window < 1:
            raise ValueError(f"reorder window must be >= 1, got {window}")
        self.window = window
        self.stats = StreamStats()
        self._next: int | None = None  # unwrapped number expected next
        self._held: dict[int, Frame] = {}
        self._lost: deque[int] = deque(maxlen=4 * window)  # recently declared lost
        self._seen: deque[int] = deque(maxlen=4 * window)  # recently released
        self._base: int | None = None  # unwrapped number of the first frame
        self._pending_lost = 0  # declared lost, not yet reported with a released frame

    def number(self, seq: int) -> int:
        """Unwrapped frame number of ``seq`` relative to the first frame (nearest to now)."""
        return self._unwrap(seq) - self._base

    def _unwrap(self, seq: int) -> int:
        ref = self._next
        d = (seq - ref) % SEQ_MOD
        return ref + d if d < SEQ_MOD // 2 else ref + d - SEQ_MOD

    def accept(self, frame: Frame) -> tuple[list[Released], str | None]:
        """Frames now releasable in order, and a rejection reason (or None)."""
        if self._next is None:
            self._next = self._base = frame.seq
        n = self._unwrap(frame.seq)
        if n < self._next:
            if n in self._seen:
                self.stats.duplicates += 1
                return [], None
            self.stats.late += 1  # declared lost already, or older than we remember
            return [], "sequence regression"
        if n in self._held:
            self.stats.duplicates += 1
            return [], None
        if self._held and n < max(self._held):
            self.stats.reordered += 1  # arrived after a later frame, within the window
        self._held[n] = frame
        out = self._drain()
        while self._held and max(self._held) - self._next >= self.window:
            out += self._skip_to(self._next + 1)  # give up on one frame at a time
        return out, None

    def release_run(self, seqs: np.ndarray, sensor_off: int) -> int | None:
        """``accept`` for frames that just continue the stream (the number expected next,
        then +1 each, nothing held): the state moves as ``accept`` would move it frame by
        frame, and the first frame's number is returned; None (nothing changed) otherwise."""
        if self._held or self._pending_lost or not len(seqs):
            return None
        if len(seqs) > 1 and (np.diff(seqs.astype(np.int64)) % SEQ_MOD != 1).any():
            return None
        if self._next is None:
            self._next = self._base = int(seqs[0])
        elif self._unwrap(int(seqs[0])) != self._next:
            return None
        k, start = len(seqs), self._next
        self._seen.extend(range(max(start, start + k - self._seen.maxlen), start + k))
        self.stats.frames += k
        self.stats.sensor_off += sensor_off
        self._next += k
        return start - self._base

    def _drain(self) -> list[Released]:
        out = []
        while self._next in self._held:
            frame = self._held.pop(self._next)
            out.append(Released(frame, self._next - self._base, self._pending_lost))
            self._pending_lost = 0
            self._seen.append(self._next)
            self.stats.frames += 1
            self.stats.sensor_off += frame.sensor_off
            self._next += 1
        return out

    def _skip_to(self, n: int) -> list[Released]:
        """Declare frames [next, n) lost, then release what has become contiguous."""
        missing = n - self._next
        self.stats.lost += missing
        self._lost.extend(range(self._next, n))
        log.info("declared %d frame(s) lost before frame %d", missing, n - self._base)
        self._next = n
        self._pending_lost += missing
        return self._drain()

    def flush(self) -> list[Released]:
        """End of stream: whatever is held is released; the holes before it are lost."""
        out: list[Released] = []
        while self._held:
            out += self._skip_to(min(self._held))
        return out


@dataclass
class Receiver:
    """Decode + check + order frames of one device; counters say what happened to each byte."""

    profile: DeviceProfile
    window_s: float = 2.0  # reorder window per stream, in seconds of frames (at least 8 frames)
    max_clock_error_s: float = 2.0
    rejected: Counter = field(default_factory=Counter)
    trackers: dict[str, SequenceTracker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._codecs = self.profile.codecs()
        self._last_t: dict[str, tuple[int, int]] = {}  # stream -> (number, t_device_ns)
        self._offset: dict[str, int] = {}  # stream -> ns added to its clock (clock steps)
        self.clock_steps = 0

    def _reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] += 1
        log.warning("rejected frame: %s (%s)", reason, detail)

    def feed(self, data: bytes) -> list[Released]:
        """One frame's bytes in; frames released in order out. Never raises on bad bytes."""
        item = decode(self._codecs, data)
        if isinstance(item, Rejected):
            self._reject(item.reason, item.detail)
            return []
        return self._accept(item)

    def feed_many(self, frames: Sequence[bytes]) -> list[Released | FrameRun]:
        """A batch of frames' bytes in; what ``feed`` would release for them one by one, with
        each stream's uninterrupted stretch as one ``FrameRun`` (streams keep their order;
        across streams, items come in the order their first frame was released)."""
        batch = bulk.parse(frames)
        items: list[tuple[int, Released | FrameRun]] = []
        accepted = np.zeros(len(batch), bool)
        for codec in self._codecs.values():
            idx = np.flatnonzero(bulk.valid_for(batch, codec))
            if not len(idx):
                continue
            accepted[idx] = True
            run = self._run(batch, idx, codec)
            if run is not None:
                items.append((int(idx[0]), run))
                continue
            for i in idx:  # something irregular: frame by frame
                items += [(int(i), r) for r in self._accept(decode(self._codecs, frames[i]))]
        for i in np.flatnonzero(~accepted):
            self.feed(frames[i])  # rejected, with codec.decode's reason
        items.sort(key=lambda item: item[0])
        return [item for _, item in items]

    def _run(self, batch, idx: np.ndarray, codec) -> FrameRun | None:
        """Valid frames ``idx`` of one stream released as a run, if they simply continue it."""
        head = batch.heads[idx]
        t_ns = head["t_ns"]
        if (t_ns >= 1 << 62).any():
            return None
        t_ns = t_ns.astype(np.int64) + self._offset.get(codec.name, 0)
        spec = self.profile.streams[codec.name]
        tracker = self._tracker(codec.name)
        last = self._last_t.get(codec.name)
        per_frame = spec.wire.frame_samples / spec.rate_hz
        prev_t = t_ns[:-1].astype(np.float64)
        steps = np.ones(len(idx) - 1, np.int64)
        if last is not None:  # the stream has released frames: check the first against them
            number = tracker.number(int(head["seq"][0]))
            prev_t = np.concatenate([[float(last[1])], prev_t])
            steps = np.concatenate([[number - last[0]], steps])
            check = t_ns
        else:
            check = t_ns[1:]
        expected = prev_t + steps * per_frame * 1e9
        error = np.abs(check.astype(np.float64) - expected) / 1e9
        if (error > self.max_clock_error_s + 0.01 * np.abs(steps) * per_frame).any():
            return None  # an absurd timestamp: the frame-by-frame path rejects it
        off = (head["flags"] & SENSOR_OFF_BIT) != 0
        first = tracker.release_run(head["seq"], int(off.sum()))
        if first is None:
            return None  # not the stream's next frames: the frame-by-frame path orders them
        samples, n, off = bulk.decode_payloads(batch, idx, codec)
        self._last_t[codec.name] = (first + len(idx) - 1, int(t_ns[-1]))
        return FrameRun(codec.name, first, head["seq"], t_ns, n, samples, off)

    def _tracker(self, stream: str) -> SequenceTracker:
        tracker = self.trackers.get(stream)
        if tracker is None:
            spec = self.profile.streams[stream]
            per_s = spec.rate_hz / spec.wire.frame_samples
            tracker = self.trackers[stream] = SequenceTracker(
                max(8, math.ceil(self.window_s * per_s))
            )
        return tracker

    def _accept(self, item: Frame | Rejected) -> list[Released]:
        if isinstance(item, Rejected):
            self._reject(item.reason, item.detail)
            return []
        offset = self._offset.get(item.stream, 0)
        if offset:
            item = replace(item, t_device_ns=item.t_device_ns + offset)
        item = self._plausible_time(item)
        if item is None:
            return []
        tracker = self._tracker(item.stream)
        out, reason = tracker.accept(item)
        if reason:
            self._reject(reason, f"{item.stream} seq {item.seq}")
        for r in out:
            self._last_t[r.frame.stream] = (r.number, r.frame.t_device_ns)
        return out

    def _plausible_time(self, frame: Frame) -> Frame | None:
        """The frame if its timestamp fits its sequence number; re-anchored on the sequence if
        its number continues the stream (a clock step); None (rejected) otherwise."""
        last = self._last_t.get(frame.stream)
        tracker = self.trackers.get(frame.stream)
        if last is None or tracker is None:
            return frame
        spec = self.profile.streams[frame.stream]
        number = tracker.number(frame.seq)
        per_frame = spec.wire.frame_samples / spec.rate_hz
        expected = last[1] + (number - last[0]) * per_frame * 1e9
        error = abs(frame.t_device_ns - expected) / 1e9
        if error <= self.max_clock_error_s + 0.01 * abs(number - last[0]) * per_frame:
            return frame
        step = int(round(expected)) - frame.t_device_ns
        offset = self._offset.get(frame.stream, 0) + step
        # a step is a clock that jumped: never a time beyond 2^62 ns (146 years; corrupt
        # bytes), and never an offset that would leave the int64 range with the next frames
        sane = 0 <= frame.t_device_ns - self._offset.get(frame.stream, 0) < MAX_TIME_NS
        if 0 < number - last[0] <= tracker.window and sane and abs(offset) < MAX_TIME_NS:
            self._offset[frame.stream] = offset
            self.clock_steps += 1
            log.warning("clock step: %s re-anchored by %.1f s", frame.stream, step / 1e9)
            return replace(frame, t_device_ns=frame.t_device_ns + step)
        self._reject("absurd timestamp", f"{frame.stream} off by {error:.1f} s")
        return None

    def flush(self) -> list[Released]:
        return [r for t in self.trackers.values() for r in t.flush()]

    def state(self) -> dict:
        """Everything a restart needs, as data (JSON types and arrays, no objects): rejection
        counters, each stream's tracker with its held frames, each stream's last time."""
        return {
            "rejected": dict(self.rejected),
            "trackers": {name: _tracker_state(t) for name, t in self.trackers.items()},
            "last_t": {name: [int(n), int(t)] for name, (n, t) in self._last_t.items()},
            "clock_offset": {name: int(v) for name, v in self._offset.items()},
            "clock_steps": int(self.clock_steps),
        }

    def set_state(self, state: dict) -> None:
        """Back to ``state()``; ``CheckpointError`` if it does not fit this device."""
        from edge import checkpoint as ck

        ck.expect(state, dict, "receiver")
        rejected = Counter(ck.counts(state.get("rejected"), None, "receiver rejected"))
        trackers = {}
        for name, t in ck.expect(state.get("trackers"), dict, "receiver trackers").items():
            if name not in self.profile.streams:
                raise ck.CheckpointError(f"checkpoint receiver: unknown stream {name!r}")
            trackers[name] = _tracker_from_state(t, name, self.profile.streams[name].n_axes)
        last_t = {}
        for name, pair in ck.expect(state.get("last_t"), dict, "receiver last_t").items():
            what = f"receiver last_t[{name!r}]"
            ck.expect(pair, list, what)
            if name not in self.profile.streams or len(pair) != 2:
                raise ck.CheckpointError(f"checkpoint {what}: not a known stream's [number, time]")
            last_t[name] = (ck.expect(pair[0], int, what), ck.expect(pair[1], int, what))
        offsets = {}
        for name, v in ck.expect(state.get("clock_offset", {}), dict, "receiver offsets").items():
            if name not in self.profile.streams:
                raise ck.CheckpointError(f"checkpoint receiver: unknown stream {name!r}")
            offsets[name] = ck.expect(v, int, f"receiver clock_offset[{name!r}]")
            if abs(offsets[name]) >= MAX_TIME_NS:
                raise ck.CheckpointError(f"checkpoint receiver clock_offset[{name!r}] too large")
        steps = ck.expect(state.get("clock_steps", 0), int, "receiver clock_steps")
        self.rejected, self.trackers, self._last_t = rejected, trackers, last_t
        self._offset, self.clock_steps = offsets, steps

    def counts(self) -> dict[str, int]:
        """Totals over all streams, plus rejections by reason."""
        total = Counter()
        for t in self.trackers.values():
            total.update(vars(t.stats))
        steps = {"clock_steps": self.clock_steps} if self.clock_steps else {}
        return {**total, **steps, **{f"rejected:{k}": v for k, v in self.rejected.items()}}


def _tracker_state(t: SequenceTracker) -> dict:
    """A tracker as data (``Receiver.state``)."""
    held = [
        [n, {"seq": f.seq, "t": f.t_device_ns, "samples": f.samples, "off": bool(f.sensor_off),
             "bytes": f.n_bytes}]
        for n, f in t._held.items()
    ]  # fmt: skip
    return {
        "window": t.window,
        "stats": vars(t.stats).copy(),
        "next": t._next,
        "base": t._base,
        "pending_lost": t._pending_lost,
        "lost": list(t._lost),
        "seen": list(t._seen),
        "held": held,
    }


def _tracker_from_state(state: object, stream: str, n_axes: int) -> SequenceTracker:
    """``_tracker_state`` back, checked (``Receiver.set_state``)."""
    from edge import checkpoint as ck

    what = f"receiver tracker {stream!r}"
    ck.expect(state, dict, what)
    window = ck.count(state.get("window"), f"{what} window")
    if not 1 <= window <= 1 << 20:
        raise ck.CheckpointError(f"checkpoint {what}: window {window} out of range")
    t = SequenceTracker(window)
    stats = ck.counts(state.get("stats"), set(vars(t.stats)), f"{what} stats")
    t.stats = StreamStats(**stats)
    t._next, t._base = state.get("next"), state.get("base")
    if t._next is None or t._base is None:
        if t._next is not None or t._base is not None or state.get("held"):
            raise ck.CheckpointError(f"checkpoint {what}: held frames before the first frame")
    else:
        ck.expect(t._next, int, f"{what} next")
        ck.expect(t._base, int, f"{what} base")
    t._pending_lost = ck.count(state.get("pending_lost"), f"{what} pending_lost")
    for key in ("lost", "seen"):
        numbers = ck.expect(state.get(key), list, f"{what} {key}")
        getattr(t, f"_{key}").extend(ck.expect(n, int, f"{what} {key}") for n in numbers)
    for item in ck.expect(state.get("held", []), list, f"{what} held"):
        if not isinstance(item, list) or len(item) != 2:
            raise ck.CheckpointError(f"checkpoint {what} held: not [number, frame]")
        n, f = ck.expect(item[0], int, f"{what} held"), ck.expect(item[1], dict, f"{what} held")
        samples = ck.float_array(f.get("samples"), n_axes, f"{what} held samples")
        off = ck.expect(f.get("off"), bool, f"{what} held off")
        seq, t_ns = ck.count(f.get("seq"), f"{what} seq"), ck.count(f.get("t"), f"{what} t")
        if seq >= SEQ_MOD or n <= t._next or n - t._next > 4 * window:
            raise ck.CheckpointError(f"checkpoint {what}: held frame {n} out of place")
        t._held[n] = Frame(stream, seq, t_ns, samples, off, ck.count(f.get("bytes"), what))
    return t
