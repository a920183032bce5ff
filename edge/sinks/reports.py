"""End-of-night reports from the epoch records: AASM statistics, EDF+ hypnogram, PNG.

Statistics (AASM terms, YASA's definitions; minutes unless named %): TIB = every epoch of the
recording; SOL = start → first sleep epoch; SPT = first → last sleep epoch; TST = sleep epochs
(N1, N2, N3, REM); WASO = wake inside SPT; SE = TST / TIB × 100; REM latency from sleep onset
(first sleep epoch → first REM); per stage minutes and % of TST. Unscored epochs are neither
sleep nor wake; their minutes are reported as ``unscored``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edge.staging import STAGE_CODES, EpochRecord

EDF_LABELS = {0: "W", 1: "1", 2: "2", 3: "3", 4: "R", -1: "?"}


def aasm_stats(stages: np.ndarray, epoch_s: float = 30.0) -> dict:
    s = np.asarray(stages, dtype=int)
    minutes = epoch_s / 60.0
    sleep = np.isin(s, [1, 2, 3, 4])
    out: dict = {"epoch_s": epoch_s, "TIB": len(s) * minutes}
    if sleep.any():
        onset, last = int(np.argmax(sleep)), int(len(s) - 1 - np.argmax(sleep[::-1]))
        spt = s[onset : last + 1]
        out |= {
            "SOL": onset * minutes,
            "SPT": len(spt) * minutes,
            "TST": int(sleep.sum()) * minutes,
            "WASO": int((spt == 0).sum()) * minutes,
        }
        rem = np.flatnonzero(s[onset:] == 4)
        out["REM_latency"] = float(rem[0]) * minutes if rem.size else None
    else:
        out |= {"SOL": None, "SPT": 0.0, "TST": 0.0, "WASO": 0.0, "REM_latency": None}
    out["SE"] = 100.0 * out["TST"] / out["TIB"] if out["TIB"] else None
    for name, code in STAGE_CODES.items():
        n = int((s == code).sum())
        out[name] = n * minutes
        if name != "W":
            out[f"%{name}"] = 100.0 * n * minutes / out["TST"] if out["TST"] else None
    out["unscored"] = int((s == -1).sum()) * minutes
    return out


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_stats(records: list[EpochRecord], path: Path, epoch_s: float = 30.0) -> dict:
    stats = aasm_stats(np.array([r.stage for r in records]), epoch_s)
    stats["stage_codes"] = {**STAGE_CODES, "unscored": -1}
    _atomic_write(path, (json.dumps(stats, indent=1) + "\n").encode())
    return stats


def write_edf(records: list[EpochRecord], path: Path, epoch_s: float = 30.0) -> None:
    """EDF+ with one ``Hypnogram`` signal (stage code per epoch, YASA coding) and one
    ``Sleep stage W/1/2/3/R/?`` annotation per epoch (the Sleep-EDF convention)."""
    from edfio import Edf, EdfAnnotation, EdfSignal

    stages = np.array([r.stage for r in records], dtype=float)
    if not len(stages):
        return
    signal = EdfSignal(
        stages,
        sampling_frequency=1.0 / epoch_s,
        label="Hypnogram",
        physical_dimension="stage",
        physical_range=(-1, 4),
        digital_range=(-1, 4),
    )
    notes = [
        EdfAnnotation(r.start_s, epoch_s, f"Sleep stage {EDF_LABELS[r.stage]}") for r in records
    ]
    tmp = path.with_name(path.name + ".tmp")
    Edf(signals=[signal], annotations=notes, data_record_duration=epoch_s).write(tmp)
    os.replace(tmp, path)


def write_png(records: list[EpochRecord], path: Path, classes: list[str]) -> None:
    """Hypnogram above the hypnodensity (stacked per-epoch probabilities)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = np.array([r.start_s for r in records]) / 3600.0
    order = {0: 4, 4: 3, 1: 2, 2: 1, 3: 0}  # W on top, REM below it, then N1, N2, N3
    y = np.array([order.get(r.stage, np.nan) for r in records], dtype=float)
    probs = np.array(
        [
            [np.nan] * len(classes) if r.probabilities is None else list(r.probabilities.values())
            for r in records
        ]
    )
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, height_ratios=[1, 1])
    ax1.step(hours, y, where="post", color="k", lw=1)
    ax1.set_yticks([4, 3, 2, 1, 0], ["W", "REM", "N1", "N2", "N3"])
    ax1.set_title("Hypnogram")
    colors = ["#f4d35e", "#9ad1d4", "#5aa9e6", "#1e3888", "#e56b6f"]
    ax2.stackplot(hours, np.nan_to_num(probs).T, labels=classes, colors=colors, step="post")
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("probability")
    ax2.set_xlabel("hours from start")
    ax2.legend(loc="upper right", ncol=len(classes), fontsize=8)
    ax2.set_title("Hypnodensity")
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_reports(records: list[EpochRecord], out: Path, classes: list[str]) -> dict:
    write_edf(records, out / "hypnogram.edf")
    write_png(records, out / "hypnogram.png", classes)
    return write_stats(records, out / "stats.json")
