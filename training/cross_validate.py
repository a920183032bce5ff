"""Subject-wise cross-validation of the causal Mamba (``python -m training.cross_validate``).

Three validation subjects cannot rank models or decoding rules a few kappa points apart. This
cuts the committed split's training and validation Walch subjects (24) into ``--folds`` groups by
subject (``train_mamba.cv_fold``); for every fold and class count it trains a model on the other
folds with the usual recipe for a fixed number of passes and scores the weights after the last
pass (``final.pt``: nothing is chosen on the fold it is scored on). Every fold's epochs are then
pooled, per class count: the 5-class model's stages relabelled (what the runtime's stages mean
at fewer classes), its probabilities summed per class, and the dedicated model, each beside the
ceiling (``evaluate_mamba.ceiling_staged`` trained on the fold's training subjects). The
held-out test subjects are never touched. Trainings run ``--jobs`` at a time; one already
trained for ``--epochs`` passes is kept, one with fewer is resumed (``--resume``), so an
interrupted run continues and a longer one builds on a shorter.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from training.data.anne import CLASS_NAMES, to_classes
from training.evaluate_mamba import EpochLogits, ceiling_staged
from training.metrics import stage_metrics
from training.splits import load as load_split
from training.train_mamba import cv_fold, load_nights

RULES = ("relabelled", "summed_probabilities", "dedicated")


def run_dir(out: Path, fold: int, classes: int) -> Path:
    return out / f"fold{fold}-{classes}class"


def train_command(args: argparse.Namespace, fold: int, classes: int) -> list[str]:
    cmd = [sys.executable, "-m", "training.train", "mamba", "--folds", str(args.folds)]
    cmd += ["--fold", str(fold), "--classes", str(classes), "--epochs", str(args.epochs)]
    cmd += ["--threads", str(args.threads), "--seed", str(args.seed), "--cache", str(args.cache)]
    cmd += ["--out", str(run_dir(args.out, fold, classes))]
    for flag in ("steps", "crop", "max_epochs", "max_nights"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return cmd + ([] if args.mmash else ["--no-mmash"])


def trained_passes(run: Path) -> int:
    """Passes behind a run's ``final.pt`` (0 without one)."""
    final = run / "final.pt"
    if not final.exists():
        return 0
    return int(torch.load(final, weights_only=True)["epoch"])


def fill_cache(args: argparse.Namespace) -> None:
    train, val = cv_fold(args.folds, 0, args.max_nights)
    load_nights(train + val, args.cache, args.seed, args.max_epochs, None)
    if args.mmash:
        users = load_split("mmash")["subjects"]
        names = users["train"] + users["val"]
        load_nights(names, args.cache, args.seed, args.max_epochs, None, mmash=True)


def train_all(args: argparse.Namespace) -> None:
    todo = [
        (fold, k)
        for fold in range(args.folds)
        for k in args.classes
        if trained_passes(run_dir(args.out, fold, k)) < args.epochs
    ]

    def train(job: tuple[int, int]) -> None:
        fold, k = job
        log = run_dir(args.out, fold, k).with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = train_command(args, fold, k)
        if (run_dir(args.out, fold, k) / "last.pt").exists():
            cmd.append("--resume")  # more passes than last time: continue exactly
        with log.open("a") as f:
            subprocess.run(cmd, stdout=f, stderr=f, check=True)
        print(f"cross-validate: fold {fold}, {k} classes trained ({log})", flush=True)

    if todo:  # resynthesise every night once, before the trainings share the cache
        fill_cache(args)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        list(pool.map(train, todo))


def score(args: argparse.Namespace) -> dict:
    """Pooled metrics per class count and rule, with each fold's kappa."""
    from firmware_sim.resynth.data import data_root

    pooled: dict = {k: {rule: ([], []) for rule in (*RULES, "ceiling")} for k in args.classes}
    per_fold: dict = {k: {rule: [] for rule in (*RULES, "ceiling")} for k in args.classes}
    for fold in range(args.folds):
        train_subjects, subjects = cv_fold(args.folds, fold, args.max_nights)
        nights = load_nights(subjects, args.cache, args.seed, args.max_epochs, None)
        logits = EpochLogits(nights)
        five = run_dir(args.out, fold, 5) / "final.pt"
        for k in args.classes:
            own = run_dir(args.out, fold, k) / "final.pt"
            staged = {"dedicated": logits.staged(own, k)}
            if k != 5 and five.exists():
                staged["relabelled"] = logits.staged(five, k)
                staged["summed_probabilities"] = logits.staged(five, k, decode="summed")
            cy, cp = ceiling_staged(data_root(), train_subjects, subjects, k, args.max_epochs)
            results = {rule: (to_classes(y, k), p) for rule, (y, p) in staged.items()}
            results["ceiling"] = (cy, cp)
            for rule, (y, p) in results.items():
                pooled[k][rule][0].append(y)
                pooled[k][rule][1].append(p)
                per_fold[k][rule].append(stage_metrics(y, p, CLASS_NAMES[k])["kappa"])
    out: dict = {}
    for k in args.classes:
        ceiling = stage_metrics(*map(np.concatenate, pooled[k]["ceiling"]), CLASS_NAMES[k])
        entry: dict = {"ceiling": ceiling | {"fold_kappa": per_fold[k]["ceiling"]}}
        for rule in RULES:
            if not pooled[k][rule][0]:
                continue
            m = stage_metrics(*map(np.concatenate, pooled[k][rule]), CLASS_NAMES[k])
            entry[rule] = m | {
                "fold_kappa": per_fold[k][rule],
                "kappa_minus_ceiling": m["kappa"] - ceiling["kappa"],
            }
        out[str(k)] = entry
    out["setup"] = {
        "folds": [cv_fold(args.folds, f, args.max_nights)[1] for f in range(args.folds)],
        "epochs": args.epochs,
        "seed": args.seed,
        "data": "ANNE streams resynthesised from the training and validation Walch subjects "
        "(training/splits/walch.json), each scored by models that never trained on it; the "
        "test subjects are not used",
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.cross_validate", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--classes", type=int, nargs="+", choices=[3, 4, 5], default=[5, 3, 4])
    ap.add_argument("--epochs", type=int, default=20, help="training passes per model")
    ap.add_argument("--out", type=Path, default=Path("runs/cv"))
    ap.add_argument("--cache", type=Path, help="feature cache (default OUT/cache)")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at a time")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, help="batches per pass (default: one pass of seconds)")
    ap.add_argument("--crop", type=int, help="crop length in seconds (default: the recipe's)")
    ap.add_argument("--max-epochs", type=int, help="use only the first N 30-s epochs a night")
    ap.add_argument("--max-nights", type=int, help="use only N of the 24 subjects (smoke runs)")
    ap.add_argument("--no-mmash", dest="mmash", action="store_false")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.cache = args.cache or args.out / "cache"
    train_all(args)
    result = score(args)
    (args.out / "cross_validation.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result))
        return 0
    for k in (str(k) for k in args.classes):
        print(f"== {k} classes, {args.folds} folds pooled ({result[k]['ceiling']['n_epochs']})")
        for rule, m in result[k].items():
            gap = m.get("kappa_minus_ceiling")
            print(
                f"{rule:22s} accuracy {m['accuracy']:.3f}  balanced {m['balanced_accuracy']:.3f}"
                f"  kappa {m['kappa']:.3f}"
                + (f" ({gap:+.3f} vs ceiling)" if gap is not None else "")
                + "  per fold "
                + " ".join(f"{v:.3f}" for v in m["fold_kappa"])
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
