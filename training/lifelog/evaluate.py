"""``python -m training.evaluate --model lifelog --dataset pmdata [--data DIR] [--json]``.

PMData split: the model and the gradient-boosting baseline train on days whose labels were
reported before 2020-02-01; the figures are on the remaining labelled days of this copy
(2020-02-01 … 2020-02-14, nothing was selected on them: hyperparameters and epochs are fixed).
With ``--data DIR`` (a PMData folder holding later reports) the days of DIR reported after the
last labelled day of the training copy are scored instead, with the training copy's thresholds.
Every figure: per-target macro-F1 (both classes), balanced accuracy and a 95 % bootstrap interval
over subjects, beside the majority class, each subject's own running mean (causal) and gradient
boosting on daily summary features.
"""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

from training.lifelog import pmdata, targets
from training.lifelog.scoring import (
    binary_scores,
    bootstrap_ci,
    gradient_boosting,
    majority,
    subject_running_mean,
)

TRAIN_BEFORE = date(2020, 2, 1)


def default_root() -> Path:
    from firmware_sim.resynth.data import data_root

    return data_root() / "pmdata"


def split(days: list, train_before: date = TRAIN_BEFORE):
    """(train days, evaluation days, thresholds): eval = labelled days from ``train_before``."""
    means = targets.subject_means(days, train_before)
    days = [d for d in days if d.subject in means]
    train = [d for d in days if d.report_day < train_before]
    held = [d for d in days if d.report_day >= train_before and _labelled(d)]
    return train, held, means


def _labelled(d) -> bool:
    return any(not np.isnan(d.reports.get(k, np.nan)) for k in targets.Q_ITEMS.values())


def summary_matrix(days: list, subjects: list[str]) -> np.ndarray:
    code = {s: i for i, s in enumerate(subjects)}
    return np.array([np.append(d.summary, code.get(d.subject, -1)) for d in days])


def evaluate(
    train: list,
    held: list,
    means: dict,
    model_probs: np.ndarray | None = None,
    history: list | None = None,
    model_name: str = "mis_lstm",
) -> dict:
    """Scores of the model (probabilities for ``held``, if given) beside the baselines."""
    y_tr = targets.label_matrix(train, means)
    y_ev = targets.label_matrix(held, means)
    subs = sorted({d.subject for d in train})
    preds: dict[str, np.ndarray] = {}
    preds["majority"] = majority(y_tr, len(held))
    hist = (history or []) + held
    y_hist = targets.label_matrix(hist, means)
    subj_hist = np.array([d.subject for d in hist])
    order = np.argsort([d.report_day.toordinal() for d in hist], kind="stable")
    rm = subject_running_mean(y_hist, subj_hist, order, preds["majority"][0])
    preds["subject_mean"] = rm[len(hist) - len(held) :]
    preds["gradient_boosting"] = gradient_boosting(
        summary_matrix(train, subs), y_tr, summary_matrix(held, subs)
    )
    if model_probs is not None:
        preds[model_name] = (model_probs > 0.5).astype(np.float32)
    subjects = np.array([d.subject for d in held])
    out: dict = {"targets": {}}
    for j, t in enumerate(targets.TARGETS):
        entry: dict = {"description": targets.DESCRIPTION[t]}
        for name, p in preds.items():
            sc = binary_scores(y_ev[:, j], p[:, j])
            ok = ~np.isnan(y_ev[:, j])
            sc["ci"] = list(bootstrap_ci(y_ev[ok, j], p[ok, j], subjects[ok], reps=1000))
            entry.setdefault("all", {})[name] = sc
        entry["positive_rate"] = float(np.nanmean(y_ev[:, j])) if len(held) else float("nan")
        out["targets"][t] = entry
    lead = model_name if model_probs is not None else "gradient_boosting"
    for entry in out["targets"].values():
        entry.update({k: entry["all"][lead][k] for k in ("macro_f1", "ci", "balanced_accuracy")})
        entry["baselines"] = {n: s["macro_f1"] for n, s in entry["all"].items() if n != lead}
    sr = [targets.TARGETS.index(q) for q in targets.SELF_REPORTS]
    summary = {}
    for name, p in preds.items():
        summary[name] = {
            "macro_f1_self_reports": float(
                np.nanmean(
                    [out["targets"][targets.TARGETS[j]]["all"][name]["macro_f1"] for j in sr]
                )
            ),
            "ci_self_reports": list(bootstrap_ci(y_ev[:, sr], p[:, sr], subjects, reps=1000)),
            "macro_f1_all": float(
                np.nanmean([out["targets"][t]["all"][name]["macro_f1"] for t in targets.TARGETS])
            ),
        }
    out["model"] = lead
    out["macro_f1"] = summary[lead]["macro_f1_self_reports"]
    out["ci"] = summary[lead]["ci_self_reports"]
    out["overall"] = summary
    out["days"] = len(held)
    out["subjects"] = len(set(subjects))
    out["train_days"] = len(train)
    return out


def _model_probs(manifest: Path | None, days: list, held: list) -> np.ndarray | None:
    """Running day probabilities of the exported model (onnxruntime), or None if absent."""
    try:
        from edge.lifelog.runtime import DEFAULT_MANIFEST, LifelogModel

        from training.lifelog.dataset import day_inputs
    except ImportError:  # the model is not part of this checkout yet
        return None

    path = manifest or DEFAULT_MANIFEST
    if not Path(path).exists():
        return None
    model = LifelogModel(path)
    out = []
    for d in held:
        images, events = day_inputs(d)
        out.append(model.predict_day(images, events, d.subject)[-1])
    return np.array(out, np.float32)


def main(args) -> int:
    """Entry from ``training.evaluate`` (its parsed arguments)."""
    if args.dataset != "pmdata":
        print(
            f"evaluate: the lifelog model is scored on pmdata only so far (got {args.dataset})",
            file=sys.stderr,
        )
        return 2
    root = default_root()
    try:
        days = pmdata.load(root)
        train, held, means = split(days)
        history = [d for d in days if d.report_day < TRAIN_BEFORE and d.subject in means]
        if args.lifelog_data is not None:
            last = max(d.report_day for d in days if _labelled(d))
            later = pmdata.load(args.lifelog_data)
            held = [d for d in later if d.report_day > last and d.subject in means and _labelled(d)]
            history = history + [d for d in days if d.report_day >= TRAIN_BEFORE]
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 2
    if not held:
        print("evaluate: no labelled days to score", file=sys.stderr)
        return 2
    probs = _model_probs(args.manifest, days, held)
    result = {"dataset": "pmdata", **evaluate(train, held, means, probs, history)}
    if args.json:
        print(json.dumps(result))
        return 0
    names = list(result["overall"])
    print(
        f"PMData: {result['days']} days, {result['subjects']} subjects scored; macro-F1 [95 % CI]"
    )
    print(f"{'target':8s}" + "".join(f"{n:>26s}" for n in names))
    for t, e in result["targets"].items():
        cells = "".join(
            f"{e['all'][n]['macro_f1']:>12.3f} [{e['all'][n]['ci'][0]:.2f},"
            f"{e['all'][n]['ci'][1]:.2f}]"
            for n in names
        )
        print(f"{t:8s}{cells}   {e['description']}")
    cells = "".join(
        f"{result['overall'][n]['macro_f1_self_reports']:>12.3f} "
        f"[{result['overall'][n]['ci_self_reports'][0]:.2f},"
        f"{result['overall'][n]['ci_self_reports'][1]:.2f}]"
        for n in names
    )
    print(f"{'Q mean':8s}{cells}")
    return 0
