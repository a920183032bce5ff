"""Seeded, reproducible faults between a device and its receiver, with the truth recorded.

Applied to the device's send-ordered frames, in this order: disconnects (every frame sent while
the link is down is lost), random loss, duplicates (the copy arrives right after the original),
reordering (a frame is held back behind up to ``reorder_max`` later frames of its stream, within
a run with no loss, so every reordering is recoverable by the receiver's window), and
bursty delivery (frames queue and arrive together at the next ``burst_s`` boundary). Clock
drift and sensor drop-outs belong to the device (``VirtualDevice.drift_ppm`` / ``sensor_off``).
``FaultLog`` counts what was done per stream so tests can compare the receiver's counts.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from firmware_sim.device import SentFrame


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    loss: float = 0.0  # probability a frame is lost
    duplicate: float = 0.0  # probability a frame is delivered twice
    reorder: float = 0.0  # probability a frame is held back
    reorder_max: int = 3  # ... behind at most this many later frames of its stream
    disconnect_s: float = 0.0  # link down for this long ...
    disconnect_every_s: float = 0.0  # ... every this many seconds (0 = never)
    burst_s: float = 0.0  # deliver in bursts at multiples of this (0 = as sent)

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1), got {p}")
        if self.disconnect_s and not 0 < self.disconnect_s < self.disconnect_every_s:
            raise ValueError("need 0 < disconnect_s < disconnect_every_s")

    def link_down(self, t: float) -> bool:
        if not self.disconnect_every_s:
            return False
        phase = t % self.disconnect_every_s
        return phase >= self.disconnect_every_s - self.disconnect_s


@dataclass
class FaultLog:
    lost: Counter = field(default_factory=Counter)  # stream -> frames lost (random + link down)
    lost_in_disconnect: Counter = field(default_factory=Counter)
    duplicated: Counter = field(default_factory=Counter)
    reordered: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class Delivery:
    t_deliver_s: float
    frame: SentFrame


def apply_faults(frames: Iterable[SentFrame], plan: FaultPlan) -> tuple[list[Delivery], FaultLog]:
    """Deliveries in arrival order and the log of every fault applied."""
    rng = np.random.default_rng(plan.seed)
    log = FaultLog()
    kept: list[SentFrame] = []
    for f in frames:
        if plan.link_down(f.t_send_s):
            log.lost[f.stream] += 1
            log.lost_in_disconnect[f.stream] += 1
        elif plan.loss and rng.random() < plan.loss:
            log.lost[f.stream] += 1
        else:
            kept.append(f)
    # the first and last frames of a stream are never held back: a receiver numbers frames from
    # the first it sees, and can only tell "late" from "lost" once a later frame exists
    order = [[i, float(i)] for i in range(len(kept))]
    if plan.reorder:
        by_stream: dict[str, list[int]] = {}
        for i, f in enumerate(kept):
            by_stream.setdefault(f.stream, []).append(i)
        for idx in by_stream.values():
            # latest first, so a frame never jumps over one that is moved itself (each event
            # then shows at the receiver as exactly one frame arriving after a later one)
            for j in reversed(range(1, len(idx) - 1)):
                i = idx[j]
                if rng.random() < plan.reorder:
                    hop = int(rng.integers(1, plan.reorder_max + 1))
                    target = idx[min(j + hop, len(idx) - 1)]
                    contiguous = kept[target].seq - kept[i].seq == hop  # no loss in between
                    if contiguous and not _moved(order, idx, j, hop):
                        order[i][1] = order[target][1] + 0.5
                        log.reordered[kept[i].stream] += 1
    order.sort(key=lambda p: p[1])
    out: list[Delivery] = []
    for i, _ in order:
        f = kept[i]
        t = f.t_send_s
        if plan.burst_s:
            t = math.ceil(t / plan.burst_s) * plan.burst_s
        out.append(Delivery(t, f))
        if plan.duplicate and rng.random() < plan.duplicate:
            out.append(Delivery(t, f))
            log.duplicated[f.stream] += 1
    if plan.burst_s:  # bursts keep arrival order but share a delivery time
        for k in range(1, len(out)):
            if out[k].t_deliver_s < out[k - 1].t_deliver_s:
                out[k] = Delivery(out[k - 1].t_deliver_s, out[k].frame)
    return out, log


def _moved(order: list[list[float]], idx: list[int], j: int, hop: int) -> bool:
    """True if any frame this one would jump over has been moved already."""
    return any(order[idx[k]][1] != float(idx[k]) for k in range(j + 1, min(j + hop + 1, len(idx))))


def drop_frames(
    signals: dict[str, np.ndarray], profile, loss: float, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random frame loss seen in the sample domain, without the wire: each regular stream's
    frames (its descriptor's frame size) lost at rate ``loss`` become NaN runs, as the
    receiver's assembler places them (training augmentation, bridge measurements). Returns the
    new signals (timestamped streams untouched) and each regular stream's lost-sample mask."""
    out, lost = {}, {}
    for name, x in signals.items():
        spec = profile.streams[name]
        if spec.timing != "regular" or spec.wire is None:
            out[name] = x
            continue
        f = spec.wire.frame_samples
        gone = np.repeat(rng.random(-(-x.shape[-1] // f)) < loss, f)[: x.shape[-1]]
        y = np.array(x, dtype=np.float64, copy=True)
        y[..., gone] = np.nan
        out[name], lost[name] = y, gone
    return out, lost
