"""Teach the causal Mamba to stage a lossy link as it stages the clean one (self-distillation).

    python -m training.distill_mamba --teacher edge/models/mamba_anne/causal_5class.pt \\
        --out runs/distill [--epochs 8] [--lr 3e-4]

Why: frame loss costs the shipped model kappa almost only through the chest ACC features (a
0.005-0.2 Hz band-pass of the movement: a lost frame changes them for seconds, and no fill can
restore what was never received; ``benchmarks/bridge.py --attribution``). Training from scratch
with lossy copies taught robustness but lost clean accuracy. Here the student starts as the
shipped model (the teacher, frozen) and learns, on every training night and its lossy-link copy
(frames lost at 2-30 %, bridged and masked through the runtime's own chain), to give on the lossy
copy the per-second probabilities the teacher gives on the clean night, while still giving the
teacher's on the clean night: the loss is KL(teacher(clean) ‖ student(lossy)) +
KL(teacher(clean) ‖ student(clean)). The same sensor-subset dropout and bursts are applied to
both copies of a crop (and to the teacher's input), so the any-subset behaviour is kept.

Selection: validation nights (never the test split), clean and their own lossy copies; the
checkpoint with the best mean of the two 5-class balanced accuracies over every named sensor set
(``selection_score``), or with ``--max-clean-drop D`` the best on the lossy copies among the
passes that keep the clean full-set accuracy within D of the teacher's. The checkpoint has the
training checkpoint's format (``export.mamba``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from training.data.anne import SENSOR_SETS, FeatureStats
from training.models.mamba import MambaStager
from training.splits import load as load_split
from training.train import save_atomic
from training.train_mamba import (
    Crops,
    _balanced,
    _mask,
    load_nights,
    predict_epochs,
    selection_score,
)


class PairedCrops:
    """Random crops of the same seconds of a night and of its lossy-link copy, with the same
    modality dropout and bursts applied to both (``Crops`` draws them)."""

    def __init__(self, clean, lossy, stats: FeatureStats, crop_s: int, seed: int) -> None:
        pairs = [(c, lo) for c, lo in zip(clean, lossy, strict=True)]
        self.x = [torch.from_numpy(stats.apply(c.x)) for c, _ in pairs]
        self.xl = [torch.from_numpy(stats.apply(lo.x)) for _, lo in pairs]
        self.n = [min(len(a), len(b)) for a, b in zip(self.x, self.xl, strict=True)]
        self.crop = min(crop_s, min(self.n))
        lengths = np.array([n - self.crop + 1 for n in self.n], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)
        # borrowed for its dropout and burst draws (the same rules as training)
        self.draws = Crops(clean[:1], 5, self.crop, stats, seed + 1, dropout=0.5, burst=0.5)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, xls = [], []
        for _ in range(size):
            i = int(self.rng.choice(len(self.x), p=self.p))
            s = int(self.rng.integers(0, self.n[i] - self.crop + 1))
            x = self.x[i][s : s + self.crop].clone()
            xl = self.xl[i][s : s + self.crop].clone()
            for stream in self.draws.dropped():
                x[:, self.draws.columns[stream]] = 0.0
                xl[:, self.draws.columns[stream]] = 0.0
            if self.draws.rng.random() < self.draws.burst:
                kept = torch.ones_like(x)
                self.draws.bursts(kept)  # the stretches it zeroes, lost from both copies
                x, xl = x * kept, xl * kept
            xs.append(x)
            xls.append(xl)
        return torch.stack(xs), torch.stack(xls)


def _kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Mean per-second KL(teacher ‖ student) over the batch."""
    t = F.log_softmax(teacher_logits, dim=-1)
    s = F.log_softmax(student_logits, dim=-1)
    return (t.exp() * (t - s)).sum(-1).mean()


def _scores(model, nights, stats, classes) -> dict[str, float]:
    return {
        k: _balanced(*predict_epochs(model, nights, stats, classes, _mask(v)))
        for k, v in SENSOR_SETS.items()
    }


def distill(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ck = torch.load(args.teacher, weights_only=True)
    cfg = ck["config"]
    if cfg.get("bidirectional"):
        raise SystemExit("distill: the teacher must be a causal model")
    stats = FeatureStats.from_json(ck["stats"])
    teacher = MambaStager(n_classes=cfg["classes"])
    teacher.load_state_dict(ck["model"])
    teacher.eval().requires_grad_(False)
    student = MambaStager(n_classes=cfg["classes"])
    student.load_state_dict(ck["model"])

    split = load_split("walch")["subjects"]
    train_names = split["train"][: args.max_nights]
    val_names = split["val"][: max(1, (args.max_nights or 10**9) // 4)]
    ws_names = load_split("mmash")["subjects"]["train"][: args.max_nights] if args.mmash else []
    cache, seed, me = Path(args.cache), args.seed_data, args.max_epochs
    clean = load_nights(train_names, cache, seed, me, None)
    lossy = load_nights(train_names, cache, seed, me, None, lossy=True)
    clean += load_nights(ws_names, cache, seed, me, None, mmash=True)
    lossy += load_nights(ws_names, cache, seed, me, None, mmash=True, lossy=True)
    val = load_nights(val_names, cache, seed, me, None)
    val_lossy = load_nights(val_names, cache, seed, me, None, lossy=True)
    crops = PairedCrops(clean, lossy, stats, args.crop, args.seed)
    steps = args.steps or max(1, int(np.ceil(sum(crops.n) / (args.batch * crops.crop))))
    opt = torch.optim.Adam(student.parameters(), lr=args.lr)

    floor = None  # with --max-clean-drop: the clean validation accuracy a pass must keep

    def score(model) -> tuple[float, dict, dict]:
        a = _scores(model, val, stats, cfg["classes"])
        b = _scores(model, val_lossy, stats, cfg["classes"])
        if floor is None:
            return 0.5 * selection_score(a) + 0.5 * selection_score(b), a, b
        return (selection_score(b) if a["full"] >= floor else -1.0), a, b

    best, a0, b0 = score(teacher)
    if args.max_clean_drop is not None:
        floor = a0["full"] - args.max_clean_drop
        best = selection_score(b0)
    history = [{"epoch": 0, "score": best, "clean": a0, "lossy": b0}]
    print(f"distill: teacher score {best:.4f} clean {a0['full']:.3f} lossy {b0['full']:.3f}")
    # what export.mamba reads from a training checkpoint (calibration nights, the manifest)
    provenance = {
        "train_nights": train_names,
        "val_nights": val_names,
        "wake_sleep_train": ws_names,
        "wake_sleep_val": load_split("mmash")["subjects"]["val"] if args.mmash else [],
    }
    teacher_ck = {**ck, **provenance, "config": {**cfg, "distilled": None}}
    save_atomic({**teacher_ck, "epoch": 0, "val_balanced_accuracy": a0["full"]}, out / "best.pt")
    for epoch in range(1, args.epochs + 1):
        student.eval()  # BatchNorm keeps the teacher's statistics (its affine part still learns)
        t0, total = time.perf_counter(), 0.0
        for _ in range(steps):
            x, xl = crops.batch(args.batch)
            with torch.no_grad():
                target = teacher(x)
            opt.zero_grad()
            loss = _kl(target, student(xl)) + args.clean_weight * _kl(target, student(x))
            loss.backward()
            opt.step()
            total += loss.item()
        s, a, b = score(student)
        history.append({"epoch": epoch, "loss": total / steps, "score": s, "clean": a, "lossy": b})
        print(
            f"distill: epoch {epoch}/{args.epochs} loss {total / steps:.4f} score {s:.4f} "
            f"clean {a['full']:.3f} lossy {b['full']:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
        if s > best:
            best = s
            config = {
                **cfg,
                "distilled": {
                    "teacher": str(args.teacher),
                    "lr": args.lr,
                    "epochs": epoch,
                    "clean_weight": args.clean_weight,
                    "max_clean_drop": args.max_clean_drop,
                    "loss": "KL(teacher(clean)|student(lossy)) + KL(teacher(clean)|student(clean))",
                },
            }
            save_atomic(
                {**ck, **provenance, "model": student.state_dict(), "config": config,
                 "epoch": epoch, "val_balanced_accuracy": a["full"]},
                out / "best.pt",
            )  # fmt: skip
        save_atomic({"model": student.state_dict(), "history": history}, out / "last.pt")
    return {"best": best, "history": history}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.distill_mamba", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--teacher", type=Path, required=True, help="causal checkpoint (.pt)")
    ap.add_argument("--out", type=Path, default=Path("runs/distill"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, help="batches per pass (default: one pass of seconds)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=3540)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seed-data", type=int, default=0, help="resynthesis seed of the nights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-nights", type=int)
    ap.add_argument("--max-epochs", type=int, help="only the first N 30-s epochs of a night")
    ap.add_argument("--cache", type=Path, default=Path("runs/anne_cache"))
    ap.add_argument("--no-mmash", dest="mmash", action="store_false")
    ap.add_argument(
        "--clean-weight", type=float, default=1.0, help="weight of the clean-night KL term"
    )
    ap.add_argument(
        "--max-clean-drop",
        type=float,
        help="select the pass best on the lossy validation copies among those whose clean "
        "full-set validation balanced accuracy is within this of the teacher's (default: "
        "the best mean of clean and lossy)",
    )
    args = ap.parse_args(argv)
    result = distill(args)
    print(f"distill: best score {result['best']:.4f} -> {args.out / 'best.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
