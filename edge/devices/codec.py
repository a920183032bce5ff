"""The SleepEdge open frame format: one module, encoder (used by the simulator) and decoder.

A frame carries one stream's consecutive samples and fits one BLE notification with Data Length
Extension (≤ 244 bytes) or one MQTT message. Little-endian, modelled on the public Polar PMD
framing with a per-stream sequence number added so that loss is detected, not guessed:

    offset  size  field
    0       1     stream code (u8, from the device descriptor)
    1       1     format: bits 0-3 sample format (0 int16, 1 int24, 2 float32),
                  bit 4 delta-compressed, bit 5 sensor off (leads off: samples carry no signal)
    2       2     sequence number (u16, per stream, wraps at 65536)
    4       8     device timestamp of the first sample (u64, ns on the device clock)
    12      1     samples per axis n (u8, ≥ 1)
    13      1     axes a (u8, ≥ 1)
    14      ...   payload, raw: n·a values sample-major (s0a0 s0a1 … s1a0 …)
                  delta (integer formats): the first sample raw (a values), then u8 bit width w
                  (1…32), then (n−1)·a signed w-bit deltas from the previous sample of the same
                  axis, packed LSB-first, zero-padded to a whole byte

Physical value = integer × scale + offset (both from the descriptor). The decoder never raises:
``decode`` returns a ``Frame`` or a ``Rejected`` with a reason from ``REASONS``.

A gateway may batch one device's frames into one message (``bundle``): each frame preceded by
its length (u8; a frame is ≤ 244 bytes). ``unbundle`` splits it back; a bundle cut short keeps
every whole frame before the cut and says why the rest was lost. A gateway serving many devices
may send all their bundles in one message (``gateway``): per device, its id's length (u8), the
id (UTF-8), the bundle's length (u32) and the bundle; ``ungateway`` splits it the same way.

A device ends its session with one end-of-session message (``encode_end``) in the place of a
frame: stream code 0xFE (no stream has it, so an older receiver rejects it as an unknown
stream), version u8 (1), the device time of the session's end (u64 ns), the number of streams
k (u8), then per stream its code (u8) and the sequence number of its last frame (u16).
``decode_end`` reads it back or says why not.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

HEADER = struct.Struct("<BBHQBB")
HEADER_SIZE = HEADER.size  # 14
MAX_FRAME = 244
FORMATS = {"int16": 0, "int24": 1, "float32": 2}
FORMAT_NAMES = {v: k for k, v in FORMATS.items()}
WIDTH = {0: 2, 1: 3, 2: 4}
DELTA_BIT, SENSOR_OFF_BIT = 0x10, 0x20
INT_RANGE = {0: (-(2**15), 2**15 - 1), 1: (-(2**23), 2**23 - 1)}

REASONS = (
    "truncated header",
    "unknown stream",
    "unknown sample format",
    "empty frame",
    "axis count mismatch",
    "format mismatch",
    "bad length",
    "bad delta width",
    "frame too long",
)


END_CODE = 0xFE  # first byte of an end-of-session message
END_VERSION = 1
_END_HEAD = struct.Struct("<BBQB")
_END_ENTRY = struct.Struct("<BH")


@dataclass(frozen=True)
class SessionEnd:
    """Where a device's session ended: device time (ns) and the last sequence number (u16)
    of each stream it sent, by stream code."""

    t_end_ns: int
    last_seq: dict[int, int]


def is_end(data: bytes) -> bool:
    """Whether ``data`` is an end-of-session message rather than a frame."""
    return data[:1] == b"\xfe"


def encode_end(end: SessionEnd) -> bytes:
    """The end-of-session message (≤ 244 bytes: at most 77 streams)."""
    if not 0 <= len(end.last_seq) <= (MAX_FRAME - _END_HEAD.size) // _END_ENTRY.size:
        raise ValueError(f"an end-of-session message holds 0..77 streams, got {len(end.last_seq)}")
    parts = [_END_HEAD.pack(END_CODE, END_VERSION, end.t_end_ns, len(end.last_seq))]
    parts += [_END_ENTRY.pack(code, seq % (1 << 16)) for code, seq in end.last_seq.items()]
    return b"".join(parts)


def decode_end(data: bytes) -> SessionEnd | Rejected:
    """An end-of-session message back, or why it is not one (never raises)."""
    if len(data) < _END_HEAD.size or data[0] != END_CODE:
        return Rejected("bad end of session", f"{len(data)} bytes, no end header", len(data))
    _, version, t_end_ns, k = _END_HEAD.unpack_from(data)
    if version != END_VERSION:
        return Rejected("bad end of session", f"version {version}", len(data))
    if len(data) != _END_HEAD.size + k * _END_ENTRY.size:
        return Rejected("bad end of session", f"{len(data)} bytes for {k} streams", len(data))
    if t_end_ns >= 1 << 62:
        return Rejected("bad end of session", f"end time {t_end_ns} ns", len(data))
    last = dict(_END_ENTRY.iter_unpack(data[_END_HEAD.size :]))
    if len(last) != k:
        return Rejected("bad end of session", "a stream listed twice", len(data))
    return SessionEnd(t_end_ns, last)


@dataclass(frozen=True)
class StreamCodec:
    """What the codec needs to know of one stream (built from its descriptor entry)."""

    name: str
    code: int
    n_axes: int
    sample_format: str
    scale: float
    offset: float = 0.0

    @property
    def fmt(self) -> int:
        return FORMATS[self.sample_format]

    def max_samples(self) -> int:
        """Samples per axis that always fit a raw frame of ≤ 244 bytes."""
        return (MAX_FRAME - HEADER_SIZE) // (WIDTH[self.fmt] * self.n_axes)


@dataclass(frozen=True)
class Frame:
    stream: str
    seq: int
    t_device_ns: int
    samples: np.ndarray  # (axes, n) float64, physical units; NaN when the sensor was off
    sensor_off: bool
    n_bytes: int

    @property
    def n(self) -> int:
        return int(self.samples.shape[-1])


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str
    n_bytes: int


# -- integer payloads ------------------------------------------------------------------------
def _pack_ints(values: np.ndarray, fmt: int) -> bytes:
    v = np.ascontiguousarray(values, dtype="<i4").ravel()
    if fmt == 0:
        return v.astype("<i2").tobytes()
    return v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # int24: low three bytes


def _unpack_ints(buf: bytes, fmt: int, count: int) -> np.ndarray:
    if fmt == 0:
        return np.frombuffer(buf, dtype="<i2", count=count).astype(np.int64)
    b = np.frombuffer(buf, dtype=np.uint8, count=3 * count).reshape(-1, 3).astype(np.int64)
    u = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    return np.where(u >= 1 << 23, u - (1 << 24), u)


def _pack_bits(values: np.ndarray, width: int) -> bytes:
    u = values.astype(np.int64) & ((1 << width) - 1)
    bits = ((u[:, None] >> np.arange(width)) & 1).astype(np.uint8)
    return np.packbits(bits.ravel(), bitorder="little").tobytes()


_BIT_WEIGHTS = {w: (1 << np.arange(w)).astype(np.int64) for w in range(1, 33)}


def _unpack_bits(buf: bytes, width: int, count: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), count=count * width, bitorder="little")
    u = bits.reshape(count, width).dot(_BIT_WEIGHTS[width])
    u[u >= 1 << (width - 1)] -= 1 << width  # two's complement sign
    return u


def quantize(codec: StreamCodec, samples: np.ndarray) -> np.ndarray:
    """Physical samples (axes, n) → the integers the device ADC would send (saturating)."""
    q = np.rint((np.asarray(samples, dtype=np.float64) - codec.offset) / codec.scale)
    lo, hi = INT_RANGE[codec.fmt]
    return np.clip(np.nan_to_num(q), lo, hi).astype(np.int64)


def encode(
    codec: StreamCodec,
    seq: int,
    t_device_ns: int,
    samples: np.ndarray,
    compress: bool = True,
    sensor_off: bool = False,
) -> bytes:
    """Encode (axes, n) physical samples; delta-compressed when that is smaller."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[0] != codec.n_axes:
        raise ValueError(f"{codec.name}: samples must be ({codec.n_axes}, n), got {samples.shape}")
    if codec.fmt == FORMATS["float32"]:
        return encode_ints(codec, seq, t_device_ns, samples, compress, sensor_off)
    return encode_ints(codec, seq, t_device_ns, quantize(codec, samples), compress, sensor_off)


def encode_ints(
    codec: StreamCodec,
    seq: int,
    t_device_ns: int,
    ints: np.ndarray,
    compress: bool = True,
    sensor_off: bool = False,
) -> bytes:
    """Encode (axes, n) ADC integers (``quantize`` output; float32 streams: the values).
    A device quantizes a whole stream once and frames slices of it with this."""
    n = ints.shape[1]
    if not 1 <= n <= 255:
        raise ValueError(f"{codec.name}: a frame holds 1..255 samples per axis, got {n}")
    fmt = codec.fmt
    flags = fmt | (SENSOR_OFF_BIT if sensor_off else 0)
    if fmt == FORMATS["float32"]:
        payload = np.ascontiguousarray(ints.T, dtype="<f4").tobytes()
    else:
        ints = ints.T  # (n, axes), sample-major
        payload = _pack_ints(ints, fmt)
        if compress and n > 1:
            deltas = np.diff(ints, axis=0).ravel()
            mag = np.maximum(deltas, ~deltas).max(initial=0)
            width = max(1, int(mag).bit_length() + 1)
            packed = _pack_ints(ints[:1], fmt) + bytes([width]) + _pack_bits(deltas, width)
            if len(packed) < len(payload):
                payload, flags = packed, flags | DELTA_BIT
    frame = HEADER.pack(codec.code, flags, seq & 0xFFFF, t_device_ns, n, codec.n_axes) + payload
    if len(frame) > MAX_FRAME:
        raise ValueError(f"{codec.name}: frame of {len(frame)} bytes exceeds {MAX_FRAME}")
    return frame


def _reject(reason: str, detail: str, n: int) -> Rejected:
    return Rejected(reason, detail, n)


def decode(codecs: dict[int, StreamCodec], data: bytes) -> Frame | Rejected:
    """Decode one frame against the device's stream table (code → codec). Never raises."""
    data = bytes(data)
    size = len(data)
    if size < HEADER_SIZE:
        return _reject("truncated header", f"{size} bytes < {HEADER_SIZE}", size)
    if size > MAX_FRAME:
        return _reject("frame too long", f"{size} bytes > {MAX_FRAME}", size)
    code, flags, seq, t_ns, n, axes = HEADER.unpack_from(data)
    codec = codecs.get(code)
    if codec is None:
        return _reject("unknown stream", f"stream code {code}", size)
    fmt = flags & 0x0F
    if fmt not in WIDTH or flags & ~0x3F:
        return _reject("unknown sample format", f"format byte 0x{flags:02x}", size)
    if fmt != codec.fmt:
        return _reject(
            "format mismatch",
            f"{FORMAT_NAMES[fmt]} on {codec.sample_format} stream {codec.name!r}",
            size,
        )
    if n == 0:
        return _reject("empty frame", f"stream {codec.name!r}", size)
    if axes != codec.n_axes:
        return _reject(
            "axis count mismatch", f"{axes} axes, {codec.name!r} has {codec.n_axes}", size
        )
    body = data[HEADER_SIZE:]
    width = WIDTH[fmt]
    if flags & DELTA_BIT:
        if fmt == FORMATS["float32"]:
            return _reject("unknown sample format", "delta compression of float32", size)
        ref_len = width * axes
        if len(body) < ref_len + 1:
            return _reject("bad length", f"delta frame body of {len(body)} bytes", size)
        w = body[ref_len]
        if not 1 <= w <= 32:
            return _reject("bad delta width", f"width {w}", size)
        count = (n - 1) * axes
        need = ref_len + 1 + (count * w + 7) // 8
        if len(body) != need:
            return _reject("bad length", f"{len(body)} payload bytes, expected {need}", size)
        ints = np.empty((n, axes), dtype=np.int64)
        ints[0] = [
            int.from_bytes(body[i : i + width], "little", signed=True)
            for i in range(0, ref_len, width)
        ]
        ints[1:] = _unpack_bits(body[ref_len + 1 :], w, count).reshape(n - 1, axes)
        np.cumsum(ints, axis=0, out=ints)
        values = ints.T * codec.scale + codec.offset
    else:
        need = n * axes * width
        if len(body) != need:
            return _reject("bad length", f"{len(body)} payload bytes, expected {need}", size)
        if fmt == FORMATS["float32"]:
            values = np.frombuffer(body, dtype="<f4").reshape(n, axes).T.astype(np.float64)
        else:
            values = (
                _unpack_ints(body, fmt, n * axes).reshape(n, axes).T * codec.scale + codec.offset
            )
    sensor_off = bool(flags & SENSOR_OFF_BIT)
    if sensor_off:
        values = np.full(values.shape, np.nan)
    return Frame(
        codec.name, seq, t_ns, np.ascontiguousarray(values, dtype=np.float64), sensor_off, size
    )


def bundle(frames: list[bytes]) -> bytes:
    """Frames → one message: ``len (u8) + frame`` for each."""
    parts = []
    for f in frames:
        if not 0 < len(f) <= MAX_FRAME:
            raise ValueError(f"a bundled frame is 1..{MAX_FRAME} bytes, got {len(f)}")
        parts += [bytes([len(f)]), f]
    return b"".join(parts)


def unbundle(data: bytes) -> tuple[list[bytes], str | None]:
    """One bundle → its frames, and None, or the whole frames before a defect and the reason
    (a zero length, or a frame running past the end)."""
    frames, at, view = [], 0, memoryview(data)
    while at < len(data):
        size = data[at]
        if size == 0:
            return frames, f"zero frame length at byte {at}"
        if at + 1 + size > len(data):
            return frames, f"frame of {size} bytes at byte {at} runs past the end ({len(data)})"
        frames.append(bytes(view[at + 1 : at + 1 + size]))
        at += 1 + size
    return frames, None


_GATEWAY_ENTRY = struct.Struct("<I")


def gateway(bundles: list[tuple[str, list[bytes]]]) -> bytes:
    """Several devices' frames → one message: ``id length (u8), id, bundle length (u32),
    bundle`` per device."""
    parts = []
    for device_id, frames in bundles:
        name = device_id.encode()
        if not 0 < len(name) < 256:
            raise ValueError(f"a device id is 1..255 bytes, got {device_id!r}")
        body = bundle(frames)
        parts += [bytes([len(name)]), name, _GATEWAY_ENTRY.pack(len(body)), body]
    return b"".join(parts)


def ungateway(data: bytes) -> tuple[list[tuple[str, bytes]], str | None]:
    """One gateway message → ``(device id, bundle bytes)`` per device, and None or the reason
    the rest was lost (the entries before a defect are kept)."""
    entries, at = [], 0
    while at < len(data):
        size = data[at]
        head_end = at + 1 + size + _GATEWAY_ENTRY.size
        if size == 0 or head_end > len(data):
            return entries, f"bad device entry at byte {at}"
        try:
            device_id = data[at + 1 : at + 1 + size].decode()
        except UnicodeDecodeError:
            return entries, f"device id at byte {at} is not UTF-8"
        (length,) = _GATEWAY_ENTRY.unpack_from(data, at + 1 + size)
        if head_end + length > len(data):
            return entries, f"bundle of {device_id!r} runs past the end ({len(data)} bytes)"
        entries.append((device_id, data[head_end : head_end + length]))
        at = head_end + length
    return entries, None
