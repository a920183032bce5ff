"""Parsing and validation of device descriptor files."""

from __future__ import annotations

import tomllib
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from edge.devices.codec import FORMATS, StreamCodec
from edge.ops.steps import Step, parse_steps

SCHEMA = 1
TIMINGS = ("regular", "timestamped")


class DeviceError(ValueError):
    """A descriptor is missing, unreadable or invalid; the message says where and why."""


@dataclass(frozen=True)
class WireSpec:
    """How a stream travels in frames (edge/devices/PROTOCOL.md)."""

    code: int
    sample_format: str
    scale: float
    offset: float
    frame_samples: int


@dataclass(frozen=True)
class StreamSpec:
    name: str
    rate_hz: float
    axes: tuple[str, ...]
    unit: str
    location: str
    timing: str
    wire: WireSpec | None = None
    file_labels: tuple[tuple[str, ...], ...] = ()  # per axis: channel names in recorded files
    from_raw: str | None = None  # how a recorded raw signal becomes this stream ("rms_envelope")

    def labels_for_axis(self, i: int) -> tuple[str, ...]:
        """Names a recorded file may give axis i: the descriptor's, then the defaults
        ``<stream>`` (one axis) or ``<stream>_<axis>``."""
        given = self.file_labels[i] if i < len(self.file_labels) else ()
        default = self.name if self.n_axes == 1 else f"{self.name}_{self.axes[i]}"
        return (*given, default)

    @property
    def n_axes(self) -> int:
        return len(self.axes)

    def codec(self) -> StreamCodec:
        if self.wire is None:
            raise DeviceError(f"stream {self.name!r} has no wire format in its descriptor")
        w = self.wire
        return StreamCodec(self.name, w.code, self.n_axes, w.sample_format, w.scale, w.offset)


@dataclass(frozen=True)
class BleSpec:
    name_prefix: str
    service: str
    control: str
    data: str


@dataclass(frozen=True)
class MqttSpec:
    raw: str  # one frame per message
    bundle: str  # several frames of one device per message (``codec.bundle``)
    gateway: str  # several devices' bundles per message, on the gateway's id (``codec.gateway``)
    stage: str
    status: str

    def topic(self, kind: str, device_id: str, stream: str = "") -> str:
        return getattr(self, kind).format(device_id=device_id, stream=stream)


@dataclass(frozen=True)
class FrameFeature:
    """One slot of a per-frame feature vector: a stream and its chain of steps."""

    stream: StreamSpec
    steps: tuple[Step, ...]

    @property
    def width(self) -> int:
        return self.stream.n_axes * self.steps[-1].bins


@dataclass(frozen=True)
class FrameInputSpec:
    """A model fed one feature vector per frame (e.g. 140 features per second)."""

    name: str
    frame_hz: float
    features: tuple[FrameFeature, ...]

    @property
    def width(self) -> int:
        return sum(f.width for f in self.features)

    def stream_columns(self) -> dict[str, list[int]]:
        """The frame's columns of each stream, in descriptor order."""
        out: dict[str, list[int]] = {}
        start = 0
        for f in self.features:
            out.setdefault(f.stream.name, []).extend(range(start, start + f.width))
            start += f.width
        return out


@dataclass(frozen=True)
class EpochChannel:
    stream: StreamSpec
    steps: tuple[Step, ...]
    epoch_resample: str | None
    absent: str | None = None  # reduced-input rule: "zero", "copy:STREAM" or None (unscored)


@dataclass(frozen=True)
class EpochInputSpec:
    """A model fed one [channels, samples] tensor per epoch (e.g. [4, 3000])."""

    name: str
    rate_hz: float
    epoch_s: float
    channels: tuple[EpochChannel, ...]

    @property
    def epoch_len(self) -> int:
        return int(round(self.rate_hz * self.epoch_s))


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    title: str
    streams: dict[str, StreamSpec]
    inputs: dict[str, FrameInputSpec | EpochInputSpec]
    path: str
    ble: BleSpec | None = None
    mqtt: MqttSpec | None = None

    def codecs(self) -> dict[int, StreamCodec]:
        """The decoder's stream table: wire code → codec."""
        return {s.wire.code: s.codec() for s in self.streams.values() if s.wire is not None}

    def input(self, name: str) -> FrameInputSpec | EpochInputSpec:
        try:
            return self.inputs[name]
        except KeyError:
            raise DeviceError(
                f"device {self.name!r} has no model input {name!r}; it has {sorted(self.inputs)}"
            ) from None


def available_devices() -> list[str]:
    """Names of the descriptors bundled with the package."""
    root = resources.files("edge.devices")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_device(name_or_path: str | Path) -> DeviceProfile:
    """Load a bundled descriptor by name (``"anne"``) or any descriptor file by path."""
    text_path = Path(name_or_path)
    if text_path.suffix == ".toml" or text_path.exists():
        where = str(text_path)
        try:
            raw = text_path.read_bytes()
        except OSError as exc:
            raise DeviceError(f"cannot read device descriptor {where}: {exc.strerror}") from None
    else:
        name = str(name_or_path)
        res = resources.files("edge.devices").joinpath(f"{name}.toml")
        if not res.is_file():
            raise DeviceError(
                f"unknown device {name!r}; known devices: {', '.join(available_devices())}"
            )
        where, raw = f"{name}.toml", res.read_bytes()
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DeviceError(f"{where}: not valid TOML: {exc}") from None
    return _parse(doc, where)


def _need(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in doc:
        raise DeviceError(f"{where}: missing required key {key!r}")
    val = doc[key]
    if not isinstance(val, kind) or isinstance(val, bool):
        raise DeviceError(f"{where}: {key!r} has the wrong type ({type(val).__name__})")
    return val


def _positive(doc: dict[str, Any], key: str, where: str) -> float:
    val = _need(doc, key, (int, float), where)
    if not val > 0:
        raise DeviceError(f"{where}: {key!r} must be a positive number, got {val}")
    return float(val)


def _parse(doc: dict[str, Any], where: str) -> DeviceProfile:
    schema = doc.get("schema")
    if schema != SCHEMA:
        raise DeviceError(f"{where}: unsupported schema {schema!r} (this engine reads {SCHEMA})")
    name = _need(doc, "name", str, where)
    streams: dict[str, StreamSpec] = {}
    for i, s in enumerate(_need(doc, "streams", list, where)):
        loc = f"{where}: streams[{i}]"
        if not isinstance(s, dict):
            raise DeviceError(f"{loc}: must be a table")
        sname = _need(s, "name", str, loc)
        if sname in streams:
            raise DeviceError(f"{loc}: duplicate stream name {sname!r}")
        axes = _need(s, "axes", list, loc)
        if not axes or not all(isinstance(a, str) for a in axes) or len(set(axes)) != len(axes):
            raise DeviceError(f"{loc}: 'axes' must be a non-empty list of distinct names")
        timing = s.get("timing", "regular")
        if timing not in TIMINGS:
            raise DeviceError(f"{loc}: 'timing' must be one of {TIMINGS}, got {timing!r}")
        streams[sname] = StreamSpec(
            sname,
            _positive(s, "rate_hz", loc),
            tuple(axes),
            _need(s, "unit", str, loc),
            str(s.get("location", "")),
            timing,
            _parse_wire(s, len(axes), loc) if "code" in s else None,
            _parse_file_labels(s.get("file_labels", []), len(axes), loc),
            _parse_from_raw(s.get("from_raw"), loc),
        )
    if not streams:
        raise DeviceError(f"{where}: a device needs at least one stream")
    codes = [s.wire.code for s in streams.values() if s.wire is not None]
    if len(set(codes)) != len(codes):
        raise DeviceError(f"{where}: stream codes must be distinct, got {sorted(codes)}")
    inputs: dict[str, FrameInputSpec | EpochInputSpec] = {}
    for iname, spec in (doc.get("inputs") or {}).items():
        loc = f"{where}: inputs.{iname}"
        layout = spec.get("layout")
        if layout == "frames":
            inputs[iname] = _parse_frames(iname, spec, streams, loc)
        elif layout == "epochs":
            inputs[iname] = _parse_epochs(iname, spec, streams, loc)
        else:
            raise DeviceError(f"{loc}: 'layout' must be 'frames' or 'epochs', got {layout!r}")
    ble = _parse_section(doc, "ble", BleSpec, where)
    mqtt = _parse_section(doc, "mqtt", MqttSpec, where)
    if ble is not None:
        for field in ("service", "control", "data"):
            try:
                uuid.UUID(getattr(ble, field))
            except ValueError:
                raise DeviceError(f"{where}: ble.{field} is not a UUID") from None
    return DeviceProfile(name, str(doc.get("title", name)), streams, inputs, where, ble, mqtt)


FROM_RAW = ("rms_envelope",)


def _parse_from_raw(value: Any, loc: str) -> str | None:
    if value is not None and value not in FROM_RAW:
        raise DeviceError(f"{loc}: 'from_raw' must be one of {FROM_RAW}, got {value!r}")
    return value


def _parse_absent(value: Any, streams: dict, loc: str) -> str | None:
    """``absent``: how an epoch input is filled while its stream is absent or off (the model's
    reduced-input rule): ``"zero"`` or ``"copy:STREAM"`` (another channel of the same input)."""
    if value is None or value == "zero":
        return value
    if isinstance(value, str) and value.startswith("copy:") and value[5:] in streams:
        return value
    raise DeviceError(f"{loc}: 'absent' must be 'zero' or 'copy:STREAM', got {value!r}")


def _parse_section(doc: dict[str, Any], key: str, cls: type, where: str):
    raw = doc.get(key)
    if raw is None:
        return None
    loc = f"{where}: [{key}]"
    fields = list(cls.__dataclass_fields__)
    extra = set(raw) - set(fields)
    if extra:
        raise DeviceError(f"{loc}: unknown keys {sorted(extra)}")
    return cls(**{f: _need(raw, f, str, loc) for f in fields})


def _parse_file_labels(raw: Any, n_axes: int, loc: str) -> tuple[tuple[str, ...], ...]:
    ok = (
        isinstance(raw, list)
        and len(raw) in (0, n_axes)
        and all(isinstance(a, list) and all(isinstance(x, str) for x in a) for a in raw)
    )
    if not ok:
        raise DeviceError(f"{loc}: 'file_labels' must be one list of names per axis ({n_axes})")
    return tuple(tuple(a) for a in raw)


def _parse_wire(s: dict[str, Any], n_axes: int, loc: str) -> WireSpec:
    code = _need(s, "code", int, loc)
    if not 0 <= code <= 255:
        raise DeviceError(f"{loc}: 'code' must fit a byte (0-255), got {code}")
    fmt = _need(s, "sample_format", str, loc)
    if fmt not in FORMATS:
        raise DeviceError(f"{loc}: 'sample_format' must be one of {sorted(FORMATS)}, got {fmt!r}")
    scale = _positive(s, "scale", loc)
    offset = float(s.get("offset", 0.0))
    n = _need(s, "frame_samples", int, loc)
    wire = WireSpec(code, fmt, scale, offset, n)
    limit = StreamCodec("", code, n_axes, fmt, scale).max_samples()
    if not 1 <= n <= min(limit, 255):
        raise DeviceError(
            f"{loc}: 'frame_samples' must be 1..{min(limit, 255)} so a raw frame fits 244 bytes"
        )
    return wire


def _stream_of(item: dict[str, Any], streams: dict[str, StreamSpec], loc: str) -> StreamSpec:
    sname = _need(item, "stream", str, loc)
    if sname not in streams:
        raise DeviceError(f"{loc}: unknown stream {sname!r}; streams are {sorted(streams)}")
    return streams[sname]


def _steps(item: dict[str, Any], stream: StreamSpec, loc: str) -> tuple[Step, ...]:
    try:
        return tuple(parse_steps(item.get("steps", []), stream.rate_hz, loc))
    except ValueError as exc:
        raise DeviceError(str(exc)) from None


def _parse_frames(name: str, spec: dict, streams: dict, where: str) -> FrameInputSpec:
    frame_hz = _positive(spec, "frame_hz", where)
    feats = []
    for i, item in enumerate(_need(spec, "features", list, where)):
        loc = f"{where}.features[{i}]"
        stream = _stream_of(item, streams, loc)
        steps = _steps(item, stream, loc)
        if not steps:
            raise DeviceError(f"{loc}: a frame feature needs steps ending at {frame_hz} Hz")
        if stream.timing == "timestamped" and steps[0].op != "grid":
            raise DeviceError(f"{loc}: timestamped stream {stream.name!r} must start with 'grid'")
        if abs(steps[-1].rate_out - frame_hz) > 1e-9:
            raise DeviceError(
                f"{loc}: chain ends at {steps[-1].rate_out} Hz but frames are {frame_hz} Hz"
            )
        feats.append(FrameFeature(stream, steps))
    if not feats:
        raise DeviceError(f"{where}: 'features' is empty")
    return FrameInputSpec(name, frame_hz, tuple(feats))


def _parse_epochs(name: str, spec: dict, streams: dict, where: str) -> EpochInputSpec:
    rate = _positive(spec, "rate_hz", where)
    epoch_s = _positive(spec, "epoch_s", where)
    if abs(rate * epoch_s - round(rate * epoch_s)) > 1e-9:
        raise DeviceError(f"{where}: rate_hz x epoch_s must be a whole number of samples")
    chans = []
    for i, item in enumerate(_need(spec, "channels", list, where)):
        loc = f"{where}.channels[{i}]"
        stream = _stream_of(item, streams, loc)
        if stream.timing != "regular":
            raise DeviceError(f"{loc}: epoch inputs need regular streams, {stream.name!r} is not")
        if stream.n_axes != 1:
            raise DeviceError(f"{loc}: epoch channels must be single-axis streams")
        steps = _steps(item, stream, loc)
        mode = item.get("epoch_resample")
        out_rate = steps[-1].rate_out if steps else stream.rate_hz
        if mode is None:
            if abs(out_rate - rate) > 1e-9:
                raise DeviceError(
                    f"{loc}: stream ends at {out_rate} Hz, model needs {rate} Hz: add a "
                    "'resample' step or epoch_resample = \"fft\""
                )
        elif mode == "fft":
            if abs(out_rate * epoch_s - round(out_rate * epoch_s)) > 1e-9:
                raise DeviceError(f"{loc}: an epoch of this stream is not a whole sample count")
        else:
            raise DeviceError(f"{loc}: epoch_resample must be 'fft' if given, got {mode!r}")
        if any(s.op in ("stft", "grid") for s in steps):
            raise DeviceError(f"{loc}: epoch channels take waveform steps only")
        chans.append(
            EpochChannel(stream, steps, mode, _parse_absent(item.get("absent"), streams, loc))
        )
    if not chans:
        raise DeviceError(f"{where}: 'channels' is empty")
    return EpochInputSpec(name, rate, epoch_s, tuple(chans))
