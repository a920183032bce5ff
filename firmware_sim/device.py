"""A virtual device's firmware: samples on its own clock, frames them, answers its control point.

The device clock runs ``drift_ppm`` fast (or slow) against true time: sample k of a regular
stream is taken at device time k / rate and stamped so; in true time that is
(k / rate) / (1 + drift). Each stream is cut into frames of the descriptor's ``frame_samples``,
numbered with a u16 sequence number, and sent when its last sample is acquired. Frames of all
streams come out merged in true send-time order: ``(t_send_s, stream, seq, bytes)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from edge.devices import DeviceProfile
from edge.devices.codec import FORMATS, SessionEnd, encode_ints, quantize

# Control point commands (one write = [opcode u8][stream code u8]; 0xFF = all streams).
START, STOP = 0x01, 0x02
ALL_STREAMS = 0xFF


@dataclass(frozen=True)
class SentFrame:
    t_send_s: float  # true time the frame left the device
    stream: str
    seq: int  # u16 on the wire; here the unwrapped count from 0
    data: bytes


@dataclass
class VirtualDevice:
    """Frames a recording the way the device firmware would (see module docstring).

    ``signals``: {stream: (axes, n)} in physical units at the stream's nominal rate, or for a
    timestamped stream its samples with true times in ``times`` (seconds). ``sensor_off``:
    {stream: [(start_s, stop_s), ...]} windows where the sensor is detached (leads off): frames
    still flow, flagged, carrying no signal.
    """

    profile: DeviceProfile
    signals: Mapping[str, np.ndarray]
    times: Mapping[str, np.ndarray] = field(default_factory=dict)
    drift_ppm: float = 0.0
    device_epoch_ns: int = 1_700_000_000 * 10**9  # device clock reading at true time 0
    sensor_off: Mapping[str, list[tuple[float, float]]] = field(default_factory=dict)
    compress: bool = True
    battery_percent: int = 87
    streaming: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        unknown = set(self.signals) - set(self.profile.streams)
        if unknown:
            raise ValueError(f"device {self.profile.name!r} has no streams {sorted(unknown)}")
        for name, x in self.signals.items():
            spec = self.profile.streams[name]
            if spec.wire is None:
                raise ValueError(f"stream {name!r} has no wire format")
            if x.ndim != 2 or x.shape[0] != spec.n_axes:
                raise ValueError(f"{name}: signal must be ({spec.n_axes}, n), got {x.shape}")
            if spec.timing == "timestamped" and name not in self.times:
                raise ValueError(f"{name} is timestamped: give its sample times")

    @classmethod
    def from_recording(cls, profile: DeviceProfile, recording, **kw) -> VirtualDevice:
        """Play a ``firmware_sim.recordings.Recording``: regular streams at the device's own
        sample clock, timestamped streams at their recorded times."""
        times = {
            n: t for n, t in recording.times.items() if profile.streams[n].timing == "timestamped"
        }
        return cls(profile, recording.signals, times, **kw)

    @property
    def clock_rate(self) -> float:
        return 1.0 + self.drift_ppm * 1e-6

    def control(self, command: bytes) -> None:
        """Apply a control-point write: start or stop one stream or all of them."""
        if len(command) != 2 or command[0] not in (START, STOP):
            raise ValueError(f"bad control command {command.hex()}")
        by_code = {s.wire.code: n for n, s in self.profile.streams.items() if s.wire}
        if command[1] == ALL_STREAMS:
            names = set(self.signals)
        elif command[1] in by_code and by_code[command[1]] in self.signals:
            names = {by_code[command[1]]}
        else:
            raise ValueError(f"control command for unknown stream code {command[1]}")
        if command[0] == START:
            self.streaming |= names
        else:
            self.streaming -= names

    def _stream_frames(self, name: str) -> list[SentFrame]:
        spec = self.profile.streams[name]
        codec = spec.codec()
        x = self.signals[name]
        per = spec.wire.frame_samples
        n = x.shape[1]
        if spec.timing == "timestamped":
            t_true = np.asarray(self.times[name], dtype=np.float64)
        else:
            t_true = np.arange(n) / spec.rate_hz / self.clock_rate
        t_dev_ns = self.device_epoch_ns + np.rint(t_true * self.clock_rate * 1e9).astype(np.int64)
        off = np.zeros(n, dtype=bool)
        for a, b in self.sensor_off.get(name, []):
            off |= (t_true >= a) & (t_true < b)
        ints = x if codec.fmt == FORMATS["float32"] else quantize(codec, x)  # the ADC, once
        ints = np.where(off[None], 0, ints)  # leads off: nothing but the flag
        frames = []
        for k, s in enumerate(range(0, n, per)):
            e = min(s + per, n)
            data = encode_ints(
                codec, k, int(t_dev_ns[s]), ints[:, s:e], self.compress, bool(off[s:e].any())
            )
            frames.append(SentFrame(float(t_true[e - 1]), name, k, data))
        return frames

    def frames(self) -> Iterator[SentFrame]:
        """All frames of the streams started through the control point, in send-time order
        (streams never started: all of them, as a device configured to stream at power-on)."""
        names = sorted(self.streaming or self.signals)
        every = [f for name in names for f in self._stream_frames(name)]
        every.sort(key=lambda f: (f.t_send_s, f.stream, f.seq))
        return iter(every)

    def session_end(self) -> SessionEnd:
        """Where the session of ``frames()`` ends: the last sequence number of each stream and
        the device time just after the last sample of a regular stream, or at the last sample of a
        timestamped one, whichever is later (the end-of-session message's content)."""
        names = sorted(self.streaming or self.signals)
        last, end_s = {}, 0.0
        for name in names:
            spec = self.profile.streams[name]
            n = self.signals[name].shape[1]
            if n == 0:
                continue
            last[spec.wire.code] = -(-n // spec.wire.frame_samples) - 1
            if spec.timing == "timestamped":
                t = float(self.times[name][-1]) * self.clock_rate  # an instant
            else:
                t = n / spec.rate_hz
            end_s = max(end_s, t)
        return SessionEnd(self.device_epoch_ns + int(round(end_s * 1e9)), last)

    def end_true_s(self) -> float:
        """True time at which the session ends (the device's clock runs ``clock_rate``)."""
        return (self.session_end().t_end_ns - self.device_epoch_ns) / 1e9 / self.clock_rate
