"""Epoch-level sleep-staging metrics, one dictionary per evaluation (keys fixed by the issues)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
)

STAGES = ("W", "N1", "N2", "N3", "REM")


def stage_metrics(y: np.ndarray, p: np.ndarray, labels: tuple[str, ...] = STAGES) -> dict:
    """accuracy, balanced_accuracy, macro_f1, kappa, mcc, n_epochs, confusion (rows = truth),
    and per-class precision / recall / F1 / support."""
    ks = list(range(len(labels)))
    prec, rec, f1, sup = precision_recall_fscore_support(y, p, labels=ks, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, p)),
        "balanced_accuracy": float(balanced_accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, labels=ks, average="macro", zero_division=0)),
        "kappa": float(cohen_kappa_score(y, p, labels=ks)),
        "mcc": float(matthews_corrcoef(y, p)),
        "n_epochs": int(len(y)),
        "confusion": confusion_matrix(y, p, labels=ks).tolist(),
        "per_class": {
            name: {
                "precision": float(prec[k]),
                "recall": float(rec[k]),
                "f1": float(f1[k]),
                "support": int(sup[k]),
            }
            for k, name in enumerate(labels)
        },
    }
