"""Day-level scores: per-target macro-F1 / balanced accuracy with bootstrap intervals by subject,
and the baselines every lifelog figure stands beside."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import balanced_accuracy_score, f1_score


def binary_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """macro-F1 over both classes, F1 of class 1, balanced accuracy; NaN labels dropped."""
    ok = ~np.isnan(y)
    y, p = y[ok].astype(int), p[ok].astype(int)
    if not len(y):
        return {"macro_f1": float("nan"), "f1": float("nan"), "balanced_accuracy": float("nan")}
    return {
        "macro_f1": float(f1_score(y, p, labels=[0, 1], average="macro", zero_division=0)),
        "f1": float(f1_score(y, p, labels=[0, 1], pos_label=1, zero_division=0)),
        "balanced_accuracy": float(balanced_accuracy_score(y, p)) if len(set(y)) > 1 else 0.5,
        "n": int(len(y)),
    }


def _macro_f1_counts(c: np.ndarray) -> np.ndarray:
    """macro-F1 over classes 0/1 from counts (..., 4) = tp, fp, fn, tn (of class 1)."""
    tp, fp, fn, tn = np.moveaxis(c, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1_pos = np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        f1_neg = np.where(tn + fn + fp > 0, 2 * tn / (2 * tn + fn + fp), 0.0)
    return np.where(tp + fp + fn + tn > 0, (f1_pos + f1_neg) / 2, np.nan)


def bootstrap_ci(
    y: np.ndarray, p: np.ndarray, subjects: np.ndarray, reps: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % interval of macro-F1 with subjects (not days) resampled with replacement.

    ``y``/``p`` may be (n,) or (n, T); for (n, T) the statistic is the mean macro-F1 over T.
    Same statistic as ``binary_scores``, computed from per-subject confusion counts."""
    rng = np.random.default_rng(seed)
    y2 = y.reshape(len(y), -1)
    p2 = p.reshape(len(p), -1)
    uniq, inv = np.unique(subjects, return_inverse=True)
    ok = ~np.isnan(y2)
    yy, pp = y2 == 1, p2 == 1
    parts = [ok & yy & pp, ok & ~yy & pp, ok & yy & ~pp, ok & ~yy & ~pp]
    counts = np.zeros((len(uniq), y2.shape[1], 4))
    for k, m in enumerate(parts):
        np.add.at(counts[:, :, k], inv, m.astype(float))
    draws = rng.integers(0, len(uniq), size=(reps, len(uniq)))
    weights = np.stack([np.bincount(d, minlength=len(uniq)) for d in draws])
    total = np.einsum("rs,stk->rtk", weights, counts)
    stats = np.nanmean(_macro_f1_counts(total), axis=1)
    lo, hi = np.nanpercentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def majority(y_train: np.ndarray, n: int) -> np.ndarray:
    """Each target's most frequent training class, for every day."""
    cls = (np.nanmean(y_train, axis=0) > 0.5).astype(np.float32)
    return np.tile(cls, (n, 1))


def subject_running_mean(
    y_all: np.ndarray, subjects: np.ndarray, order: np.ndarray, fallback: np.ndarray
) -> np.ndarray:
    """Causal: each day gets 1 where the subject's earlier labels were mostly 1.

    ``order`` sorts days in time; only labels of strictly earlier days of the same subject
    count (they are known by then). No history (or a tie) falls back to ``fallback``."""
    pred = np.tile(fallback.astype(np.float32), (len(y_all), 1))
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for i in order:
        s = subjects[i]
        if s in sums:
            c = counts[s]
            mean = np.divide(sums[s], c, out=np.full_like(sums[s], 0.5), where=c > 0)
            pred[i] = np.where(mean > 0.5, 1, np.where(mean < 0.5, 0, fallback))
        yi = y_all[i]
        ok = ~np.isnan(yi)
        sums.setdefault(s, np.zeros(y_all.shape[1]))
        counts.setdefault(s, np.zeros(y_all.shape[1]))
        sums[s][ok] += yi[ok]
        counts[s][ok] += 1
    return pred


def gradient_boosting(
    x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, seed: int = 0
) -> np.ndarray:
    """One gradient-boosting classifier per target on daily summary features (NaN allowed)."""
    out = np.zeros((len(x_eval), y_train.shape[1]), np.float32)
    for t in range(y_train.shape[1]):
        ok = ~np.isnan(y_train[:, t])
        yt = y_train[ok, t].astype(int)
        if len(set(yt)) < 2:
            out[:, t] = yt[0] if len(yt) else 0
            continue
        clf = HistGradientBoostingClassifier(
            max_iter=150, learning_rate=0.05, max_leaf_nodes=15, random_state=seed
        )
        clf.fit(x_train[ok], yt)
        out[:, t] = clf.predict(x_eval)
    return out
