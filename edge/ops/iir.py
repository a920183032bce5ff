"""Streaming IIR filtering: Butterworth second-order sections with carried state.

Reference: ``scipy.signal.sosfilt`` over the whole recording with the same initial state. The
kernel is scipy's own compiled biquad cascade; we call it directly (falling back to the public
``sosfilt``) because the public wrapper's validation costs ~50 µs per call, which is most of the
per-second budget of a live stream (see benchmarks/dsp.py).

Missing data: NaN samples pass through as NaN and reset the filter, which restarts from the
steady state of the next finite sample, exactly as if each finite run were its own recording
(``reference_sosfilt`` implements that rule for the batch side).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.signal as sps

from edge.ops.base import Snapshot, as_float_chunk, check_finished

try:  # scipy's compiled cascade; in-place on x (n, T) C-contiguous and zi (n, sections, 2)
    from scipy.signal._sosfilt import _sosfilt as _sosfilt_kernel
except ImportError:  # pragma: no cover - exercised only on scipy builds without the kernel
    _sosfilt_kernel = None

FilterKind = Literal["lowpass", "highpass", "bandpass", "bandstop"]
InitKind = Literal["steady", "zeros"]


def design_butter(
    kind: FilterKind, fs: float, low: float | None = None, high: float | None = None, order: int = 2
) -> np.ndarray:
    """Butterworth design as second-order sections, with clear errors for bad corners.

    Designs are cached: a fleet builds the same filters for every device that joins, and
    scipy's design costs ~5 ms. Each caller gets its own copy (scipy's kernel wants it
    writable)."""
    return _butter(kind, float(fs), low, high, int(order)).copy()


@lru_cache(maxsize=64)
def _butter(
    kind: FilterKind, fs: float, low: float | None, high: float | None, order: int
) -> np.ndarray:
    if fs <= 0:
        raise ValueError(f"sample rate must be positive, got {fs}")
    nyq = fs / 2.0
    if kind in ("bandpass", "bandstop"):
        if low is None or high is None:
            raise ValueError(f"{kind} needs both low and high corner frequencies")
        if not 0 < low < high < nyq:
            raise ValueError(f"{kind} corners need 0 < low < high < fs/2={nyq}: {low}, {high}")
        wn: float | list[float] = [low, high]
    elif kind == "lowpass":
        if high is None or not 0 < high < nyq:
            raise ValueError(f"lowpass corner must satisfy 0 < high < fs/2={nyq}: {high}")
        wn = high
    elif kind == "highpass":
        if low is None or not 0 < low < nyq:
            raise ValueError(f"highpass corner must satisfy 0 < low < fs/2={nyq}: {low}")
        wn = low
    else:
        raise ValueError(f"unknown filter kind {kind!r}")
    if order < 1:
        raise ValueError(f"filter order must be >= 1, got {order}")
    return _read_only(sps.butter(order, wn, btype=kind, fs=fs, output="sos"))


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@lru_cache(maxsize=64)
def _steady_zi(sos_bytes: bytes, sections: int) -> np.ndarray:
    """``sosfilt_zi`` per design, cached like the design itself."""
    sos = np.frombuffer(sos_bytes, np.float64).reshape(sections, 6)
    return _read_only(sps.sosfilt_zi(sos))


def _run_cascade(sos: np.ndarray, x2d: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """Filter rows of x2d in place-safe fashion, updating zi (rows, sections, 2) in place."""
    y = np.array(x2d, dtype=np.float64, order="C")
    if _sosfilt_kernel is not None:
        _sosfilt_kernel(sos, y, zi)
        return y
    y, zf = sps.sosfilt(sos, y, axis=-1, zi=np.moveaxis(zi, 1, 0))  # pragma: no cover
    zi[...] = np.moveaxis(zf, 0, 1)  # pragma: no cover
    return y  # pragma: no cover


class SOSFilter:
    """Streaming SOS filter over arrays shaped (..., time).

    ``init="steady"`` starts (and restarts after a NaN gap) from the filter's step-response steady
    state scaled by the first sample, which removes the start-up transient of a DC offset;
    ``init="zeros"`` starts from rest, like ``sosfilt`` without ``zi``.
    """

    def __init__(self, sos: np.ndarray, init: InitKind = "steady") -> None:
        sos = np.ascontiguousarray(np.asarray(sos, dtype=np.float64))
        if sos.ndim != 2 or sos.shape[1] != 6:
            raise ValueError(f"sos must have shape (sections, 6), got {sos.shape}")
        if init not in ("steady", "zeros"):
            raise ValueError(f"init must be 'steady' or 'zeros', got {init!r}")
        self.sos = sos
        self.init = init
        self._zi_unit = (
            _steady_zi(sos.tobytes(), sos.shape[0])
            if init == "steady"
            else np.zeros((sos.shape[0], 2))
        )
        self._lead: tuple[int, ...] | None = None
        self._zi: np.ndarray | None = None  # (n_rows, sections, 2)
        self._fresh: np.ndarray | None = None  # (n_rows,) bool: next finite sample restarts
        self._any_fresh = True
        self._finished = False

    @classmethod
    def butter(
        cls,
        kind: FilterKind,
        fs: float,
        low: float | None = None,
        high: float | None = None,
        order: int = 2,
        init: InitKind = "steady",
    ) -> SOSFilter:
        return cls(design_butter(kind, fs, low, high, order), init=init)

    def _ensure_state(self, lead: tuple[int, ...]) -> None:
        if self._lead is None:
            self._lead = lead
            n = int(np.prod(lead, dtype=np.int64))
            self._zi = np.zeros((n, self.sos.shape[0], 2))
            self._fresh = np.ones(n, dtype=bool)
            self._any_fresh = True

    def push(self, chunk: np.ndarray) -> np.ndarray:
        check_finished(self._finished, "SOSFilter")
        x = as_float_chunk(chunk, self._lead, "SOSFilter")
        self._ensure_state(x.shape[:-1])
        if x.shape[-1] == 0:
            return x.copy()
        x2 = x.reshape(-1, x.shape[-1])
        finite = np.isfinite(x2)
        if not self._any_fresh and finite.all():
            return _run_cascade(self.sos, x2, self._zi).reshape(x.shape)
        return self._push_rows(x2, finite).reshape(x.shape)

    def _push_rows(self, x2: np.ndarray, finite: np.ndarray) -> np.ndarray:
        """Slower path for a chunk where some rows start, restart or hold NaN.

        Rows that are wholly finite are still filtered together in one call; only rows with a
        gap inside this chunk are filtered run by run (gaps are rare events, not a hot path).
        """
        y = np.full_like(x2, np.nan)
        whole = finite.all(axis=1)
        starting = whole & self._fresh
        self._zi[starting] = self._zi_unit[None] * x2[starting, :1, None]
        self._fresh[starting] = False
        rows = np.flatnonzero(whole)
        if rows.size:
            zi = self._zi[rows]
            y[rows] = _run_cascade(self.sos, x2[rows], zi)
            self._zi[rows] = zi
        for row in np.flatnonzero(~whole):
            fin = finite[row]
            edges = np.flatnonzero(np.diff(np.concatenate(([0], fin.view(np.int8), [0]))))
            for a, b in zip(edges[0::2], edges[1::2], strict=True):
                zi = self._zi[row : row + 1]
                if self._fresh[row] or a > 0:
                    zi[...] = self._zi_unit * x2[row, a]
                y[row, a:b] = _run_cascade(self.sos, x2[row : row + 1, a:b], zi)[0]
                self._fresh[row] = False
            if not fin[-1]:
                self._fresh[row] = True
        self._any_fresh = bool(self._fresh.any())
        return y

    def flush(self) -> np.ndarray:
        """IIR filters hold no pending output; returns an empty chunk and closes the stream."""
        check_finished(self._finished, "SOSFilter")
        self._finished = True
        return np.zeros((*(self._lead or ()), 0))

    def snapshot(self) -> Snapshot:
        if self._lead is None:
            return {"started": np.array(False)}
        return {
            "started": np.array(True),
            "lead": np.array(self._lead, dtype=np.int64),
            "zi": self._zi.copy(),
            "fresh": self._fresh.copy(),
        }

    def restore(self, snapshot: Snapshot) -> None:
        if not bool(snapshot["started"]):
            self._lead = self._zi = self._fresh = None
            return
        self._lead = tuple(int(v) for v in snapshot["lead"])
        zi = np.asarray(snapshot["zi"], dtype=np.float64)
        if zi.shape[1:] != (self.sos.shape[0], 2):
            raise ValueError(f"SOSFilter.restore: state shape {zi.shape} does not fit this filter")
        self._zi = zi.copy()
        self._fresh = np.asarray(snapshot["fresh"], dtype=bool).copy()
        self._any_fresh = bool(self._fresh.any())


def reference_sosfilt(sos: np.ndarray, x: np.ndarray, init: InitKind = "steady") -> np.ndarray:
    """Batch reference for ``SOSFilter``: scipy ``sosfilt`` over each finite run of each row."""
    x = np.asarray(x, dtype=np.float64)
    zi_unit = sps.sosfilt_zi(sos) if init == "steady" else np.zeros((sos.shape[0], 2))
    if x.shape[-1] == 0:
        return x.copy()
    x2 = x.reshape(-1, x.shape[-1])
    y = np.full_like(x2, np.nan)
    for row in range(x2.shape[0]):
        fin = np.isfinite(x2[row])
        edges = np.flatnonzero(np.diff(np.concatenate(([0], fin.view(np.int8), [0]))))
        for a, b in zip(edges[0::2], edges[1::2], strict=True):
            y[row, a:b], _ = sps.sosfilt(sos, x2[row, a:b], zi=zi_unit * x2[row, a])
    return y.reshape(x.shape)
