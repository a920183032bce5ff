"""Deterministic numpy renderers: MIS-LSTM per-channel block images and 10-minute event windows.

A 4-hour block of C minute channels becomes 2C images of ROWS × COLS pixels (ROWS × COLS =
240, one pixel per minute, row-major in time): for each channel its value scaled to [0, 1] (a
fixed range per channel, log for counts, clipped; unknown = 0) and its validity (1 where the
minute is known). Discrete events in the block become (E, 24) windows of 10 minutes (mean of the
per-minute event values; unknown = 0). Training and the runtime render with these functions.
"""

from __future__ import annotations

import numpy as np

from edge.lifelog.ops import BLOCK_MINUTES, reference_bins

ROWS, COLS = 12, 20
EVENT_WINDOW = 10
BLOCKS_PER_DAY = 6
# per minute channel: (transform, upper end of the range) — the lower end is 0
CHANNEL_SCALES: dict[str, tuple[str, float]] = {
    "steps": ("log1p", 200.0),
    "in_bed": ("linear", 1.0),
    "asleep": ("linear", 1.0),
    "heart_rate": ("linear", 200.0),
    "activity": ("log1p", 1000.0),
}


def scale_channels(x: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
    """(C, n) raw minute values → [0, 1] per channel's fixed scale; NaN stays NaN."""
    out = np.empty(x.shape, np.float64)
    for c, name in enumerate(channels):
        kind, hi = CHANNEL_SCALES[name]
        v = np.asarray(x[c], np.float64)
        if kind == "log1p":
            v = np.log1p(np.maximum(v, 0)) / np.log1p(hi)
        else:
            v = v / hi
        out[c] = np.clip(v, 0.0, 1.0)
    return out


def render_block(block: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
    """(C, 240) raw minutes → (2C, ROWS, COLS) float32: scaled values then validity masks."""
    if block.shape != (len(channels), BLOCK_MINUTES):
        raise ValueError(
            f"render_block: expected {(len(channels), BLOCK_MINUTES)}, got {block.shape}"
        )
    v = scale_channels(block, channels)
    valid = ~np.isnan(v)
    img = np.concatenate([np.where(valid, v, 0.0), valid.astype(np.float64)])
    return img.reshape(2 * len(channels), ROWS, COLS).astype(np.float32)


def event_windows(events: np.ndarray) -> np.ndarray:
    """(E, 240·k) per-minute event values → (E, 24·k) float32 10-minute means (unknown = 0)."""
    w = reference_bins(events, EVENT_WINDOW, "mean")
    return np.nan_to_num(w, nan=0.0).astype(np.float32)


def render_day(minutes: np.ndarray, channels: tuple[str, ...]) -> np.ndarray:
    """(C, 1440) → (6, 2C, ROWS, COLS): the day's six block images."""
    blocks = minutes.reshape(len(channels), BLOCKS_PER_DAY, BLOCK_MINUTES).transpose(1, 0, 2)
    return np.stack([render_block(b, channels) for b in blocks])


def day_image(images: np.ndarray) -> np.ndarray:
    """(6, 2C, ROWS, COLS) → (2C·ROWS, 6·COLS) one picture of the day (blocks left to right)."""
    b, c, r, k = images.shape
    return images.transpose(1, 2, 0, 3).reshape(c * r, b * k)
