"""Raw EMG → the 1 Hz RMS envelope Sleep-EDF's SC recordings carry as "EMG submental".

The rule (Sleep-EDF Expanded, PhysioNet description of the SC files: the submental EMG "was
electronically highpass filtered, rectified and low-pass filtered after which the resulting EMG
envelope expressed in uV rms was sampled at 1 Hz"), in its digital form:

1. high-pass: 4th-order Butterworth at ``HIGHPASS_HZ`` (10 Hz; removes movement and ECG
   baseline, as the analogue stage did), causal, state carried across pushes;
2. rectify and low-pass as one step: the root mean square over each whole output period
   (1 s at 1 Hz), i.e. ``sqrt(mean(x_hp**2))`` of the samples ``[k·fs/rate, (k+1)·fs/rate)``.

So a file's raw chin EMG (200 Hz, 256 Hz, even 50 Hz) becomes the stream the PSG models were
trained on. ``reference_envelope`` is the batch twin; ``EmgEnvelope`` streams it chunk by chunk
with the same output (push/flush/snapshot/restore like every operator). The input rate must be
a whole multiple of the output rate and above twice the high-pass corner.
"""

from __future__ import annotations

import numpy as np
import scipy.signal as sps

from edge.ops.base import Snapshot, as_float_chunk, check_finished

HIGHPASS_HZ = 10.0


def _design(fs_in: float, rate_out: float) -> tuple[np.ndarray, int]:
    ratio = fs_in / rate_out
    if abs(ratio - round(ratio)) > 1e-9 or round(ratio) < 1:
        raise ValueError(
            f"an EMG envelope at {rate_out:g} Hz needs a raw rate that is a whole multiple of it "
            f"(got {fs_in:g} Hz)"
        )
    if fs_in <= 2 * HIGHPASS_HZ:
        raise ValueError(
            f"raw EMG at {fs_in:g} Hz is too slow for the {HIGHPASS_HZ:g} Hz high-pass of the "
            "envelope rule"
        )
    sos = sps.butter(4, HIGHPASS_HZ, btype="highpass", fs=fs_in, output="sos")
    return sos, int(round(ratio))


def reference_envelope(x: np.ndarray, fs_in: float, rate_out: float = 1.0) -> np.ndarray:
    """Batch envelope of ``x`` (..., n): the rule of the module docstring over the whole
    signal; a trailing part-period is dropped."""
    sos, block = _design(fs_in, rate_out)
    y = sps.sosfilt(sos, np.asarray(x, dtype=np.float64), axis=-1)
    n = y.shape[-1] // block
    y = y[..., : n * block].reshape(*y.shape[:-1], n, block)
    return np.sqrt(np.mean(y * y, axis=-1))


class EmgEnvelope:
    """Streaming ``reference_envelope``: each push returns the whole periods completed."""

    def __init__(self, fs_in: float, rate_out: float = 1.0) -> None:
        self.fs_in, self.rate_out = float(fs_in), float(rate_out)
        self.sos, self.block = _design(self.fs_in, self.rate_out)
        self._zi: np.ndarray | None = None
        self._tail: np.ndarray | None = None  # filtered samples of the open period
        self._lead: tuple[int, ...] | None = None
        self._finished = False

    def push(self, chunk: np.ndarray) -> np.ndarray:
        check_finished(self._finished, "EmgEnvelope")
        x = as_float_chunk(chunk, self._lead, "EmgEnvelope")
        if self._lead is None:
            self._lead = x.shape[:-1]
            zi_shape = (self.sos.shape[0], *self._lead, 2)
            self._zi = np.zeros(zi_shape)
            self._tail = np.zeros((*self._lead, 0))
        y, self._zi = sps.sosfilt(self.sos, x, axis=-1, zi=self._zi)
        y = np.concatenate([self._tail, y], axis=-1)
        n = y.shape[-1] // self.block
        self._tail = y[..., n * self.block :].copy()
        y = y[..., : n * self.block].reshape(*y.shape[:-1], n, self.block)
        return np.sqrt(np.mean(y * y, axis=-1))

    def flush(self) -> np.ndarray:
        check_finished(self._finished, "EmgEnvelope")
        self._finished = True
        return np.zeros((*(self._lead or ()), 0))  # a part-period is no envelope sample

    def snapshot(self) -> Snapshot:
        if self._lead is None:
            return {"started": np.array(False)}
        return {"started": np.array(True), "zi": self._zi.copy(), "tail": self._tail.copy()}

    def restore(self, snapshot: Snapshot) -> None:
        if not bool(snapshot["started"]):
            return
        self._zi = np.array(snapshot["zi"], dtype=np.float64)
        self._tail = np.array(snapshot["tail"], dtype=np.float64)
        self._lead = self._tail.shape[:-1]
