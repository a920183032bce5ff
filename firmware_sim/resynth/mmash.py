"""MMASH records (../shared/data/mmash) read for resynthesis: beat times on the wall clock,
sleep periods, per-epoch real features.

The Polar strap's RR file is not a continuous tachogram: it arrives in ~25-s bursts with ~8-s
holes between them (about a quarter of the day), plus artefact intervals (missed or extra
detections). Summing the intervals would compress the day by hours against the actigraphy
clock, so each burst is anchored on its own wall-clock stamps and the holes are filled with
beats at the neighbouring bursts' mean interval. Which beats are real is kept (``observed``),
so per-epoch heart rate and the share of filled time come from real beats only.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware_sim.recordings import SCORING_EPOCH_S as EPOCH_S

IBI_RANGE_S = (0.25, 2.0)  # 30–240 bpm; outside it an interval is a detection artefact
BURST_BREAK_S = 1.5  # wall clock and summed intervals disagreeing by more: a hole
ARTEFACT_WINDOW, ARTEFACT_DEVIATION = 11, 0.3  # an interval this far off its local median


def read_csv_gz(path: Path) -> dict[str, list[str]]:
    """Columns of one of MMASH's gzip'd CSV files (first column is an unnamed index)."""
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(header) if name}


def clock_s(days: list[str], clock: list[str]) -> np.ndarray:
    """'day' (1, 2, …) and 'hh:mm[:ss]' columns → seconds from day 1, 00:00. A day below 1
    (users 8 and 9 write -29 from midnight on) is the day after the last valid one."""
    day = np.array(days, dtype=np.float64)
    if (day < 1).any():
        day = np.where(day < 1, day[day >= 1].max(initial=1.0) + 1, day)
    fields = np.char.partition(np.char.partition(np.asarray(clock, dtype=str), ":")[:, 2], ":")
    hours = np.char.partition(np.asarray(clock, dtype=str), ":")[:, 0]
    seconds = np.where(fields[:, 2] == "", "0", fields[:, 2])
    hms = np.stack([hours, fields[:, 0], seconds]).astype(np.float64)
    return 86400.0 * (day - 1) + 3600 * hms[0] + 60 * hms[1] + hms[2]


def anchored_beats(ibi: np.ndarray, stamp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Beat times on the wall clock and whether each is real.

    ``ibi`` [N] seconds, ``stamp`` [N] the whole-second clock of each beat. Within a burst the
    intervals give the times; each burst is placed where its stamps say (median offset, +0.5 s
    for the truncated stamp), then moved by at most 0.5 s (the stamps' resolution) so that the
    hole before it spans a whole number of the local interval (the mean valid interval of up to
    ten beats on each side); the hole is filled with beats at that spacing. An artefact beat
    (interval outside 30–240 bpm or more than 30 % off the median of its 11 neighbours, the
    usual RR editing rule: missed or extra detections, ectopy) is dropped and ends a burst."""
    from scipy.ndimage import median_filter

    ibi = np.asarray(ibi, np.float64)
    stamp = np.asarray(stamp, np.float64)
    if ibi.ndim != 1 or ibi.shape != stamp.shape or not ibi.size:
        raise ValueError(
            f"need as many beat stamps as intervals, at least one (got {ibi.shape} intervals, "
            f"{stamp.shape} stamps)"
        )
    if not np.isfinite(ibi).all() or not np.isfinite(stamp).all():
        raise ValueError("beat intervals and stamps must be finite numbers")
    local_median = median_filter(ibi, size=ARTEFACT_WINDOW, mode="nearest")
    valid = (ibi >= IBI_RANGE_S[0]) & (ibi <= IBI_RANGE_S[1])
    valid &= np.abs(ibi - local_median) <= ARTEFACT_DEVIATION * local_median
    cum = np.cumsum(ibi)
    offset = stamp - cum
    starts = np.flatnonzero(np.abs(np.diff(offset)) > BURST_BREAK_S) + 1
    starts = np.union1d(starts, np.flatnonzero(~valid))
    bounds = np.concatenate([[0], starts[starts > 0], [ibi.size]]).astype(np.int64)
    times, real = [], []
    prev_end, prev_ibi = None, np.zeros(0)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        t = cum[lo:hi] + np.median(offset[lo:hi]) + 0.5
        t = t[valid[lo:hi]]  # an artefact beat (only ever a burst's first) is dropped
        if not t.size:
            continue
        own = ibi[lo + 1 : hi][valid[lo + 1 : hi]]  # the first interval reaches into the hole
        if prev_end is not None:
            near = np.concatenate([prev_ibi[-10:], own[:10]])
            local = float(near.mean()) if near.size else 1.0
            gap = t[0] - prev_end
            m = max(1, int(round(gap / local)))
            t = t + float(np.clip(m * local - gap, -0.5, 0.5))
            t = t[t - prev_end >= IBI_RANGE_S[0]]  # a burst overlapping the last one
            if not t.size:
                continue
            gap = t[0] - prev_end
            m = max(1, int(round(gap / local)))
            if m > 1:
                times.append(prev_end + gap * np.arange(1, m) / m)
                real.append(np.zeros(m - 1, bool))
        times.append(t)
        real.append(np.ones(t.size, bool))
        prev_end, prev_ibi = t[-1], own if own.size else prev_ibi
    return np.concatenate(times), np.concatenate(real)


def sleep_periods(sleep: dict[str, list[str]]) -> np.ndarray:
    """[P, 2] (sleep onset, out of bed) in clock seconds; an end before its start is the next
    day (MMASH writes some out-of-bed dates as the in-bed date)."""
    if not sleep.get("Onset Time"):
        return np.zeros((0, 2))
    onset = clock_s(sleep["Onset Date"], sleep["Onset Time"])
    inbed = clock_s(sleep["In Bed Date"], sleep["In Bed Time"])
    out = clock_s(sleep["Out Bed Date"], sleep["Out Bed Time"])
    onset = np.where(onset < inbed, onset + 86400.0, onset)
    out = np.where(out <= onset, out + 86400.0, out)
    return np.stack([onset, out], axis=1)


@dataclass
class MmashRecord:
    """One user's real streams on one clock: beats (with ``observed``), 1-s activity (the wrist
    ActiGraph's vector magnitude / 10, the Walch count scale) and sleep periods."""

    beats: np.ndarray
    observed: np.ndarray
    activity_t: np.ndarray
    activity: np.ndarray
    periods: np.ndarray

    @classmethod
    def read(cls, base: Path) -> MmashRecord:
        rr = read_csv_gz(base / "RR.csv.gz")
        act = read_csv_gz(base / "Actigraph.csv.gz")
        t_act = clock_s(act["day"], act["time"])
        vm = np.array(act["Vector Magnitude"], dtype=np.float64) / 10.0
        ibi = np.array(rr["ibi_s"], dtype=np.float64)
        stamps = clock_s(rr["day"], rr["time"])
        beats, observed = anchored_beats(ibi, stamps)
        periods = sleep_periods(read_csv_gz(base / "sleep.csv.gz"))
        return cls(beats, observed, t_act, vm, periods)

    def window(self, before_bed_h: float, after_bed_h: float | None) -> tuple[float, float]:
        """Clock seconds [start, end): from ``before_bed_h`` before the first sleep period
        (or the recording's start) to ``after_bed_h`` after the last (or the recording's end)."""
        first = max(self.activity_t[0], self.beats[0])
        last = min(self.activity_t[-1], self.beats[-1])
        if not len(self.periods):
            return first, last
        start = max(first, self.periods[0, 0] - 3600.0 * before_bed_h)
        end = last if after_bed_h is None else min(last, self.periods[-1, 1] + 3600 * after_bed_h)
        return start, end

    def asleep_per_epoch(self, start: float, n_epochs: int) -> np.ndarray:
        """int8 per 30-s epoch from ``start``: 1 inside a sleep period (onset to out of bed;
        actigraphy-scored, so wake after onset is not localised), 0 outside, -1 for a user
        with no sleep period (unknown)."""
        if not len(self.periods):
            return np.full(n_epochs, -1, np.int8)
        mid = start + EPOCH_S * (np.arange(n_epochs) + 0.5)
        inside = ((mid[:, None] >= self.periods[:, 0]) & (mid[:, None] < self.periods[:, 1])).any(1)
        return inside.astype(np.int8)

    def epoch_features(self, start: float, n_epochs: int) -> dict[str, np.ndarray]:
        """Per 30-s epoch: heart rate from real beats only (NaN under 3), mean activity, and
        the share of the epoch's beats that were filled in."""
        edges = start + EPOCH_S * np.arange(n_epochs + 1)
        e = np.searchsorted(edges, self.beats, side="right") - 1
        inside = (e >= 0) & (e < n_epochs)
        intervals = np.diff(self.beats, prepend=np.nan)
        real = inside & self.observed & np.concatenate([[False], self.observed[:-1]])
        n = np.bincount(e[real], minlength=n_epochs)
        s = np.bincount(e[real], weights=intervals[real], minlength=n_epochs)
        hr = np.where(n >= 3, 60.0 * n / np.maximum(s, 1e-9), np.nan)
        total = np.bincount(e[inside], minlength=n_epochs)
        filled = np.bincount(e[inside], weights=~self.observed[inside], minlength=n_epochs)
        a = np.searchsorted(edges, self.activity_t, side="right") - 1
        a_in = (a >= 0) & (a < n_epochs)
        count = np.bincount(a[a_in], weights=self.activity[a_in], minlength=n_epochs) / np.maximum(
            np.bincount(a[a_in], minlength=n_epochs), 1
        )
        return {"hr": hr, "count": count, "filled": filled / np.maximum(total, 1)}
