"""Wake/sleep evaluation of the causal Mamba on MMASH users
(``python -m training.evaluate --model mamba --dataset mmash``).

Every user in DIR (the layout of ../shared/data/mmash: ``user_<k>/*.csv.gz``) that is not a
training or validation user of the committed split (training/splits/mmash.json) and has a sleep
period is resynthesised into ANNE streams from their real beat-to-beat intervals and wrist
activity, from 4 h before bed to 2 h after getting up, and staged from a zero state. An epoch
staged W is "awake", any other stage "asleep"; the truth is the actigraphy sleep period (onset
to out of bed), so wake after sleep onset counts as asleep in the labels. Beside it the
information ceiling: gradient boosting on the real per-epoch heart rate (real beats only) and
activity of the training users, with the context a causal model has (``context_features``),
scored on the same epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.data.anne import (
    EPOCH_S,
    MMASH_AFTER_BED_H,
    MMASH_BEFORE_BED_H,
    resynth_mmash,
)
from training.evaluate_mamba import (
    WEIGHTS,
    EpochLogits,
    context_features,
    linked_root,
    model_label,
    record_model,
)
from training.metrics import stage_metrics
from training.splits import load as load_split
from training.splits import seen

LABELS = ("awake", "asleep")


def mmash_root(data: Path) -> Path:
    """The data root holding ``mmash/user_<k>`` for DIR given either way."""
    if any(data.glob("user_*")):
        return data.parent if data.name == "mmash" else linked_root(data, "mmash")
    if any((data / "mmash").glob("user_*")):
        return data
    raise SystemExit(f"evaluate: no MMASH user_<k>/ folders under {data}")


def real_epochs(user: str, root: Path, max_epochs: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A user's real per-epoch ceiling features and wake/sleep labels over the evaluated window
    (heart rate carried forward over epochs without 3 real beats: causal)."""
    from firmware_sim.resynth.mmash import MmashRecord

    record = MmashRecord.read(root / "mmash" / user)
    start, end = record.window(MMASH_BEFORE_BED_H, MMASH_AFTER_BED_H)
    n = int(end - start) // EPOCH_S
    if max_epochs:
        n = min(n, max_epochs)
    f = record.epoch_features(start, n)
    hr = f["hr"]
    real = np.isfinite(hr)
    if real.any():  # carry the last real value forward; before the first, the first
        last = np.where(real, np.arange(n), -1)
        np.maximum.accumulate(last, out=last)
        hr = np.where(last >= 0, hr[np.maximum(last, 0)], hr[real][0])
    else:
        hr = np.zeros(n)
    t_h = np.arange(n) * EPOCH_S / 3600.0
    return context_features(hr, f["count"], t_h), record.asleep_per_epoch(start, n)


def ceiling_classifier(users: list[str], root: Path):
    from sklearn.ensemble import HistGradientBoostingClassifier

    feats = [real_epochs(u, root, None) for u in users]
    x = np.concatenate([f[0] for f in feats])
    y = np.concatenate([f[1] for f in feats])
    return HistGradientBoostingClassifier(
        max_iter=200, random_state=0, class_weight="balanced"
    ).fit(x[y >= 0], y[y >= 0])


def wake_sleep_metrics(logits: EpochLogits, path: Path, k: int) -> dict:
    """Awake/asleep metrics of the model staging ``k`` classes: an epoch staged W is awake."""
    y, p = logits.staged(path, k)
    return stage_metrics(y.astype(np.int8), (p != 0).astype(np.int8), LABELS)


def evaluate_mmash(
    data: Path,
    weights: Path = WEIGHTS,
    max_nights: int | None = None,
    max_epochs: int | None = None,
) -> dict:
    from firmware_sim.resynth.data import data_root
    from firmware_sim.resynth.mmash import read_csv_gz

    root = mmash_root(data)
    trained_on = seen("mmash")
    users = sorted(
        (
            p.name
            for p in (root / "mmash").glob("user_*")
            if p.name not in trained_on and read_csv_gz(p / "sleep.csv.gz").get("Onset Time")
        ),
        key=lambda u: int(u.split("_")[1]),
    )[:max_nights]
    if not users:
        raise SystemExit(f"evaluate: no held-out MMASH user with a sleep period under {data}")
    nights = [resynth_mmash(u, root=root, max_epochs=max_epochs) for u in users]
    shared = data_root()
    train_root = shared if any((shared / "mmash").glob("user_*")) else root
    ceiling = ceiling_classifier(load_split("mmash")["subjects"]["train"], train_root)
    cy, cp = [], []
    for u, night in zip(users, nights, strict=True):
        fx, fy = real_epochs(u, root, max_epochs)
        n = min(len(fy), len(night) // EPOCH_S)
        keep = fy[:n] >= 0
        cy.append(fy[:n][keep])
        cp.append(ceiling.predict(fx[:n][keep]))
    ceiling_metrics = stage_metrics(np.concatenate(cy), np.concatenate(cp), LABELS)
    logits = EpochLogits(nights)
    result: dict = {}
    for k in (3, 4, 5):
        path = record_model(weights, k)
        if path is None:
            continue
        out = wake_sleep_metrics(logits, path, k) | {"model": model_label(path, k)}
        own = weights / f"causal_{k}class.pt"
        if own != path and own.exists():  # the dedicated K-class model, for comparison
            dedicated = wake_sleep_metrics(logits, own, k) | {"model": model_label(own, k)}
            dedicated["kappa_minus_ceiling"] = dedicated["kappa"] - ceiling_metrics["kappa"]
            out["dedicated"] = dedicated
        out["ceiling"] = ceiling_metrics
        out["kappa_minus_ceiling"] = out["kappa"] - ceiling_metrics["kappa"]
        out["subjects"] = users
        out["data"] = (
            "ANNE streams resynthesised from the real beat-to-beat intervals and wrist activity "
            "of held-out MMASH users (training/splits/mmash.json), 4 h before bed to 2 h after; "
            "labels: actigraphy sleep periods (wake after onset not localised)"
        )
        result[str(k)] = out
    if not result:
        raise SystemExit(f"evaluate: no causal_<K>class.pt weights in {weights}")
    return result
