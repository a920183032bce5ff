"""Whole nights resynthesised from the real records in ../shared/data, labels beside them."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.devices import load_device
from firmware_sim.recordings import Recording
from firmware_sim.resynth import cardio, eeg
from firmware_sim.resynth.data import data_root, find_record
from firmware_sim.resynth.mmash import MmashRecord

EEG_SCALE_UV = {"eeg_fpz_cz": 25.0, "eeg_pz_oz": 20.0, "eog": 40.0}  # per night z-score → µV
WALCH_STAGE = {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4}  # sleep_classifiers coding → W N1 N2 N3 REM


@dataclass
class SynthNight:
    """A resynthesised recording, its real stage labels (per 30-s epoch, -1 = unscored) and the
    real per-epoch features it was made from (for fidelity checks and ceilings)."""

    device: str
    name: str
    recording: Recording
    stages: np.ndarray | None
    features: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""


def _seed(name: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(name.encode()), seed])


def sleep_edf_night(
    night: str, seed: int = 0, root: Path | None = None, max_epochs: int | None = None
) -> SynthNight:
    """PSG at 100 Hz (EMG as the 1 Hz envelope) with the night's real band powers per epoch."""
    path = find_record(f"sleep_edf/bandpower_features/{night}.npz", root)
    with np.load(path) as z:
        x, y = z["X"].astype(np.float64), z["y"].astype(np.int8)
    if max_epochs:
        x, y = x[:max_epochs], y[:max_epochs]
    rng = _seed(night, seed)
    signals = {}
    for ch, name in enumerate(("eeg_fpz_cz", "eeg_pz_oz", "eog")):
        signals[name] = eeg.synth_channel(x[:, ch, :5], scale=EEG_SCALE_UV[name], rng=rng)[None]
    emg = cardio.slow_walk(x.shape[0] * 30, 5.0, 0.4, 1800.0, rng)  # generic envelope, µV
    signals["emg"] = np.abs(emg)[None]
    rec = Recording(
        signals,
        {k: np.arange(v.shape[1]) / (1.0 if k == "emg" else 100.0) for k, v in signals.items()},
        f"synth:sleep-edf/{night}",
    )
    return SynthNight("psg", night, rec, y, {"bandpower": x}, str(path))


def walch_night(
    subject: str, seed: int = 0, root: Path | None = None, max_epochs: int | None = None
) -> SynthNight:
    """ANNE streams with the subject's real per-epoch heart rate and activity (Walch)."""
    path = find_record(f"sleep_accel_walch/features/{subject}.npz", root)
    with np.load(path) as z:
        hr, count, t_h, y = (z[k].astype(np.float64) for k in ("hr", "count", "time", "y"))
    epoch = np.rint(t_h * 3600 / 30).astype(np.int64)
    epoch -= epoch[0]
    if max_epochs:
        keep = epoch < max_epochs
        hr, count, epoch, y = hr[keep], count[keep], epoch[keep], y[keep]
    n_ep = int(epoch[-1]) + 1
    stages = np.full(n_ep, -1, dtype=np.int8)
    stages[epoch] = [WALCH_STAGE[int(v)] for v in y]
    duration = n_ep * 30.0
    centres = epoch * 30.0 + 15.0
    z_hr = (hr - hr.mean()) / (hr.std() or 1.0)  # night-level statistics, not per stage
    bpm = np.clip(62.0 + 7.0 * z_hr, 40.0, 120.0)
    seconds = np.arange(int(duration)) + 0.5
    hr_s = np.interp(seconds, centres, bpm)
    act_s = np.maximum(np.interp(seconds, centres, count), 0.0)
    rng = _seed(subject, seed)
    beats = cardio.beats_from_hr(hr_s, duration)
    signals, times = cardio.anne_signals(beats, act_s, duration, load_device("anne"), rng)
    feats = {"epoch": epoch, "bpm": bpm, "count": count, "hr": hr}
    return SynthNight(
        "anne",
        subject,
        Recording(signals, times, f"synth:walch/{subject}"),
        stages,
        feats,
        str(path),
    )


def mmash_day(
    user: str,
    seed: int = 0,
    root: Path | None = None,
    hours: float | None = None,
    before_bed_h: float = 0.0,
    after_bed_h: float | None = None,
) -> SynthNight:
    """ANNE streams from a MMASH user's real beat-to-beat intervals (anchored on the wall
    clock, holes filled: ``mmash.anchored_beats``) and 1-s wrist activity, from
    ``before_bed_h`` before their first sleep period (or the recording's start) to
    ``after_bed_h`` after the last (default: the recording's end), at most ``hours``. No
    stages (MMASH has none); ``features["asleep"]`` holds the actigraphy sleep periods per 30-s
    epoch (1 asleep, 0 awake, -1 unknown), with the real per-epoch heart rate and activity."""
    base = (root or data_root()) / "mmash" / user
    if not base.exists():
        raise FileNotFoundError(f"no MMASH user {user!r} at {base}")
    record = MmashRecord.read(base)
    start, end = record.window(before_bed_h, after_bed_h)
    duration = float(int(end - start) if not hours else min(int(end - start), int(hours * 3600)))
    beats = record.beats - start
    beats = beats[(beats > 0) & (beats < duration)]
    act_s = np.interp(np.arange(int(duration)) + 0.5, record.activity_t - start, record.activity)
    rng = _seed(user, seed)
    signals, times = cardio.anne_signals(beats, act_s, duration, load_device("anne"), rng)
    n_epochs = int(duration) // 30
    features = {"beats": beats, "activity": act_s} | record.epoch_features(start, n_epochs)
    features["asleep"] = record.asleep_per_epoch(start, n_epochs)
    return SynthNight(
        "anne",
        user,
        Recording(signals, times, f"synth:mmash/{user}"),
        None,
        features,
        str(base),
    )
