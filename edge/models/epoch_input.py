"""The input check every per-epoch runner shares (``runner`` and ``ulw_numpy`` both use it)."""

from __future__ import annotations

import numpy as np


def check_input(x: np.ndarray, want: list[int]) -> np.ndarray:
    """``x`` as contiguous float32 [batch, *want], or a one-line ValueError."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 3 or list(x.shape[1:]) != list(want):
        raise ValueError(f"model input must be [batch, {want[0]}, {want[1]}], got {x.shape}")
    return x
