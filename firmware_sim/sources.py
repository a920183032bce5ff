"""What a virtual device plays, named as on the command line: a recorded file, or a night
resynthesised from a real record (``synth:walch/SUBJECT``, ``synth:sleep-edf/NIGHT``,
``synth:mmash/USER``)."""

from __future__ import annotations

import numpy as np

from edge.devices import DeviceProfile
from firmware_sim.recordings import Recording, RecordingError, first_seconds, open_recording
from firmware_sim.resynth import SynthNight, mmash_day, sleep_edf_night, walch_night

DEVICE_OF = {"walch": "anne", "mmash": "anne", "sleep-edf": "psg"}


class SourceError(ValueError):
    """A source spec that cannot be played on this device; the message says why."""


def synth_night(
    spec: str, profile: DeviceProfile, seed: int = 0, duration_s: float | None = None
) -> SynthNight:
    """``walch/SUBJECT``, ``sleep-edf/NIGHT`` or ``mmash/USER`` (with or without ``synth:``)."""
    kind, _, name = spec.removeprefix("synth:").partition("/")
    if kind not in DEVICE_OF or not name:
        raise SourceError(
            f"unknown synth source {spec!r}: use walch/SUBJECT, sleep-edf/NIGHT or mmash/USER"
        )
    if DEVICE_OF[kind] != profile.name:
        raise SourceError(f"{kind} nights play on device {DEVICE_OF[kind]!r}, not {profile.name!r}")
    epochs = None if duration_s is None else max(1, int(np.ceil(duration_s / 30)))
    try:
        if kind == "walch":
            return walch_night(name, seed, max_epochs=epochs)
        if kind == "sleep-edf":
            return sleep_edf_night(name, seed, max_epochs=epochs)
        return mmash_day(name, seed, hours=None if duration_s is None else duration_s / 3600)
    except FileNotFoundError as exc:
        raise SourceError(str(exc)) from None


def open_source(
    spec: str,
    profile: DeviceProfile,
    seed: int = 0,
    duration_s: float | None = None,
    channels: str | None = None,
    montage: str | None = None,
) -> tuple[Recording, np.ndarray | None]:
    """A recording to play and its stage labels (None when the source has none); ``channels``
    (``STREAM=LABEL,...``) and ``montage`` map a file's channels as in ``open_recording``."""
    if spec.startswith("synth:"):
        if channels or montage:
            raise SourceError("--channels/--montage apply to recorded files, not synth: nights")
        night = synth_night(spec, profile, seed, duration_s)
        return night.recording, night.stages
    try:
        rec = open_recording(spec, profile, channels, montage)
        if duration_s is not None:
            rec = first_seconds(rec, duration_s, profile)
        return rec, rec.stages
    except RecordingError as exc:
        raise SourceError(str(exc)) from None
