"""ANNE nights → causal-Mamba inputs: X [T, 140] float32 (one row per second) and y [T] int8
(the 30-s stage of each second, W N1 N2 N3 REM = 0..4, -1 unscored).

Every source goes through the runtime's own frame chain (``reference_frame_features`` of the
anne descriptor's ``mamba`` input), so training sees exactly what ``edge-run --device anne``
feeds the model. Sources:

- ``resynth_walch(subject)``: ANNE streams resynthesised from a Walch subject's real per-epoch
  heart rate and activity (DESIGN §3), with the real PSG stages;
- ``resynth_mmash(user)``: ANNE streams resynthesised from a MMASH user's real beat-to-beat
  intervals and wrist activity, from 4 h before bed to 2 h after getting up, labelled wake /
  asleep by the actigraphy sleep periods (``kind="wake_sleep"``: no stages, so training scores
  only P(W) against P(any sleep stage) there);
- ``anne_export(path)``: a real ANNE recording (EDF/EDF+ or a CSV directory laid out as the
  descriptor's ``file_labels`` say) with its hypnogram beside it (``<stem>-hypnogram.edf``,
  EDF+ ``Sleep stage …`` annotations, or ``<stem>-hypnogram.csv``, one stage per 30-s epoch) —
  anyone with raw ANNE nights retrains with one command.

Class maps fold the five stages into 4 (W, light = N1+N2, deep = N3, REM) or 3 (W, NREM, REM).
Normalisation is causal: fixed per-feature statistics from the training nights (``FeatureStats``,
stored in the manifest), missing values (a sensor absent or dropped) become 0 after it, which is
also how modality dropout hides a sensor in training.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.devices import load_device
from edge.features import reference_frame_features
from firmware_sim.recordings import SCORING_EPOCH_S as EPOCH_S
from firmware_sim.recordings import Recording, load_recording, read_hypnogram

ANNE = load_device("anne")
SPEC = ANNE.input("mamba")

CLASS_NAMES = {
    5: ("W", "N1", "N2", "N3", "REM"),
    4: ("W", "light", "deep", "REM"),
    3: ("W", "NREM", "REM"),
}
CLASS_MAPS = {5: (0, 1, 2, 3, 4), 4: (0, 1, 1, 2, 3), 3: (0, 1, 1, 1, 2)}
# ablations and modality dropout work per stream (a sensor group); a stream's feature columns
# follow the spec. Any stream may be missing; a second is staged when one of STAGING_STREAMS
# is there (the temperatures alone carry no staging information).
DROPPABLE = ("ecg", "ppg", "acc", "temp_chest", "temp_finger")
STAGING_STREAMS = ("ecg", "ppg", "acc")
SENSOR_SETS = {
    "full": ("temp_chest", "temp_finger", "ecg", "ppg", "acc"),
    "chest": ("temp_chest", "ecg", "acc"),  # the chest unit alone (no finger PPG/temperature)
    "ecg": ("ecg",),  # an ECG patch without motion
    "acc": ("acc",),  # actigraphy alone
    "ppg_acc": ("ppg", "acc"),  # a wrist-like device
}


def stream_columns(spec=SPEC) -> dict[str, np.ndarray]:
    """Feature columns of each stream in the 140-wide frame."""
    return {k: np.asarray(v) for k, v in spec.stream_columns().items()}


def keep_mask(sensors: tuple[str, ...], spec=SPEC) -> np.ndarray:
    """Boolean [140]: the columns a device with only ``sensors`` provides."""
    cols = stream_columns(spec)
    mask = np.zeros(spec.width, dtype=bool)
    for s in sensors:
        mask[cols[s]] = True
    return mask


def merge_classes(logits: np.ndarray, n_classes: int) -> np.ndarray:
    """Logits [..., 5] of the five stages → log-probabilities [..., ``n_classes``], each merged
    class's probability the sum of its stages' (``CLASS_MAPS``): how a 5-class model stages 4 or
    3 classes. Logits that already have ``n_classes`` columns only become log-probabilities."""
    from scipy.special import logsumexp

    lp = np.asarray(logits, np.float64)
    lp = lp - logsumexp(lp, axis=-1, keepdims=True)
    if lp.shape[-1] == n_classes:
        return lp
    if lp.shape[-1] != 5:
        raise ValueError(f"merge_classes: {lp.shape[-1]} classes cannot become {n_classes}")
    lut = np.asarray(CLASS_MAPS[n_classes])
    return np.stack([logsumexp(lp[..., lut == c], axis=-1) for c in range(n_classes)], axis=-1)


def to_classes(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Five-stage codes → ``n_classes`` codes; -1 stays -1."""
    lut = np.asarray(CLASS_MAPS[n_classes], dtype=np.int8)
    y = np.asarray(y)
    return np.where(y >= 0, lut[np.clip(y, 0, 4)], -1).astype(np.int8)


@dataclass
class Night:
    x: np.ndarray  # [T, 140] float32, raw features (NaN where a stream has no data)
    y: np.ndarray  # [T] int8, stage of each second's epoch, -1 unscored
    name: str
    kind: str = "stages"  # or "wake_sleep": y is 0 awake, 1 asleep (stage unknown), -1

    def __len__(self) -> int:
        return int(self.y.size)


def per_second_stages(stages: np.ndarray, n_seconds: int) -> np.ndarray:
    y = np.full(n_seconds, -1, dtype=np.int8)
    n = min(n_seconds, stages.size * EPOCH_S)
    y[:n] = np.repeat(np.asarray(stages, dtype=np.int8), EPOCH_S)[:n]
    return y


def hide_partial_streams(x: np.ndarray, spec=SPEC) -> np.ndarray:
    """x [T, 140] with a stream missing in any of its features in a second missing in all of
    them, as the runtime's stager treats it (``FrameStager``)."""
    for cols in stream_columns(spec).values():
        bad = np.flatnonzero(np.isnan(x[:, cols]).any(axis=1))
        x[np.ix_(bad, cols)] = np.nan
    return x


def link_fault_rate(name: str, seed: int) -> float:
    """The frame-loss rate of a night's faulted training copy: 2-30 %, seeded by its name."""
    digest = sum(name.encode()) + 7919 * seed
    return float(np.random.default_rng(digest).uniform(0.02, 0.30))


def night_from_recording(
    rec: Recording, stages: np.ndarray, name: str, loss: float = 0.0, seed: int = 0
) -> Night:
    """Features of a recording through the runtime's chain; with ``loss``, its frames are first
    lost at that rate (``firmware_sim.faults.drop_frames``), so training sees what a lossy link
    gives the model: bridged gaps, and streams missing for the seconds a long gap spoils."""
    missing = {f.stream.name for f in SPEC.features} - set(rec.signals)
    if missing == {f.stream.name for f in SPEC.features}:
        raise ValueError(f"{name}: none of the ANNE streams found")
    signals = dict(rec.signals)
    times = dict(rec.times)
    length = max(v.shape[-1] / ANNE.streams[k].rate_hz for k, v in signals.items())
    for stream in missing:  # an absent sensor is NaN (→ 0 after normalisation), as live
        rate = ANNE.streams[stream].rate_hz
        n = int(length * rate)
        signals[stream] = np.full((ANNE.streams[stream].n_axes, n), np.nan)
        if ANNE.streams[stream].timing == "timestamped":
            times[stream] = np.arange(n) / rate
    if loss:
        from firmware_sim.faults import drop_frames

        rng = np.random.default_rng(sum(name.encode()) + 104729 * seed)
        signals, _ = drop_frames(signals, ANNE, loss, rng)
    x = hide_partial_streams(reference_frame_features(SPEC, signals, times).T)  # [T, 140]
    return Night(x.astype(np.float32), per_second_stages(stages, x.shape[0]), name)


def resynth_walch(
    subject: str,
    seed: int = 0,
    root: Path | None = None,
    max_epochs: int | None = None,
    loss: float = 0.0,
) -> Night:
    from firmware_sim.resynth import walch_night

    synth = walch_night(subject, seed, root, max_epochs)
    return night_from_recording(synth.recording, synth.stages, subject, loss, seed)


MMASH_BEFORE_BED_H, MMASH_AFTER_BED_H = 4.0, 2.0


def resynth_mmash(
    user: str,
    seed: int = 0,
    root: Path | None = None,
    max_epochs: int | None = None,
    loss: float = 0.0,
) -> Night:
    """A MMASH user's evening, night and morning as a wake/sleep-labelled night."""
    from firmware_sim.resynth import mmash_day

    hours = None if max_epochs is None else max_epochs * EPOCH_S / 3600
    synth = mmash_day(user, seed, root, hours, MMASH_BEFORE_BED_H, MMASH_AFTER_BED_H)
    night = night_from_recording(synth.recording, synth.features["asleep"], user, loss, seed)
    night.kind = "wake_sleep"
    return night


def read_stage_csv(path: Path) -> np.ndarray:
    """One stage per 30-s epoch: a column ``stage`` (or the last column) holding YASA codes
    (0..4, -1) or names (W, N1, N2, N3, N4, R/REM, ?)."""
    names = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "N4": 3, "R": 4, "REM": 4, "?": -1, "": -1}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"{path}: empty hypnogram")
    header = [h.strip().lower() for h in rows[0]]
    col = header.index("stage") if "stage" in header else len(header) - 1
    out = []
    for r in rows[1:]:
        v = r[col].strip()
        try:
            out.append(int(float(v)))
        except ValueError:
            if v.upper() not in names:
                raise ValueError(f"{path}: unknown stage {v!r}") from None
            out.append(names[v.upper()])
    return np.asarray(out, dtype=np.int8)


def find_anne_hypnogram(path: Path) -> Path | None:
    stem = path.with_suffix("") if path.is_file() else path
    for suffix in ("-hypnogram.edf", "-hypnogram.csv"):
        p = stem.parent / (stem.name + suffix)
        if p.exists():
            return p
    inside = path / "hypnogram.csv" if path.is_dir() else None
    return inside if inside is not None and inside.exists() else None


def anne_export(path: Path) -> Night:
    """A real ANNE recording (EDF or CSV directory) with its hypnogram beside it."""
    path = Path(path)
    hyp = find_anne_hypnogram(path)
    if hyp is None:
        raise ValueError(
            f"{path}: no hypnogram beside it ({path.stem}-hypnogram.edf or -hypnogram.csv)"
        )
    stages = read_hypnogram(hyp) if hyp.suffix == ".edf" else read_stage_csv(hyp)
    return night_from_recording(load_recording(path, ANNE), stages, path.stem)


@dataclass(frozen=True)
class FeatureStats:
    """Fixed per-feature statistics (training nights) for causal normalisation."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, nights: list[Night]) -> FeatureStats:
        x = np.concatenate([n.x for n in nights]).astype(np.float64)
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        return cls(
            np.nan_to_num(mean).astype(np.float32),
            np.where(np.isfinite(std) & (std > 1e-6), std, 1.0).astype(np.float32),
        )

    def apply(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float32) - self.mean) / self.std
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)

    def to_json(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> FeatureStats:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def epoch_logits(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-second logits [T, K] and labels [T] → (mean logits of each whole 30-s epoch on the
    AASM grid, that epoch's label); epochs whose label is -1 are left out (DESIGN §2.1)."""
    n = min(len(logits), len(y)) // EPOCH_S
    lg = np.asarray(logits[: n * EPOCH_S], np.float64).reshape(n, EPOCH_S, -1).mean(axis=1)
    ye = np.asarray(y[: n * EPOCH_S]).reshape(n, EPOCH_S)[:, 0]
    keep = ye >= 0
    return lg[keep], ye[keep]


def epoch_wake_sleep(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wake/sleep nights: (truth, prediction) per labelled 30-s epoch, 0 awake / 1 asleep; the
    prediction is the staged epoch (argmax of mean logits, as the runtime) being any sleep
    stage."""
    lg, ye = epoch_logits(logits, y)
    return ye.astype(np.int8), (lg.argmax(axis=1) != 0).astype(np.int8)
