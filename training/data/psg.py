"""PSG nights → ULW-SleepNet inputs: X [E, 4, 3000] float32 and y [E] (W N1 N2 N3 REM = 0..4).

Every source goes through the runtime's own epoch chain (``reference_epoch_features`` of the
psg descriptor's ``ulw_sleepnet`` input), so training sees exactly what ``edge-run`` feeds the
model. Sources:

- ``sleep_edf_pair(psg_edf)``: a real Sleep-EDF PSG EDF and its hypnogram EDF+ beside it (or any
  EDF whose channels match the psg descriptor's ``file_labels``, with a hypnogram) — anyone with
  the raw recordings retrains with one command;
- ``resynth_sleep_edf(night)``: the night resynthesised from its real band powers;
- ``dreams_excerpt(path)``: a DREAMS excerpt (one central EEG channel, 50–200 Hz, 30-s labels).

Real Sleep-EDF SC recordings last ~20 h; like the band-power records they are cropped to the
scored sleep period ± 30 min. Unscored epochs and partly covered epochs are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.devices import load_device
from edge.features import reference_epoch_features
from firmware_sim.recordings import Recording, load_recording

PSG = load_device("psg")
SPEC = PSG.input("ulw_sleepnet")


@dataclass
class Epochs:
    x: np.ndarray  # [E, 4, 3000] float32
    y: np.ndarray  # [E] int8
    night: str

    def __len__(self) -> int:
        return int(self.y.size)


def crop_to_sleep(stages: np.ndarray, margin_epochs: int = 60) -> slice:
    """The scored sleep period (first to last non-wake epoch) ± ``margin_epochs``."""
    sleep = np.flatnonzero(stages > 0)
    if sleep.size == 0:
        return slice(0, stages.size)
    return slice(max(0, sleep[0] - margin_epochs), min(stages.size, sleep[-1] + margin_epochs + 1))


def epochs_from_recording(
    rec: Recording, stages: np.ndarray, night: str, crop: bool = True
) -> Epochs:
    x = reference_epoch_features(SPEC, rec.signals)  # (E, 4, 3000), NaN where data is missing
    n = min(x.shape[0], stages.size)
    x, y = x[:n], np.asarray(stages[:n], dtype=np.int8)
    keep = np.zeros(n, dtype=bool)
    keep[crop_to_sleep(y) if crop else slice(0, n)] = True
    keep &= (y >= 0) & np.isfinite(x).all(axis=(1, 2))
    return Epochs(x[keep].astype(np.float32), y[keep], night)


def sleep_edf_pair(psg_edf: Path) -> Epochs:
    """A real PSG EDF with its hypnogram (Sleep-EDF naming) → epochs."""
    rec = load_recording(psg_edf, PSG)
    if rec.stages is None:
        raise ValueError(f"{psg_edf}: no hypnogram found beside it (…-Hypnogram.edf)")
    missing = set(s.stream.name for s in SPEC.channels) - set(rec.signals)
    if missing:
        raise ValueError(f"{psg_edf}: channels for {sorted(missing)} not found")
    return epochs_from_recording(rec, rec.stages, Path(psg_edf).name[:6])


def resynth_sleep_edf(
    night: str, seed: int = 0, root: Path | None = None, max_epochs: int | None = None
) -> Epochs:
    """A night resynthesised from its real band powers (already cropped upstream)."""
    from firmware_sim.resynth import sleep_edf_night

    synth = sleep_edf_night(night, seed, root, max_epochs)
    return epochs_from_recording(synth.recording, synth.stages, night, crop=False)


def dreams_excerpt(path: Path, agree_min: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A DREAMS excerpt's central EEG at 100 Hz as [E, 3000] with its 30-s labels; epochs whose
    5-s labels disagree (the experts scored 20-s epochs) are dropped unless ``agree_min`` < 1."""
    from scipy.signal import resample_poly

    with np.load(path) as z:
        eeg, fs = z["eeg"].astype(np.float64), float(z["fs"])
        y, agree = z["stage_30s"].astype(np.int8), z["stage_30s_agree"]
    x = resample_poly(eeg, 100, int(fs)) if fs != 100 else eeg
    n = min(x.size // 3000, y.size)
    x = x[: n * 3000].reshape(n, 3000)
    keep = (y[:n] >= 0) & (agree[:n] >= agree_min)
    return x[keep].astype(np.float32), y[:n][keep]
