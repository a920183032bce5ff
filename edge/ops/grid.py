"""Irregular or slow streams onto a uniform time grid (1 Hz by default), as PixleepFlow does.

Grid point g sits at ``g * period`` seconds from the session anchor (computed, never
accumulated). Each point takes the linear interpolation (or the nearest) of the two samples
around it. An interval longer than ``max_gap`` is a gap: its grid points are NaN with flag GAP.
Points before the first sample are NaN with flag OUTSIDE (no extrapolation). A point is emitted
only once it is final, i.e. once a sample at or after it has arrived, so streaming output equals
the batch reference (``reference_grid``, built on ``np.interp``) for any chunking.

A finite point interpolated across a missing sample (the samples around it more than 1.5
periods apart, but within ``max_gap``) is flagged BRIDGED: for a 1 Hz sensor on a 1 Hz grid,
a lost sample bridged.

Input chunks are ``(times, values)``: times in seconds, shape (n,), strictly increasing across
chunks; values (..., n), the leading axes being channels that share those timestamps. NaN values
are missing samples: grid points that depend on one come out NaN with flag GAP.
"""

from __future__ import annotations

import bisect
import math
from typing import Literal

import numpy as np

from edge.ops.base import Snapshot, as_float_chunk, check_finished

OK, GAP, OUTSIDE, BRIDGED = 0, 1, 2, 3
Method = Literal["linear", "nearest"]


def _interpolate(
    tg: np.ndarray, t: np.ndarray, v: np.ndarray, method: Method, max_gap: float, period: float
) -> tuple[np.ndarray, np.ndarray]:
    """Values (..., len(tg)) and flags (len(tg),) for grid times with t[0] <= tg <= t[-1]."""
    j = np.searchsorted(t, tg, side="right") - 1  # t[j] <= tg
    ta = t[j]
    exact = ta == tg
    jb = j + ~exact  # an exact hit uses one sample; otherwise t[j] < tg <= t[j+1]
    tb = t[jb]
    span = tb - ta  # 0 where exact, so an exact hit is never a gap
    gap = span > max_gap
    va, vb = v[..., j], v[..., jb]
    if method == "linear":
        out = va + (vb - va) * ((tg - ta) / (span + exact))
    else:
        out = np.where(tb - tg < tg - ta, vb, va)
    if gap.any():
        out[..., gap] = np.nan
    bad = np.isnan(out)
    if out.ndim > 1:
        bad = bad.reshape(-1, tg.size).any(axis=0)
    flags = (gap | bad).view(np.uint8)
    return out, np.where((flags == OK) & (span > 1.5 * period), BRIDGED, flags).astype(np.uint8)


class GridResampler:
    """Stateful irregular → uniform grid resampler; see the module docstring for the rules."""

    def __init__(
        self,
        period: float = 1.0,
        method: Method = "linear",
        max_gap: float | None = None,
        start_time: float = 0.0,
    ) -> None:
        if not period > 0:
            raise ValueError(f"grid period must be positive, got {period}")
        if method not in ("linear", "nearest"):
            raise ValueError(f"method must be 'linear' or 'nearest', got {method!r}")
        self.period = float(period)
        self.method: Method = method
        self.max_gap = 10.0 * self.period if max_gap is None else float(max_gap)
        self.g0 = int(np.ceil(start_time / self.period - 1e-9))
        self._lead: tuple[int, ...] | None = None
        self._t_last = -np.inf
        self._v_last: np.ndarray | None = None
        self._n_out = 0
        self._finished = False
        self.last_flags = np.zeros(0, dtype=np.uint8)

    def grid_time(self, k: np.ndarray | int) -> np.ndarray:
        """Time in seconds of output k (0 = first grid point)."""
        return (self.g0 + np.asarray(k, dtype=np.int64)) * self.period

    def push(self, chunk: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        check_finished(self._finished, "GridResampler")
        try:
            times, values = chunk
        except (TypeError, ValueError):
            raise TypeError("GridResampler: push((times, values))") from None
        t = np.asarray(times, dtype=np.float64)
        v = as_float_chunk(values, self._lead, "GridResampler")
        n = t.size
        if t.ndim != 1 or n != v.shape[-1]:
            raise ValueError(
                f"GridResampler: times must be 1-D with one entry per sample: {t.shape}, {v.shape}"
            )
        if self._lead is None:
            self._lead = v.shape[:-1]
        if n == 0:
            self.last_flags = np.zeros(0, dtype=np.uint8)
            return np.zeros((*v.shape[:-1], 0))
        t_first, t_end = float(t[0]), float(t[-1])
        if not (math.isfinite(t_first) and math.isfinite(t_end)) or (
            n > 2 and not np.isfinite(t).all()
        ):
            raise ValueError("GridResampler: timestamps must be finite")
        if t_first <= self._t_last or (n > 1 and (np.diff(t) <= 0).any()):
            raise ValueError("GridResampler: timestamps must be strictly increasing across chunks")
        k_end = math.floor(t_end / self.period + 1e-9) - self.g0 + 1  # grid points <= t_end
        if (self.g0 + k_end - 1) * self.period > t_end:  # guard the 1e-9 rounding above
            k_end -= 1
        n_new = max(k_end - self._n_out, 0)
        if n_new == 0:
            out = np.zeros((*v.shape[:-1], 0))
            flags = np.zeros(0, dtype=np.uint8)
        elif n_new == 1 and n <= 8:  # the live case: about one sample and one grid point a push
            out, flags = self._one_point((self.g0 + self._n_out) * self.period, t, v)
        else:
            if self._v_last is None:
                tt, vv = t, v
            else:
                tt = np.concatenate(([self._t_last], t))
                vv = np.concatenate((self._v_last[..., None], v), axis=-1)
            tg = (self.g0 + np.arange(self._n_out, k_end)) * self.period
            if tg[0] >= tt[0]:
                out, flags = _interpolate(tg, tt, vv, self.method, self.max_gap, self.period)
            else:  # first samples: grid points before them are OUTSIDE (no extrapolation)
                out = np.full((*v.shape[:-1], n_new), np.nan)
                flags = np.full(n_new, OUTSIDE, dtype=np.uint8)
                inside = tg >= tt[0]
                if inside.any():
                    out[..., inside], flags[inside] = _interpolate(
                        tg[inside], tt, vv, self.method, self.max_gap, self.period
                    )
        self._n_out += n_new
        self._t_last, self._v_last = t_end, v[..., -1].copy()
        self.last_flags = flags
        return out

    def _one_point(self, tg: float, t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Same rule as ``_interpolate`` for a single grid point, with scalar index math."""
        times = t.tolist()
        has_last = self._v_last is not None
        if has_last:
            times.insert(0, self._t_last)
        if tg < times[0]:
            return np.full((*v.shape[:-1], 1), np.nan), np.array([OUTSIDE], dtype=np.uint8)
        j = bisect.bisect_right(times, tg) - 1
        ta = times[j]
        jb = j if ta == tg else j + 1
        tb = times[jb]
        if tb - ta > self.max_gap:
            return np.full((*v.shape[:-1], 1), np.nan), np.array([GAP], dtype=np.uint8)

        def sample(i: int) -> np.ndarray:  # column i of [last sample, chunk...] as (..., 1)
            if has_last:
                return self._v_last[..., None] if i == 0 else v[..., i - 1 : i]
            return v[..., i : i + 1]

        if jb == j:
            out = sample(j).copy()
        elif self.method == "linear":
            va = sample(j)
            out = va + (sample(jb) - va) * ((tg - ta) / (tb - ta))
        else:
            out = sample(jb if tb - tg < tg - ta else j).copy()
        if np.isnan(out).any():
            return out, np.array([GAP], dtype=np.uint8)
        return out, np.array([BRIDGED if tb - ta > 1.5 * self.period else OK], dtype=np.uint8)

    def flush(self) -> np.ndarray:
        """No grid point after the last sample is emitted (ends are left empty)."""
        check_finished(self._finished, "GridResampler")
        self._finished = True
        self.last_flags = np.zeros(0, dtype=np.uint8)
        return np.zeros((*(self._lead or ()), 0))

    @property
    def n_out(self) -> int:
        return self._n_out

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {
            "t_last": np.array(self._t_last),
            "n_out": np.array(self._n_out, dtype=np.int64),
            "started": np.array(self._v_last is not None),
        }
        if self._v_last is not None:
            snap["v_last"] = self._v_last.copy()
        return snap

    def restore(self, snapshot: Snapshot) -> None:
        self._t_last = float(snapshot["t_last"])
        self._n_out = int(snapshot["n_out"])
        if bool(snapshot["started"]):
            self._v_last = np.asarray(snapshot["v_last"], dtype=np.float64).copy()
            self._lead = self._v_last.shape
        else:
            self._v_last, self._lead = None, None


def reference_grid(
    times: np.ndarray,
    values: np.ndarray,
    period: float = 1.0,
    method: Method = "linear",
    max_gap: float | None = None,
    start_time: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch reference: every grid point from ``start_time`` to the last sample, via np.interp."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    max_gap = 10.0 * period if max_gap is None else max_gap
    g0 = int(np.ceil(start_time / period - 1e-9))
    if t.size == 0:
        return np.zeros((*v.shape[:-1], 0)), np.zeros(0, dtype=np.uint8)
    n = int(np.floor(t[-1] / period + 1e-9)) - g0 + 1
    tg = (g0 + np.arange(max(n, 0))) * period
    tg = tg[tg <= t[-1]]
    v2 = v.reshape(-1, v.shape[-1])
    if method == "linear":
        out = np.stack([np.interp(tg, t, row) for row in v2]).reshape(*v.shape[:-1], tg.size)
    else:
        idx_r = np.clip(np.searchsorted(t, tg, side="left"), 0, t.size - 1)
        idx_l = np.clip(idx_r - 1, 0, t.size - 1)
        use_r = (t[idx_r] - tg) < (tg - t[idx_l])
        use_r |= t[idx_r] == tg
        out = v[..., np.where(use_r, idx_r, idx_l)]
    pos = np.searchsorted(t, tg, side="left")  # first sample >= tg
    on_sample = (pos < t.size) & (t[np.minimum(pos, t.size - 1)] == tg)
    span = t[np.minimum(pos, t.size - 1)] - t[np.maximum(pos - 1, 0)]
    gap = ~on_sample & (span > max_gap)
    outside = tg < t[0]
    out = np.where(gap | outside, np.nan, out)
    bridged = ~on_sample & (span > 1.5 * period)
    bad = gap | np.isnan(out).reshape(-1, tg.size).any(0)
    flags = np.where(outside, OUTSIDE, np.where(bad, GAP, np.where(bridged, BRIDGED, OK)))
    return out, flags.astype(np.uint8)
