"""Recorded files a virtual device can play: EDF/EDF+ (edfio), per-stream CSV, NPZ.

Channels are matched to the device's streams by the descriptor's ``file_labels`` (case and
surrounding spaces ignored), so a Sleep-EDF PSG or an ANNE export plays on the matching profile
without code; ``--channels``/``--montage`` (``firmware_sim.channel_map``) name other labels. A
channel at another rate is resampled in the stream by edge's ``Resampler``, or turned into the
EMG envelope (``conform``); ``open_recording`` is the library entry point. Formats:

- EDF/EDF+: one signal per stream axis, physical values as edfio reads them; a Sleep-EDF PSG
  file brings its hypnogram (``SC4001E0-PSG.edf`` → ``SC4001EC-Hypnogram.edf`` beside it).
- CSV directory: ``<stream>.csv`` per stream, a header row, first column the sample time in
  seconds (``time_s``), then one column per axis (ANNE exports are laid out this way).
- NPZ: ``<stream>`` arrays shaped (axes, n), ``<stream>__times`` for timestamped streams, and
  optionally ``<stream>__rate`` (Hz) for a regular stream recorded at another rate.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.devices import DeviceProfile
from edge.devices.profile import StreamSpec

SCORING_EPOCH_S = 30  # a hypnogram's epoch (AASM, R&K): every recording's stages are per 30 s


class RecordingError(ValueError):
    """A file cannot be played on this device; the message says which file and why."""


@dataclass
class Recording:
    signals: dict[str, np.ndarray]  # stream -> (axes, n), physical units
    times: dict[str, np.ndarray] = field(default_factory=dict)  # timestamped streams only
    source: str = ""
    stages: np.ndarray | None = None  # per 30-s epoch from the start, -1 = unscored
    channels: dict[str, str] = field(default_factory=dict)  # stream -> file label(s) used
    warnings: list[str] = field(default_factory=list)  # one line each: what was tolerated
    hypnogram: Path | None = None  # where ``stages`` came from

    @property
    def duration_s(self) -> float:
        return max((t[-1] for t in self.times.values() if t.size), default=0.0)


# Sleep-EDF (R&K) hypnogram annotations → AASM codes (W 0, N1 1, N2 2, N3 3, REM 4, -1)
HYPNOGRAM_CODES = {
    "Sleep stage W": 0,
    "Sleep stage 1": 1,
    "Sleep stage 2": 2,
    "Sleep stage 3": 3,
    "Sleep stage 4": 3,
    "Sleep stage R": 4,
    "Sleep stage ?": -1,
    "Movement time": -1,
}


def read_hypnogram(path: Path, epoch_s: float = SCORING_EPOCH_S) -> np.ndarray:
    """Stage codes per epoch from an EDF+ hypnogram (annotations: onset, duration, text);
    epochs no annotation covers are -1. R&K stages 3 and 4 merge into N3."""
    import edfio

    try:
        edf = edfio.read_edf(path)
    except Exception as exc:
        raise RecordingError(f"{path}: not a readable EDF+ hypnogram ({exc})") from None
    spans = [(a.onset, a.duration or 0.0, a.text.strip()) for a in edf.annotations]
    unknown = {t for _, _, t in spans if t not in HYPNOGRAM_CODES}
    if unknown:
        raise RecordingError(f"{path}: unknown hypnogram annotations {sorted(unknown)}")
    end = max((o + d for o, d, _ in spans), default=0.0)
    stages = np.full(int(np.ceil(end / epoch_s)), -1, dtype=np.int8)
    for onset, duration, text in spans:
        a, b = int(round(onset / epoch_s)), int(round((onset + duration) / epoch_s))
        stages[a:b] = HYPNOGRAM_CODES[text]
    return stages


def find_hypnogram(psg: Path) -> Path | None:
    """The scoring beside a recording, where the naming makes it obvious: Sleep-EDF
    (``SC4001E0-PSG.edf`` → ``SC4001EC-Hypnogram.edf``), DREAMS (``excerpt3.edf`` →
    ``Hypnogram_excerpt3.txt``), NSRR (``NAME.edf`` → ``NAME-nsrr.xml`` / ``NAME-profusion.xml``)
    and plain siblings ``NAME.hypnogram.{csv,tsv,txt,xml,edf}`` / ``NAME-hypnogram.*``."""
    d, stem = psg.parent, psg.stem
    names = [f"Hypnogram_{stem}.txt", f"{stem}-nsrr.xml", f"{stem}-profusion.xml"]
    names += [f"{stem}{sep}hypnogram.{ext}" for sep in (".", "-", "_")
              for ext in ("csv", "tsv", "txt", "xml", "edf")]  # fmt: skip
    for name in names:
        if (d / name).is_file():
            return d / name
    matches = sorted(d.glob(f"{psg.name[:6]}*-Hypnogram.edf")) if len(psg.name) > 6 else []
    return matches[0] if matches else None


def _check_rate(profile: DeviceProfile, stream: str, rate: float, where: str) -> None:
    spec = profile.streams[stream]
    if spec.timing == "regular" and abs(rate - spec.rate_hz) > 1e-6 * spec.rate_hz:
        raise RecordingError(
            f"{where}: {stream!r} is recorded at {rate:g} Hz but device {profile.name!r} "
            f"samples it at {spec.rate_hz:g} Hz"
        )


def conform(x: np.ndarray, fs: float, spec: StreamSpec, where: str) -> np.ndarray:
    """One file channel at ``fs`` as the stream ``spec`` carries it: as is at the stream's rate;
    a raw signal for an envelope stream (``from_raw = "rms_envelope"``, the PSG chin EMG) through
    ``edge.ops.envelope.EmgEnvelope``; any other regular waveform through edge's streaming
    ``Resampler`` (rational factor, anti-aliased), pushed a second at a time."""
    rate = spec.rate_hz
    if abs(fs - rate) <= 1e-6 * rate:
        return x
    if spec.timing != "regular":
        raise RecordingError(f"{where}: {spec.name!r} is timestamped; it cannot be resampled")
    try:
        if spec.from_raw == "rms_envelope" and fs > rate:
            from edge.ops.envelope import EmgEnvelope

            op = EmgEnvelope(fs, rate)
        else:
            from edge.ops.resample import Resampler

            op = Resampler(fs, rate)
    except ValueError as exc:
        raise RecordingError(f"{where}: {spec.name!r} at {fs:g} Hz: {exc}") from None
    step = max(1, int(round(fs)))
    parts = [op.push(x[i : i + step]) for i in range(0, x.size, step)]
    parts.append(op.flush())
    return np.concatenate(parts)


def read_edf(
    path: Path,
    profile: DeviceProfile,
    channels: dict[str, str] | None = None,
    montage: str | None = None,
) -> Recording:
    """An EDF/EDF+/BDF file's channels mapped onto ``profile``'s streams (``channel_map``), each
    brought to its stream's rate (``conform``); the file is read tolerantly (``edf_read``)."""
    from firmware_sim.channel_map import resolve_channels
    from firmware_sim.edf_read import EdfReadError, read_signals

    try:
        edf = read_signals(path)
    except EdfReadError as exc:
        raise RecordingError(str(exc)) from None
    try:
        mapping = resolve_channels(edf.labels, profile, str(path), channels, montage)
    except ValueError as exc:
        raise RecordingError(str(exc)) from None
    signals: dict[str, np.ndarray] = {}
    used: dict[str, str] = {}
    for name, idx in mapping.items():
        spec = profile.streams[name]
        axes = [conform(edf.data(i), edf.rates[i], spec, str(path)) for i in idx]
        n = min(a.size for a in axes)
        signals[name] = np.stack([a[:n] for a in axes])
        used[name] = "+".join(edf.labels[i] for i in idx)
    hyp = find_hypnogram(path)
    stages = None
    if hyp is not None:
        from firmware_sim.hypnograms import HypnogramError, read_stages

        try:
            stages = read_stages(hyp)
        except HypnogramError as exc:
            edf.warnings.append(f"hypnogram {hyp.name} not used: {exc}")
    elif edf.annotations:  # EDF+ scoring inside the recording itself
        from firmware_sim.hypnograms import stages_in_annotations

        stages = stages_in_annotations(edf.annotations)
        hyp = path if stages is not None else None
    rec = Recording(signals, {}, str(path), stages, used, list(edf.warnings), hyp)
    _add_regular_times(rec, profile)
    return rec


def read_csv_dir(path: Path, profile: DeviceProfile) -> Recording:
    signals, times = {}, {}
    for name, spec in profile.streams.items():
        f = path / f"{name}.csv"
        if not f.exists():
            continue
        try:
            table = np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2)
        except ValueError as exc:
            raise RecordingError(f"{f}: not a numeric CSV with a header row ({exc})") from None
        if table.shape[1] != 1 + spec.n_axes:
            raise RecordingError(
                f"{f}: expected time + {spec.n_axes} columns, got {table.shape[1]}"
            )
        t = table[:, 0]
        if t.size > 1 and np.any(np.diff(t) <= 0):
            raise RecordingError(f"{f}: times must be strictly increasing")
        x = table[:, 1:].T.copy()
        if spec.timing == "regular" and t.size > 1:
            rate = (t.size - 1) / (t[-1] - t[0])
            whole = round(rate)
            if whole >= 1 and abs(rate - whole) <= 1e-3 * rate and whole != spec.rate_hz:
                # another whole-Hz rate: resampled (or the EMG rule) like an EDF channel
                x = np.stack([conform(a, float(whole), spec, str(f)) for a in x])
                t = t[0] + np.arange(x.shape[1]) / spec.rate_hz
            else:
                _check_rate(profile, name, rate, str(f))
        signals[name] = x
        times[name] = t
    if not signals:
        raise RecordingError(
            f"{path}: no <stream>.csv for device {profile.name!r} "
            f"(streams: {sorted(profile.streams)})"
        )
    return Recording(signals, times, str(path))


def read_npz(path: Path, profile: DeviceProfile) -> Recording:
    try:
        z = np.load(path)
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{path}: not a readable NPZ file ({exc})") from None
    signals, times = {}, {}
    with z:
        for name, spec in profile.streams.items():
            if name not in z.files:
                continue
            x = np.asarray(z[name], dtype=np.float64)
            if x.ndim == 1 and spec.n_axes == 1:
                x = x[None]
            if x.ndim != 2 or x.shape[0] != spec.n_axes:
                raise RecordingError(f"{path}: {name!r} must be ({spec.n_axes}, n), got {x.shape}")
            if f"{name}__rate" in z.files and spec.timing == "regular":
                # recorded at another rate: resampled (or the EMG rule) like an EDF channel
                fs = float(np.asarray(z[f"{name}__rate"], dtype=np.float64).reshape(-1)[0])
                if not np.isfinite(fs) or fs <= 0:
                    raise RecordingError(f"{path}: {name}__rate must be a positive rate in Hz")
                x = np.stack([conform(a, fs, spec, str(path)) for a in x])
            signals[name] = x
            if f"{name}__times" in z.files:
                times[name] = np.asarray(z[f"{name}__times"], dtype=np.float64)
            elif spec.timing == "timestamped":
                raise RecordingError(f"{path}: timestamped stream {name!r} needs {name}__times")
    if not signals:
        raise RecordingError(f"{path}: no array named after a stream of {profile.name!r}")
    rec = Recording(signals, times, str(path))
    _add_regular_times(rec, profile)
    return rec


def _add_regular_times(rec: Recording, profile: DeviceProfile) -> None:
    for name, x in rec.signals.items():
        if name not in rec.times:
            rec.times[name] = np.arange(x.shape[1]) / profile.streams[name].rate_hz


def first_seconds(recording: Recording, seconds: float, profile: DeviceProfile) -> Recording:
    """The first ``seconds`` of a recording, rounded up to whole 30-s epochs."""
    seconds = SCORING_EPOCH_S * math.ceil(seconds / SCORING_EPOCH_S)
    signals, times = {}, {}
    for name, x in recording.signals.items():
        t = recording.times.get(name)
        n = int(seconds * profile.streams[name].rate_hz) if t is None else int((t < seconds).sum())
        signals[name] = x[..., :n]
        if t is not None:
            times[name] = t[:n]
    stages = (
        None if recording.stages is None else recording.stages[: int(seconds // SCORING_EPOCH_S)]
    )
    return dataclasses.replace(recording, signals=signals, times=times, stages=stages)


def open_recording(
    path: str | Path,
    device: str | DeviceProfile,
    channels: dict[str, str] | str | None = None,
    montage: str | None = None,
    hypnogram: str | Path | None = None,
) -> Recording:
    """A recording from any lab as ``device`` streams it: the library face of ``edge-run
    --source replay --file F --device D [--channels ...] [--montage ...] [--hypnogram H]``.

    ``channels`` maps streams to file labels (a dict or the ``STREAM=LABEL,...`` text),
    ``montage`` names a preset of ``firmware_sim.channel_map.MONTAGES``; channels at another
    rate are resampled (waveforms) or turned into the EMG envelope (``conform``); streams the
    file lacks are absent. ``hypnogram`` (else a sibling found by ``find_hypnogram``) gives
    ``stages`` per 30-s epoch. ``RecordingError``: one line saying what is wrong.
    """
    from edge.devices import DeviceError, load_device
    from firmware_sim.channel_map import parse_channels

    try:
        profile = device if isinstance(device, DeviceProfile) else load_device(device)
        if isinstance(channels, str):
            channels = parse_channels(channels)
    except (DeviceError, ValueError) as exc:
        raise RecordingError(str(exc)) from None
    rec = load_recording(path, profile, channels, montage)
    if hypnogram is not None:
        from firmware_sim.hypnograms import HypnogramError, read_stages

        try:
            rec.stages, rec.hypnogram = read_stages(Path(hypnogram)), Path(hypnogram)
        except HypnogramError as exc:
            raise RecordingError(str(exc)) from None
    return rec


def load_recording(
    path: str | Path,
    profile: DeviceProfile,
    channels: dict[str, str] | None = None,
    montage: str | None = None,
) -> Recording:
    """Read any supported recording for ``profile``; ``RecordingError`` says what is wrong.
    ``channels``/``montage`` (EDF only) as in ``open_recording``."""
    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file or directory")
    if p.is_dir():
        return read_csv_dir(p, profile)
    suffix = p.suffix.lower()
    if suffix in (".edf", ".bdf", ".rec"):
        return read_edf(p, profile, channels, montage)
    if channels or montage:
        raise RecordingError(f"{p}: --channels/--montage apply to EDF/BDF files only")
    if suffix == ".npz":
        return read_npz(p, profile)
    raise RecordingError(f"{p}: unknown recording type (EDF, a CSV directory or NPZ)")
