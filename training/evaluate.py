"""Evaluation: ``python -m training.evaluate --model ulw --dataset sleep-edf|dreams --data DIR``
and ``--model mamba --dataset walch`` (``training/evaluate_mamba.py``: 3/4/5 classes, ablations,
causal vs bidirectional, ceiling; ``--json`` prints one object keyed "3", "4", "5"), and
``--model lifelog --dataset pmdata`` (``training/lifelog/evaluate.py``: day-level sleep-quality,
mood, stress and sleep-metric targets beside baselines), ``--model mamba --dataset mmash``
(``training/evaluate_wake_sleep.py``: wake/sleep on held-out
MMASH users against their actigraphy sleep periods, beside a ceiling; same keys).

DIR has the layout of the matching folder of ../shared/data, so any night in that layout can be
scored. Sleep-EDF: every night in DIR that is not a training or validation night of the
committed split is resynthesised from its real band powers and staged by the model; beside it
stands the information ceiling — gradient boosting on the real band-power features (3 channels ×
10) of the same training subjects, scored on the same nights. DREAMS: the real raw central EEG
(one channel, resampled to 100 Hz) fed to both EEG inputs, EOG and EMG inputs at zero (the
model card says how well that transfers); ceiling: gradient boosting on the Fpz-Cz band powers
of the training subjects, applied to the DREAMS channel's band powers.
``--json`` prints one object: the metrics keys plus ``ceiling`` with the same keys.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from firmware_sim.resynth.data import data_root
from firmware_sim.resynth.eeg import band_powers
from training.data.psg import dreams_excerpt, resynth_sleep_edf
from training.metrics import stage_metrics
from training.models.ulw_sleepnet import ULWSleepNet
from training.splits import load as load_split


def predict(model, x: np.ndarray) -> np.ndarray:
    """Stage codes from a torch model or from an edge runtime model (``predict`` → logits)."""
    if isinstance(model, ULWSleepNet):
        return model.predict(torch.from_numpy(x)).numpy()
    if isinstance(model, Variants):
        return model.predict(x)
    return (
        np.concatenate(
            [model.predict(x[i : i + 256]).argmax(axis=1) for i in range(0, len(x), 256)]
        )
        if len(x)
        else np.zeros(0, np.int64)
    )


class Variants:
    """Several exported variants scored on the same epochs (the first is the reference)."""

    def __init__(self, manifest: Path, names: list[str]) -> None:
        from edge.models import load_epoch_model

        self.names = names
        # research=True: evaluation scores research exports too (edge-run serves none of them)
        self.models = [load_epoch_model(manifest, *n.split(":"), research=True) for n in names]
        self.predictions: dict[str, list[np.ndarray]] = {n: [] for n in names}

    def predict(self, x: np.ndarray) -> np.ndarray:
        out = [predict(m, x) for m in self.models]
        for n, p in zip(self.names, out, strict=True):
            self.predictions[n].append(p)
        return out[0]

    def report(self, y: np.ndarray) -> dict:
        first = np.concatenate(self.predictions[self.names[0]])
        out = {}
        for n in self.names:
            p = np.concatenate(self.predictions[n])
            out[n] = stage_metrics(y, p) | {"agreement_with_first": float((p == first).mean())}
        return out


def _bandpower_features(night: str, root: Path, channels=slice(None)) -> tuple[np.ndarray, ...]:
    with np.load(root / "sleep_edf" / "bandpower_features" / f"{night}.npz") as z:
        x, y = z["X"][:, channels].reshape(len(z["y"]), -1), z["y"]
    keep = y >= 0
    return x[keep], y[keep]


def ceiling_classifier(train_nights: list[str], root: Path, channels=slice(None)):
    from sklearn.ensemble import HistGradientBoostingClassifier

    feats = [_bandpower_features(n, root, channels) for n in train_nights]
    x = np.concatenate([f[0] for f in feats])
    y = np.concatenate([f[1] for f in feats])
    return HistGradientBoostingClassifier(max_iter=200, random_state=0).fit(x, y)


def evaluate_sleep_edf(model, data: Path, max_nights: int | None, max_epochs: int | None) -> dict:
    split = load_split("sleep-edf")
    seen = set(split["nights"]["train"]) | set(split["nights"]["val"])
    nights = sorted(
        p.stem
        for p in (data / "sleep_edf" / "bandpower_features").glob("*.npz")
        if p.stem not in seen
    )[:max_nights]
    if not nights:
        raise SystemExit(f"evaluate: no held-out Sleep-EDF night under {data}")
    ys, ps, cys, cps = [], [], [], []
    ceiling = ceiling_classifier(split["nights"]["train"], data_root())
    for night in nights:
        e = resynth_sleep_edf(night, root=data, max_epochs=max_epochs)
        ys.append(e.y)
        ps.append(predict(model, e.x))
        fx, fy = _bandpower_features(night, data)
        if max_epochs:
            fx, fy = fx[: len(e.y)], fy[: len(e.y)]
        cys.append(fy)
        cps.append(ceiling.predict(fx))
    result = stage_metrics(np.concatenate(ys), np.concatenate(ps))
    result["ceiling"] = stage_metrics(np.concatenate(cys), np.concatenate(cps))
    if isinstance(model, Variants):
        result["variants"] = model.report(np.concatenate(ys))
    result["nights"] = nights
    result["data"] = "Sleep-EDF SC nights resynthesised from their real band powers (held-out "
    result["data"] += "subjects of training/splits/sleep-edf.json)"
    return result


def evaluate_dreams(model, data: Path) -> dict:
    folder = data / "dreams_spindles" if (data / "dreams_spindles").exists() else data
    files = sorted(folder.glob("excerpt*.npz"))
    if not files:
        raise SystemExit(f"evaluate: no DREAMS excerpt*.npz under {folder}")
    ceiling = ceiling_classifier(
        load_split("sleep-edf")["nights"]["train"], data_root(), channels=slice(0, 1)
    )
    ys, ps, cps = [], [], []
    for f in files:
        x, y = dreams_excerpt(f)
        inputs = np.zeros((len(y), 4, 3000), dtype=np.float32)
        inputs[:, 0] = inputs[:, 1] = x  # the central channel into both EEG inputs
        ys.append(y)
        ps.append(predict(model, inputs))
        bp = band_powers(x.reshape(-1).astype(np.float64))
        # the Sleep-EDF features are of per-night z-scored signals: z-score the excerpt too
        bpz = bp - np.log10(x.astype(np.float64).var())
        powers = 10**bpz
        rel = powers / powers.sum(axis=1, keepdims=True)
        cps.append(ceiling.predict(np.concatenate([bpz, rel], axis=1)))
    y = np.concatenate(ys)
    result = stage_metrics(y, np.concatenate(ps))
    result["ceiling"] = stage_metrics(y, np.concatenate(cps))
    if isinstance(model, Variants):
        result["variants"] = model.report(y)
    result["data"] = "DREAMS spindles excerpts, real raw central EEG (30-s labels with full "
    result["data"] += "agreement)"
    return result


def metrics_line(label: str, m: dict, width: int) -> str:
    return (
        f"{label:{width}s} accuracy {m['accuracy']:.3f}  balanced {m['balanced_accuracy']:.3f}"
        f"  macro-F1 {m['macro_f1']:.3f}  kappa {m['kappa']:.3f}  MCC {m['mcc']:.3f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.evaluate", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--model", choices=["ulw", "mamba", "lifelog"], required=True)
    ap.add_argument(
        "--dataset", choices=["sleep-edf", "dreams", "walch", "mmash", "pmdata"], required=True
    )
    ap.add_argument("--data", type=Path, default=data_root())
    ap.add_argument("--checkpoint", type=Path, default=Path("runs/ulw/best.pt"))
    ap.add_argument(
        "--weights",
        type=Path,
        help="mamba: folder of causal_<K>class.pt / bidirectional_<K>class.pt (default: bundled)",
    )
    ap.add_argument("--max-nights", type=int)
    ap.add_argument("--max-epochs", type=int)
    ap.add_argument(
        "--manifest",
        type=Path,
        help="score exported files through the edge runtime instead of a torch checkpoint",
    )
    ap.add_argument(
        "--variants",
        help="with --manifest: BACKEND:PRECISION list; the first is the reference for agreement "
        "(ulw default: onnxruntime:fp32,onnxruntime:int8,litert:fp32,litert:int8,native:fp32,"
        "native:int8; "
        "mamba default: onnxruntime:fp32,onnxruntime:int8,litert:fp32,native:fp32,numpy:fp32)",
    )
    ap.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="mamba on walch: the held-out subjects (default) or the validation subjects, "
        "for model selection",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.model == "lifelog":  # day-level targets: training/lifelog/evaluate.py
        from training.lifelog.evaluate import main as lifelog_main

        args.lifelog_data = None if args.data == data_root() else args.data
        return lifelog_main(args)
    if (args.model == "mamba") != (args.dataset in ("walch", "mmash")):
        ap.error("--model mamba goes with --dataset walch or mmash; ulw with sleep-edf or dreams")
    if args.dataset == "mmash" and args.manifest is not None:
        ap.error("--manifest scores exported files on walch only")
    if args.split != "test" and args.dataset != "walch":
        ap.error("--split val goes with --model mamba --dataset walch")
    if args.model == "mamba":
        return _mamba(args)
    args.variants = args.variants or (
        "onnxruntime:fp32,onnxruntime:int8,litert:fp32,litert:int8,native:fp32,native:int8"
    )
    if args.manifest is not None:
        model = Variants(args.manifest, args.variants.split(","))
    elif not args.checkpoint.exists():
        print(
            f"evaluate: no checkpoint at {args.checkpoint} (train first: python -m "
            "training.train ulw)",
            file=sys.stderr,
        )
        return 2
    else:
        model = ULWSleepNet.from_checkpoint(args.checkpoint)
    if args.dataset == "sleep-edf":
        result = evaluate_sleep_edf(model, args.data, args.max_nights, args.max_epochs)
    else:
        result = evaluate_dreams(model, args.data)
    if args.json:
        print(json.dumps(result))
        return 0
    for label, r in (("model", result), ("ceiling", result["ceiling"])):
        print(f"{metrics_line(label, r, 8)}  ({r['n_epochs']} epochs)")
    for name, r in result.get("variants", {}).items():
        print(
            f"{name:20s} accuracy {r['accuracy']:.3f}  kappa {r['kappa']:.3f}  "
            f"agreement with {args.variants.split(',')[0]} {r['agreement_with_first']:.3f}"
        )
    print("confusion (rows truth W N1 N2 N3 REM):")
    for row in result["confusion"]:
        print("  " + " ".join(f"{v:6d}" for v in row))
    print(f"data: {result['data']}")
    return 0


def _mamba(args) -> int:
    from training.evaluate_mamba import WEIGHTS, StepVariants, evaluate_walch

    if args.dataset == "mmash":
        return _wake_sleep(args)
    variants = None
    if args.manifest is not None:
        names = args.variants or (
            "onnxruntime:fp32,onnxruntime:int8,litert:fp32,native:fp32,numpy:fp32"
        )
        variants = StepVariants(args.manifest, names.split(","))
    result = evaluate_walch(
        args.data, args.weights or WEIGHTS, args.max_nights, args.max_epochs, variants, args.split
    )
    if args.json:
        print(json.dumps(result))
        return 0
    for k, r in result.items():
        print(
            f"== {k} classes, {r['split']} ({r['n_epochs']} epochs, subjects "
            f"{' '.join(r['subjects'])}): {r['model']}"
        )
        rows = [("causal", r), ("ceiling", r["ceiling"])]
        if "bidirectional" in r:
            rows.append(("bidir", r["bidirectional"]))
        if "dedicated" in r:
            rows.append(("dedicated causal", r["dedicated"]))
            if "bidirectional" in r["dedicated"]:
                rows.append(("dedicated bidir", r["dedicated"]["bidirectional"]))
        for n, a in r["ablations"].items():
            if n != "full":
                rows.append((f"  {n}", a))
            if "dedicated" in a:
                rows.append((f"  {n} alone", a["dedicated"]))
        rows += [(f"  {n}", v) for n, v in r.get("variants", {}).items()]
        for label, m in rows:
            print(
                metrics_line(label, m, 22)
                + (
                    f"  agreement {m['agreement_with_first']:.3f}"
                    if "agreement_with_first" in m
                    else ""
                )
            )
        print("confusion (rows truth):")
        for row in r["confusion"]:
            print("  " + " ".join(f"{v:6d}" for v in row))
    print(f"data: {next(iter(result.values()))['data']}")
    return 0


def _wake_sleep(args) -> int:
    from training.evaluate_mamba import WEIGHTS
    from training.evaluate_wake_sleep import evaluate_mmash

    result = evaluate_mmash(args.data, args.weights or WEIGHTS, args.max_nights, args.max_epochs)
    if args.json:
        print(json.dumps(result))
        return 0
    for k, r in result.items():
        print(
            f"== wake/sleep, {k}-class staging ({r['n_epochs']} epochs, "
            f"{' '.join(r['subjects'])}): {r['model']}"
        )
        rows = [("causal", r), ("ceiling", r["ceiling"])]
        if "dedicated" in r:
            rows.append(("dedicated", r["dedicated"]))
        for label, m in rows:
            print(metrics_line(label, m, 10))
        print("confusion (rows truth awake, asleep):")
        for row in r["confusion"]:
            print("  " + " ".join(f"{v:6d}" for v in row))
    print(f"data: {next(iter(result.values()))['data']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
