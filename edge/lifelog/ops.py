"""Streaming operators of the lifelog path: fixed-size bins and local-day blocks.

``BinAggregator`` turns a uniform stream into one value per bin of ``size`` samples (the 1 Hz
grid into minutes with size 60; minute events into 10-minute windows with size 10), ignoring
NaN samples (an all-NaN bin is NaN). ``BlockBuffer`` cuts a minute stream into 4-hour blocks
aligned on the local-time day (00:00, 04:00, … 20:00), the unit MIS-LSTM encodes; the first
block is NaN before the stream starts and ``flush`` pads the last one with NaN. Both follow the
operator interface (push/flush/snapshot/restore, streams on leading axes) and equal their batch
references (``reference_bins``, ``reference_blocks``) for any chunking.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from edge.ops.base import Snapshot, as_float_chunk, check_finished

How = Literal["mean", "sum", "max"]
MINUTES_PER_DAY = 1440
BLOCK_MINUTES = 240


def _reduce(bins: np.ndarray, how: How) -> np.ndarray:
    """(..., k, size) → (..., k), NaN-ignoring; an all-NaN bin is NaN."""
    valid = ~np.isnan(bins)
    any_valid = valid.any(axis=-1)
    filled = np.where(valid, bins, 0.0)
    if how == "sum":
        out = filled.sum(axis=-1)
    elif how == "mean":
        out = filled.sum(axis=-1) / np.maximum(valid.sum(axis=-1), 1)
    else:
        out = np.where(valid, bins, -np.inf).max(axis=-1)
    return np.where(any_valid, out, np.nan)


class _Binner:
    """Shared buffering: samples collected into rows of ``size``, the first ``phase`` absent."""

    name = "binner"

    def __init__(self, size: int, phase: int = 0) -> None:
        if size < 1:
            raise ValueError(f"{self.name}: size must be >= 1, got {size}")
        if not 0 <= phase < size:
            raise ValueError(f"{self.name}: phase must be in [0, {size}), got {phase}")
        self.size = int(size)
        self.phase = int(phase)
        self._lead: tuple[int, ...] | None = None
        self._pending: np.ndarray | None = None  # (..., m), m < size, NaN-padded front
        self._n_out = 0
        self._finished = False

    def _take(self, chunk: object) -> np.ndarray:
        """Complete bins of everything seen so far, shape (..., k, size)."""
        check_finished(self._finished, self.name)
        x = as_float_chunk(chunk, self._lead, self.name)
        if self._pending is None:
            self._lead = x.shape[:-1]
            self._pending = np.full(self._lead + (self.phase,), np.nan)
        buf = np.concatenate([self._pending, x], axis=-1)
        k = buf.shape[-1] // self.size
        self._pending = buf[..., k * self.size :].copy()
        self._n_out += k
        return buf[..., : k * self.size].reshape(buf.shape[:-1] + (k, self.size))

    def _rest(self) -> np.ndarray:
        check_finished(self._finished, self.name)
        self._finished = True
        p = self._pending
        if p is None or p.shape[-1] == 0 or np.isnan(p).all():
            lead = self._lead or ()
            return np.zeros(lead + (0, self.size))
        pad = np.full(p.shape[:-1] + (self.size - p.shape[-1],), np.nan)
        self._n_out += 1
        return np.concatenate([p, pad], axis=-1)[..., None, :]

    @property
    def bins_out(self) -> int:
        """Number of bins (blocks) emitted so far."""
        return self._n_out

    def snapshot(self) -> Snapshot:
        lead = () if self._lead is None else self._lead
        return {
            "pending": np.array([]) if self._pending is None else self._pending.copy(),
            "started": np.array(self._pending is not None),
            "lead": np.array(lead, np.int64),
            "n_out": np.array(self._n_out, np.int64),
            "finished": np.array(self._finished),
            "params": np.array([self.size, self.phase], np.int64),
        }

    def restore(self, snapshot: Snapshot) -> None:
        if tuple(snapshot["params"]) != (self.size, self.phase):
            raise ValueError(f"{self.name}: snapshot is for other parameters")
        started = bool(snapshot["started"])
        self._lead = tuple(int(v) for v in snapshot["lead"]) if started else None
        self._pending = snapshot["pending"].copy() if started else None
        self._n_out = int(snapshot["n_out"])
        self._finished = bool(snapshot["finished"])


class BinAggregator(_Binner):
    """One value per ``size`` samples (mean, sum or max over the non-NaN ones)."""

    name = "BinAggregator"

    def __init__(self, size: int, how: How = "mean", phase: int = 0) -> None:
        if how not in ("mean", "sum", "max"):
            raise ValueError(f"BinAggregator: how must be mean, sum or max, got {how!r}")
        super().__init__(size, phase)
        self.how: How = how

    def push(self, chunk: np.ndarray) -> np.ndarray:
        return _reduce(self._take(chunk), self.how)

    def flush(self) -> np.ndarray:
        return _reduce(self._rest(), self.how)


class BlockBuffer(_Binner):
    """4-hour blocks (``block`` minutes) on the local day; output (k, ..., block).

    ``start_minute`` is the local minute of day (0–1439) of the stream's first sample; block b
    of the output is block ``(start_minute // block + b) % (1440 // block)`` of its day."""

    name = "BlockBuffer"

    def __init__(self, block: int = BLOCK_MINUTES, start_minute: int = 0) -> None:
        if not 0 <= start_minute < MINUTES_PER_DAY:
            raise ValueError(f"BlockBuffer: start_minute must be in [0, 1440), got {start_minute}")
        super().__init__(block, start_minute % block)
        self.first_block = start_minute // block

    def push(self, chunk: np.ndarray) -> np.ndarray:
        return np.moveaxis(self._take(chunk), -2, 0)

    def flush(self) -> np.ndarray:
        return np.moveaxis(self._rest(), -2, 0)

    def block_of_day(self, index: int) -> int:
        """Block of the day (0 = 00:00–04:00) of output block ``index``."""
        return (self.first_block + index) % (MINUTES_PER_DAY // self.size)


def reference_bins(x: np.ndarray, size: int, how: How = "mean", phase: int = 0) -> np.ndarray:
    """Batch reference of BinAggregator: push(x) then flush() at once."""
    x = np.asarray(x, np.float64)
    pad = np.full(x.shape[:-1] + (phase,), np.nan)
    buf = np.concatenate([pad, x], axis=-1)
    k = -(-buf.shape[-1] // size)
    tail = np.full(x.shape[:-1] + (k * size - buf.shape[-1],), np.nan)
    bins = np.concatenate([buf, tail], axis=-1).reshape(x.shape[:-1] + (k, size))
    out = _reduce(bins, how)
    if k and np.isnan(bins[..., -1, :]).all() and buf.shape[-1] % size:
        out = out[..., :-1]  # a trailing all-NaN partial bin is not emitted
    return out


def reference_blocks(x: np.ndarray, block: int = BLOCK_MINUTES, start_minute: int = 0):
    """Batch reference of BlockBuffer: (k, ..., block)."""
    x = np.asarray(x, np.float64)
    phase = start_minute % block
    buf = np.concatenate([np.full(x.shape[:-1] + (phase,), np.nan), x], axis=-1)
    k = -(-buf.shape[-1] // block)
    tail = np.full(x.shape[:-1] + (k * block - buf.shape[-1],), np.nan)
    bins = np.concatenate([buf, tail], axis=-1).reshape(x.shape[:-1] + (k, block))
    if k and np.isnan(bins[..., -1, :]).all() and buf.shape[-1] % block:
        bins = bins[..., :-1, :]
    return np.moveaxis(bins, -2, 0)
