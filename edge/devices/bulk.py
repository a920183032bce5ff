"""Many frames decoded at once: the replay path's decoder, vectorised over frames.

A replay hands the engine thousands of frames at a time; decoding them one by one costs
~35 µs each in Python (header unpacking, a dozen checks, small numpy calls). Here the 14-byte
headers of a whole batch are read into one structured array (``parse``), the checks of
``codec.decode`` run as array comparisons (``valid_for``), and the payloads of one stream's
frames are decoded a few numpy calls per group of frames with the same layout
(``decode_payloads``). The arithmetic is ``codec.decode``'s (same integers, same scaling), so
values are bit-identical; a frame that fails a check is left to ``codec.decode``, which gives
the reason, so rejection reasons live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from edge.devices.codec import (
    DELTA_BIT,
    FORMATS,
    HEADER_SIZE,
    MAX_FRAME,
    SENSOR_OFF_BIT,
    WIDTH,
    StreamCodec,
)

HEADER_DTYPE = np.dtype(
    [("code", "u1"), ("flags", "u1"), ("seq", "<u2"), ("t_ns", "<u8"), ("n", "u1"), ("axes", "u1")]
)
assert HEADER_DTYPE.itemsize == HEADER_SIZE
_FLOAT32 = FORMATS["float32"]


@dataclass(frozen=True)
class FrameBatch:
    """Frames joined into one buffer, with each frame's offset, size and header."""

    buffer: np.ndarray  # uint8, every frame back to back
    starts: np.ndarray  # int64 offset of each frame in ``buffer``
    sizes: np.ndarray  # int64 bytes of each frame
    heads: np.ndarray  # HEADER_DTYPE per frame; zeros where a frame is shorter than a header

    def __len__(self) -> int:
        return len(self.sizes)

    @cached_property
    def windows(self) -> np.ndarray:
        """int64 at every byte offset: the 5 bytes from there, little-endian (40 bits hold
        any delta of w ≤ 32 bits after a shift ≤ 7); zeros past the end. Built once per
        batch, shared by its streams."""
        n = len(self.buffer)
        b = np.concatenate([self.buffer, np.zeros(4, np.uint8)]).astype(np.int64)
        word = b[:n].copy()
        for k in range(1, 5):
            word |= b[k : n + k] << (8 * k)
        return word


def parse(frames: Sequence[bytes]) -> FrameBatch:
    """Join ``frames`` and read every header in one gather."""
    sizes = np.fromiter(map(len, frames), np.int64, count=len(frames))
    buffer = np.frombuffer(b"".join(frames), np.uint8)
    starts = np.cumsum(sizes) - sizes
    heads = np.zeros(len(frames), HEADER_DTYPE)
    whole = np.flatnonzero(sizes >= HEADER_SIZE)
    if len(whole):
        raw = buffer[starts[whole, None] + np.arange(HEADER_SIZE)]  # [k, 14], C-contiguous
        heads[whole] = raw.view(HEADER_DTYPE)[:, 0]
    return FrameBatch(buffer, starts, sizes, heads)


def _delta_width(batch: FrameBatch, codec: StreamCodec) -> np.ndarray:
    """The delta bit-width byte of every frame (0 where the frame is too short to hold it)."""
    at = batch.starts + HEADER_SIZE + WIDTH[codec.fmt] * codec.n_axes
    inside = at < batch.starts + batch.sizes
    w = batch.buffer[np.minimum(at, len(batch.buffer) - 1)] if len(batch.buffer) else at * 0
    return np.where(inside, w, 0).astype(np.int64)


def valid_for(batch: FrameBatch, codec: StreamCodec) -> np.ndarray:
    """Frames of ``codec``'s stream that ``codec.decode`` would accept (bool per frame)."""
    h, size = batch.heads, batch.sizes
    body = size - HEADER_SIZE
    fmt, flags = h["flags"] & 0x0F, h["flags"]
    n, a = h["n"].astype(np.int64), codec.n_axes
    ok = (size >= HEADER_SIZE) & (size <= MAX_FRAME) & (h["code"] == codec.code)
    ok &= (fmt == codec.fmt) & ((flags & 0xC0) == 0) & (n >= 1) & (h["axes"] == a)
    delta = (flags & DELTA_BIT) != 0
    width = WIDTH[codec.fmt]
    raw_ok = body == n * a * width
    if codec.fmt == _FLOAT32:
        return ok & ~delta & raw_ok
    w = _delta_width(batch, codec)
    ref = width * a
    delta_ok = (
        (body >= ref + 1) & (w >= 1) & (w <= 32) & (body == ref + 1 + ((n - 1) * a * w + 7) // 8)
    )
    return ok & np.where(delta, delta_ok, raw_ok)


def _ints(rows: np.ndarray, fmt: int, count: int) -> np.ndarray:
    """[k, bytes] little-endian int16/int24 rows → [k, count] int64 (``codec._unpack_ints``)."""
    if fmt == 0:
        return np.ascontiguousarray(rows[:, : 2 * count]).view("<i2").astype(np.int64)
    b = rows[:, : 3 * count].reshape(len(rows), count, 3).astype(np.int64)
    u = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
    return np.where(u >= 1 << 23, u - (1 << 24), u)


def _segments(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ragged segments of ``lengths``: each element's segment and its index within it."""
    seg = np.repeat(np.arange(len(lengths)), lengths)
    return seg, np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)


def _delta_ints(
    batch: FrameBatch, starts: np.ndarray, n: np.ndarray, w: np.ndarray, codec: StreamCodec
) -> np.ndarray:
    """Delta frames (payloads at ``starts``, n samples, width w each, any mix) → [Σn, axes]
    int64 ADC values, in one pass: every delta is read from the 40-bit window at its first
    byte (``FrameBatch.windows``), so frames of different widths and lengths need no grouping."""
    a, fmt = codec.n_axes, codec.fmt
    ref = WIDTH[fmt] * a
    firsts = _ints(batch.buffer[starts[:, None] + np.arange(ref)], fmt, a)  # [k, a]
    counts = (n - 1) * a
    frame, within = _segments(counts)
    width = w[frame]
    bit = within * width
    word = batch.windows[(starts + ref + 1)[frame] + (bit >> 3)]
    u = (word >> (bit & 7)) & ((1 << width) - 1)
    u -= (u >= 1 << (width - 1)) << width  # two's complement sign
    ints = np.empty((int(n.sum()), a), np.int64)
    first_row = np.cumsum(n) - n
    is_first = np.zeros(len(ints), bool)
    is_first[first_row] = True
    ints[first_row] = firsts
    ints[~is_first] = u.reshape(-1, a)
    total = np.cumsum(ints, axis=0)
    before = np.zeros((len(n), a), np.int64)
    before[1:] = total[first_row[1:] - 1]
    return total - np.repeat(before, n, axis=0)  # each frame's own running sum


def decode_payloads(
    batch: FrameBatch, idx: np.ndarray, codec: StreamCodec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Valid frames ``idx`` of one stream → (samples (axes, Σn) float64 in frame order,
    samples per frame, sensor-off per frame); sensor-off frames' samples are NaN."""
    h = batch.heads[idx]
    n = h["n"].astype(np.int64)
    off = (h["flags"] & SENSOR_OFF_BIT) != 0
    delta = (h["flags"] & DELTA_BIT) != 0
    body_start = batch.starts[idx] + HEADER_SIZE
    first = np.cumsum(n) - n
    a, fmt = codec.n_axes, codec.fmt
    out = np.empty((int(n.sum()), a), np.float64)  # sample-major, like the wire
    if delta.any():
        d = np.flatnonzero(delta)
        w = _delta_width(batch, codec)[idx[d]]
        ints = _delta_ints(batch, body_start[d], n[d], w, codec)
        _, within = _segments(n[d])
        out[np.repeat(first[d], n[d]) + within] = ints * codec.scale + codec.offset
    raw = ~delta
    for nn in np.unique(n[raw]) if raw.any() else ():
        sel = np.flatnonzero(raw & (n == nn))
        nn = int(nn)
        rows = batch.buffer[body_start[sel, None] + np.arange(nn * a * WIDTH[fmt])]
        if fmt == _FLOAT32:
            values = rows.view("<f4").reshape(len(sel), nn, a).astype(np.float64)
        else:
            values = _ints(rows, fmt, nn * a).reshape(len(sel), nn, a) * codec.scale + codec.offset
        out[first[sel, None] + np.arange(nn)] = values
    if off.any():
        out[np.repeat(off, n)] = np.nan
    return np.ascontiguousarray(out.T), n, off
