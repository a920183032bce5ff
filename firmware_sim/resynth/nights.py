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


def _read_csv_gz(path: Path) -> dict[str, list[str]]:
    """Columns of one of MMASH's gzip'd CSV files (first column is an unnamed index)."""
    import csv
    import gzip

    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    return {name: [r[i] for r in rows[1:]] for i, name in enumerate(header) if name}


def _clock_s(days: list[str], clock: list[str]) -> np.ndarray:
    """'day' (1, 2, …) and 'hh:mm[:ss]' columns → seconds from day 1, 00:00."""
    out = np.empty(len(clock))
    for i, (d, c) in enumerate(zip(days, clock, strict=True)):
        parts = [float(p) for p in c.split(":")] + [0.0]
        out[i] = 86400.0 * (float(d) - 1) + 3600 * parts[0] + 60 * parts[1] + parts[2]
    return out


def mmash_day(
    user: str, seed: int = 0, root: Path | None = None, hours: float | None = None
) -> SynthNight:
    """ANNE streams from a MMASH user's real RR intervals and 1-s wrist activity, from the
    start of their first sleep period (or of the recording). No stages: MMASH has none."""
    base = (root or data_root()) / "mmash" / user
    if not base.exists():
        raise FileNotFoundError(f"no MMASH user {user!r} at {base}")
    rr = _read_csv_gz(base / "RR.csv.gz")
    act = _read_csv_gz(base / "Actigraph.csv.gz")
    t_act = _clock_s(act["day"], act["time"])
    start = t_act[0]
    sleep = _read_csv_gz(base / "sleep.csv.gz")
    if sleep.get("In Bed Time"):
        start = _clock_s(sleep["In Bed Date"][:1], sleep["In Bed Time"][:1])[0]
    ibi = np.array(rr["ibi_s"], dtype=np.float64)
    beats = np.cumsum(ibi) - ibi[0] + _clock_s(rr["day"][:1], rr["time"][:1])[0] - start
    end = min(beats[-1], t_act[-1] - start)
    if hours:
        end = min(end, hours * 3600.0)
    beats = beats[(beats > 0) & (beats < end)]
    vm = np.array(act["Vector Magnitude"], dtype=np.float64)
    act_s = np.interp(np.arange(int(end)) + 0.5, t_act - start, vm) / 10.0
    rng = _seed(user, seed)
    signals, times = cardio.anne_signals(beats, act_s, float(int(end)), load_device("anne"), rng)
    return SynthNight(
        "anne",
        user,
        Recording(signals, times, f"synth:mmash/{user}"),
        None,
        {"beats": beats, "activity": act_s},
        str(base),
    )
