"""Short gaps bridged in the sample domain, before any other operator sees them (DESIGN §7).

A lost frame leaves a NaN run in a regular stream (``SampleAssembler``); every operator after it
would spread that run (the resampler's FIR, an IIR reset, a whole STFT frame). A run of at most
``max_gap`` samples with a finite sample on each side is filled here instead; a longer run, or
one at the start or end of the stream, stays NaN (a gap, reported downstream).

Fill methods (``benchmarks/bridge.py`` measures them against the clean features):

- ``linear``: a straight line between the samples around the gap (slow channels);
- ``pattern``: the ``L`` samples before a gap of length ``L`` repeated into it, with a linear
  offset ramp so both ends join the real samples (waveforms: keeps the spectrum that a straight
  line would flatten). It needs ``L + 1`` finite samples before the gap, else ``linear``.

Streaming equals the batch reference (``reference_bridge``) for any chunking: a gap is decided
only once it has ended or grown past ``max_gap``, so output waits at most ``max_gap`` samples,
and only while a short gap is open. ``last_bridged`` marks the bridged samples of the last output.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from edge.ops.base import Snapshot, as_float_chunk, check_finished

Method = Literal["linear", "pattern"]
METHODS = ("linear", "pattern")


def nan_runs(nan: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal NaN runs of a (rows, n) mask: (row, start, stop) arrays, stop exclusive."""
    pad = np.zeros((nan.shape[0], 1), dtype=bool)
    d = np.diff(np.concatenate((pad, nan, pad), axis=1).view(np.int8), axis=1)
    rows, starts = np.nonzero(d == 1)
    _, stops = np.nonzero(d == -1)  # same row-major order: run i's stop pairs with its start
    return rows, starts, stops


def _fill(row: np.ndarray, s: int, e: int, method: Method) -> None:
    """Fill row[s:e] in place from the finite samples around it (row[s-1] and row[e])."""
    n = e - s
    ramp = np.arange(1, n + 1) / (n + 1)
    left, right = row[s - 1], row[e]
    if method == "pattern" and s - n - 1 >= 0:
        template = row[s - n - 1 : s]  # n + 1 samples: the one before the pattern, then it
        if np.isfinite(template).all():
            o_left = left - template[0]
            o_right = right - template[1]  # the pattern repeats: position e is template[1]
            row[s:e] = template[1:] + o_left + (o_right - o_left) * ramp
            return
    row[s:e] = left + (right - left) * ramp


def bridge_rows(
    x: np.ndarray, max_gap: int, method: Method, open_end: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bridge the short interior gaps of ``x`` (rows, n), reading only NaNs of ``x``.

    Returns (filled copy, bridged mask, per-row first undecided sample): with ``open_end``, a
    trailing run of at most ``max_gap`` samples may still be bridged by samples yet to come,
    so it is left NaN and its start reported (n where nothing is undecided)."""
    out = x.copy()
    bridged = np.zeros(x.shape, dtype=bool)
    undecided = np.full(x.shape[0], x.shape[1], dtype=np.int64)
    nan = np.isnan(x)
    if not nan.any():
        return out, bridged, undecided
    rows, starts, stops = nan_runs(nan)
    n = x.shape[1]
    for r, s, e in zip(rows.tolist(), starts.tolist(), stops.tolist(), strict=True):
        if e - s > max_gap or s == 0:
            continue  # a long gap, or one with nothing before it: stays NaN
        if e == n:
            if open_end:
                undecided[r] = s
            continue
        _fill(out[r], s, e, method)
        bridged[r, s:e] = True
    return out, bridged, undecided


class GapBridge:
    """Streaming gap bridge over (..., time) arrays; see the module docstring."""

    def __init__(self, max_gap: int, method: Method = "linear") -> None:
        if int(max_gap) != max_gap or max_gap < 0:
            raise ValueError(f"max_gap must be a whole number of samples >= 0, got {max_gap}")
        if method not in METHODS:
            raise ValueError(f"bridge method must be one of {METHODS}, got {method!r}")
        self.max_gap = int(max_gap)
        self.method: Method = method
        # raw samples kept behind the output: a gap that straddles the output edge, and the
        # pattern before it, lie within 2·max_gap + 1 samples of it
        self._keep = 2 * self.max_gap + 1
        self._lead: tuple[int, ...] | None = None
        self._hist: list[np.ndarray] | None = None  # raw samples already emitted (≥ last _keep)
        self._hist_len = 0  # samples in _hist
        self._pending: np.ndarray | None = None  # raw samples not yet emitted
        self._n_out = 0
        self._finished = False
        self._last_bridged: np.ndarray | None = np.zeros((0,), dtype=bool)
        self._last_shape: tuple[int, ...] = (0,)

    @property
    def last_bridged(self) -> np.ndarray:
        """Which samples of the last output were bridged (same shape as it)."""
        if self._last_bridged is None:  # a clean chunk: the mask is made only when asked for
            self._last_bridged = np.zeros(self._last_shape, dtype=bool)
        return self._last_bridged

    @property
    def bridged_any(self) -> bool:
        """Whether any sample of the last output was bridged (cheap: no mask is built)."""
        return self._last_bridged is not None and bool(self._last_bridged.any())

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """The samples now final (..., m); a chunk with no NaN while no gap is open comes back
        as it is (the same array: do not modify a chunk after pushing it)."""
        check_finished(self._finished, "GapBridge")
        x = as_float_chunk(chunk, self._lead, "GapBridge")
        if self._lead is None:
            self._lead = x.shape[:-1]
            self._hist, self._hist_len = [np.zeros((*self._lead, 0))], 0
            self._pending = np.zeros((*self._lead, 0))
        return self._emit(x, final=False)

    def _remember(self, raw: np.ndarray) -> None:
        """Keep the last ``_keep`` raw samples, as references to the chunks holding them."""
        self._hist.append(raw)
        self._hist_len += raw.shape[-1]
        while len(self._hist) > 1 and self._hist_len - self._hist[0].shape[-1] >= self._keep:
            self._hist_len -= self._hist.pop(0).shape[-1]

    def _history(self) -> np.ndarray:
        hist = self._hist[0] if len(self._hist) == 1 else np.concatenate(self._hist, axis=-1)
        return hist[..., max(0, hist.shape[-1] - self._keep) :]

    def _emit(self, x: np.ndarray, final: bool) -> np.ndarray:
        lead = self._lead
        if not self._pending.shape[-1] and np.isfinite(x.sum()):  # the common case: no copy
            self._remember(x)
            self._n_out += x.shape[-1]
            self._last_bridged, self._last_shape = None, x.shape
            return x
        hist = self._history()
        h = hist.shape[-1]
        raw = np.concatenate((hist, self._pending, x), axis=-1)
        flat = raw.reshape(int(np.prod(lead)), raw.shape[-1])
        filled, mask, undecided = bridge_rows(flat, self.max_gap, self.method, not final)
        cut = int(undecided.min()) if undecided.size else flat.shape[1]
        out = filled[:, h:cut].reshape(*lead, cut - h)
        bridged = mask[:, h:cut].reshape(*lead, cut - h)
        kept = raw[..., max(0, cut - self._keep) : cut]
        self._hist, self._hist_len = [kept], kept.shape[-1]
        self._pending = raw[..., cut:]
        self._n_out += out.shape[-1]
        self._last_bridged, self._last_shape = bridged, bridged.shape
        return out

    def flush(self) -> np.ndarray:
        """The samples still held behind an open gap (which, with nothing after it, stays NaN)."""
        check_finished(self._finished, "GapBridge")
        self._finished = True
        if self._lead is None:
            self._last_bridged = np.zeros((0,), dtype=bool)
            return np.zeros((0,))
        return self._emit(np.zeros((*self._lead, 0)), final=True)

    @property
    def n_out(self) -> int:
        """Samples emitted so far (the absolute index of the next one)."""
        return self._n_out

    def snapshot(self) -> Snapshot:
        if self._lead is None:
            return {"started": np.array(False)}
        return {
            "started": np.array(True),
            "lead": np.array(self._lead, dtype=np.int64),
            "hist": self._history().copy(),
            "pending": self._pending.copy(),
            "n_out": np.array(self._n_out, dtype=np.int64),
        }

    def restore(self, snapshot: Snapshot) -> None:
        if not bool(snapshot["started"]):
            self._lead = self._hist = self._pending = None
            self._n_out = 0
            return
        self._lead = tuple(int(v) for v in snapshot["lead"])
        self._hist = [np.array(snapshot["hist"], dtype=np.float64).reshape(*self._lead, -1)]
        self._hist_len = self._hist[0].shape[-1]
        self._pending = np.asarray(snapshot["pending"], dtype=np.float64).reshape(*self._lead, -1)
        self._n_out = int(snapshot["n_out"])


def reference_bridge(
    x: np.ndarray, max_gap: int, method: Method = "linear"
) -> tuple[np.ndarray, np.ndarray]:
    """Batch reference: the whole recording bridged at once → (filled, bridged mask)."""
    a = np.asarray(x, dtype=np.float64)
    flat = a.reshape(int(np.prod(a.shape[:-1])), a.shape[-1])
    filled, mask, _ = bridge_rows(flat, int(max_gap), method, open_end=False)
    return filled.reshape(a.shape), mask.reshape(a.shape)
