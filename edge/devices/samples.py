"""Released frames → per-stream sample chunks on the session's time grid.

The session anchor is the device timestamp of the first frame received. A regular stream's
sample index is round((t_device − anchor) · rate), so a stream that starts late, a lost frame
or a disconnect become NaN runs of exactly the missing length (gaps are events, never zeros,
never a shift of the time grid); samples that overlap ones already delivered are dropped.
Timestamped streams keep their times (seconds from the anchor). Sensor-off frames arrive as NaN.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from edge.devices.profile import DeviceProfile
from edge.devices.receiver import FrameRun, Released


@dataclass
class Chunk:
    stream: str
    samples: np.ndarray  # (axes, n)
    times: np.ndarray | None  # seconds from the anchor, timestamped streams only


@dataclass
class SampleAssembler:
    profile: DeviceProfile
    anchor_ns: int | None = None
    gap_samples: Counter = field(default_factory=Counter)  # NaN samples inserted, per stream
    overlap_samples: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._next: dict[str, int] = {}

    def add(self, item: Released) -> Chunk:
        f = item.frame
        spec = self.profile.streams[f.stream]
        if self.anchor_ns is None:
            self.anchor_ns = f.t_device_ns
        offset_s = (f.t_device_ns - self.anchor_ns) / 1e9
        if spec.timing == "timestamped":
            return Chunk(f.stream, f.samples, offset_s + np.arange(f.n) / spec.rate_hz)
        start = int(round(offset_s * spec.rate_hz))
        expected = self._next.get(f.stream, 0)
        x = f.samples
        if start > expected:
            self.gap_samples[f.stream] += start - expected
            x = np.concatenate((np.full((spec.n_axes, start - expected), np.nan), x), axis=1)
        elif start < expected:
            drop = min(expected - start, f.n)
            self.overlap_samples[f.stream] += drop
            x = x[:, drop:]
        self._next[f.stream] = max(expected, start + f.n)
        return Chunk(f.stream, x, None)

    def add_run(self, run: FrameRun) -> Chunk:
        """``add`` for a run of frames: one chunk, computed for all frames at once when they
        tile the grid without a gap or an overlap (anything else goes frame by frame)."""
        spec = self.profile.streams[run.stream]
        if self.anchor_ns is None:
            self.anchor_ns = int(run.t_device_ns[0])
        offset_s = (run.t_device_ns - self.anchor_ns) / 1e9
        if spec.timing == "timestamped":
            within = np.arange(len(run.samples[0])) - np.repeat(np.cumsum(run.n) - run.n, run.n)
            return Chunk(
                run.stream, run.samples, np.repeat(offset_s, run.n) + within / spec.rate_hz
            )
        start = np.rint(offset_s * spec.rate_hz).astype(np.int64)
        end = start + run.n
        expected = np.maximum.accumulate(np.concatenate([[self._next.get(run.stream, 0)], end]))
        if (start == expected[:-1]).all():
            self._next[run.stream] = int(expected[-1])
            return Chunk(run.stream, run.samples, None)
        parts = [self.add(Released(f, 0, 0)).samples for f in run.frames()]
        return Chunk(run.stream, np.concatenate(parts, axis=1), None)

    def state(self) -> dict:
        """Everything a restart needs, as data (JSON types): the anchor, next indices, counters."""
        return {
            "anchor_ns": self.anchor_ns,
            "gap_samples": dict(self.gap_samples),
            "overlap_samples": dict(self.overlap_samples),
            "next": dict(self._next),
        }

    def set_state(self, state: dict) -> None:
        """Back to ``state()``; ``CheckpointError`` if it does not fit this device."""
        from edge import checkpoint as ck

        ck.expect(state, dict, "assembler")
        streams = set(self.profile.streams)
        anchor = state.get("anchor_ns")
        if anchor is not None:
            ck.expect(anchor, int, "assembler anchor_ns")
        gaps = ck.counts(state.get("gap_samples"), streams, "assembler gap_samples")
        overlaps = ck.counts(state.get("overlap_samples"), streams, "assembler overlap_samples")
        nexts = ck.counts(state.get("next"), streams, "assembler next")
        self.anchor_ns, self._next = anchor, dict(nexts)
        self.gap_samples, self.overlap_samples = Counter(gaps), Counter(overlaps)
