"""The seeds' day-level targets, mapped from a dataset's own labels.

Q targets are self-reports binarised per subject against the subject's own mean, as the ETRI
lifelog labels are: 1 when the day's answer lies above the mean of that subject's answers on the
training days (so the threshold never looks at the days it scores). S targets are the night's
sleep metrics against published guidelines, 1 = meets the guideline:

- S1 total sleep time ≥ 7 h: Watson et al. 2015 (AASM/SRS consensus, Sleep 38:843) and
  Hirshkowitz et al. 2015 (NSF duration recommendations, Sleep Health 1:40): 7–9 h for adults.
- S2 sleep efficiency ≥ 85 %, S3 sleep-onset latency ≤ 30 min, S4 wake after sleep onset
  ≤ 20 min: Ohayon et al. 2017, "National Sleep Foundation's sleep quality recommendations",
  Sleep Health 3:6–19 (the thresholds its panel agreed indicate good sleep quality in adults).

PMData has no emotion item of the ETRI kind; its ``mood`` answer stands for Q2. The Fitbit
stages set S3/S4 (consumer staging, not PSG), which the model card says.
"""

from __future__ import annotations

from datetime import date

import numpy as np

TARGETS = ("Q1", "Q2", "Q3", "S1", "S2", "S3", "S4")
SELF_REPORTS = ("Q1", "Q2", "Q3")
DESCRIPTION = {
    "Q1": "self-reported sleep quality above the subject's own mean",
    "Q2": "self-reported mood above the subject's own mean",
    "Q3": "self-reported stress score above the subject's own mean",
    "S1": "total sleep time >= 7 h",
    "S2": "sleep efficiency >= 85 %",
    "S3": "sleep-onset latency <= 30 min",
    "S4": "wake after sleep onset <= 20 min",
}
Q_ITEMS = {"Q1": "sleep_quality", "Q2": "mood", "Q3": "stress"}
S_RULES = {
    "S1": ("tst_h", lambda v: v >= 7.0),
    "S2": ("efficiency", lambda v: v >= 85.0),
    "S3": ("latency_min", lambda v: v <= 30.0),
    "S4": ("waso_min", lambda v: v <= 20.0),
}


def subject_means(days, train_before: date) -> dict[str, dict[str, float]]:
    """Per subject, the mean of each Q item over the reports dated before ``train_before``."""
    acc: dict[str, dict[str, list[float]]] = {}
    for d in days:
        if d.report_day >= train_before:
            continue
        for q, item in Q_ITEMS.items():
            v = d.reports.get(item, np.nan)
            if not np.isnan(v):
                acc.setdefault(d.subject, {}).setdefault(q, []).append(v)
    return {s: {q: float(np.mean(v)) for q, v in qs.items()} for s, qs in acc.items()}


def label_matrix(days, means: dict[str, dict[str, float]]) -> np.ndarray:
    """(n_days, 7) float32 labels in TARGETS order: 1, 0 or NaN (no label for that day)."""
    y = np.full((len(days), len(TARGETS)), np.nan, np.float32)
    for i, d in enumerate(days):
        m = means.get(d.subject, {})
        for j, q in enumerate(SELF_REPORTS):
            v = d.reports.get(Q_ITEMS[q], np.nan)
            if q in m and not np.isnan(v):
                y[i, j] = float(v > m[q])
        for j, s in enumerate(TARGETS[3:], start=3):
            key, rule = S_RULES[s]
            v = d.night.get(key, np.nan)
            if not np.isnan(v):
                y[i, j] = float(rule(v))
    return y
