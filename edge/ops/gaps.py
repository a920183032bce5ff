"""Short gaps inside an epoch: linear interpolation over NaNs (DESIGN §1, PixleepFlow's rule)."""

from __future__ import annotations

import numpy as np


def interpolate_gaps(x: np.ndarray, dtype=np.float64) -> np.ndarray:
    """A copy with NaNs along the last axis replaced by linear interpolation between the valid
    samples around them (ends held at the nearest valid sample, never extrapolated); rows with
    no valid sample stay NaN. Only rows with a gap are visited."""
    out = np.array(x, dtype=dtype, copy=True, order="C")  # reshape below must be a view
    flat = out.reshape(-1, out.shape[-1])
    nan = np.isnan(flat)
    t = np.arange(flat.shape[-1])
    for i in np.flatnonzero(nan.any(axis=-1) & ~nan.all(axis=-1)):
        bad = nan[i]
        flat[i, bad] = np.interp(t[bad], t[~bad], flat[i, ~bad])
    return out
