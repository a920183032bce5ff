"""Training: ``python -m training.train ulw|mamba [options]`` (mamba: ``training/train_mamba.py``).

ULW-SleepNet on Sleep-EDF nights resynthesised from their real band powers (training subjects
of the committed split), or on real PSG EDF pairs (``--psg-dir``: Sleep-EDF ``*-PSG.edf`` with
``*-Hypnogram.edf``), with the paper's recipe: cross-entropy, Adam (amsgrad), lr 1e-3, cosine
decay with warm restarts, batch 32. Seeded; a rich progress bar; every epoch writes an atomic
checkpoint (``last.pt``) and the best by validation balanced accuracy (``best.pt``);
``--resume`` continues exactly where ``last.pt`` stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score
from torch import nn

from training.data.psg import Epochs, resynth_sleep_edf, sleep_edf_pair
from training.models.ulw_sleepnet import ULWSleepNet
from training.splits import load as load_split


def load_nights(
    names: list[str], cache: Path, seed: int, max_epochs: int | None, psg_dir: Path | None
) -> list[Epochs]:
    """Nights as Epochs, cached as float16 .npz (resynthesis costs ~3 s a night)."""
    cache.mkdir(parents=True, exist_ok=True)
    source = "edf" if psg_dir is not None else f"synth{seed}"  # never mix real and synthetic
    out, missing = [], []
    for name in names:
        f = cache / f"{name}-{source}-{max_epochs or 'all'}.npz"
        if f.exists():
            with np.load(f) as z:
                out.append(Epochs(z["x"].astype(np.float32), z["y"], name))
            continue
        if psg_dir is not None:
            files = sorted(psg_dir.glob(f"{name}*-PSG.edf"))
            if not files:
                missing.append(name)
                continue
            e = sleep_edf_pair(files[0])
        else:
            e = resynth_sleep_edf(name, seed, max_epochs=max_epochs)
        x16 = e.x.astype(np.float16)  # train on exactly what the cache holds, fresh or resumed
        tmp = f.with_suffix(".tmp.npz")
        np.savez(tmp, x=x16, y=e.y)
        os.replace(tmp, f)
        out.append(Epochs(x16.astype(np.float32), e.y, name))
    if missing:
        print(
            f"train: {len(missing)} of {len(names)} split nights have no *-PSG.edf in "
            f"{psg_dir}: {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}",
            file=sys.stderr,
        )
    return out


def stack(nights: list[Epochs]) -> tuple[torch.Tensor, torch.Tensor]:
    x = np.concatenate([n.x for n in nights]) if nights else np.zeros((0, 4, 3000), np.float32)
    y = np.concatenate([n.y for n in nights]) if nights else np.zeros(0, np.int8)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))


def recalibrate_bn(
    model: nn.Module, x: torch.Tensor, seed: int, batch: int = 64, max_batches: int = 100
) -> None:
    """Precise BN: recompute every BatchNorm's running statistics as a cumulative average over
    training batches, with the final weights and dropout off (as at inference). The EMA with
    Keras' momentum lags fast-changing weights, and dropout in training shifts the variance the
    next block's BN sees; both made eval-mode outputs drift from training (kappa 0.07 vs 0.67
    with the same weights before this). Deterministic given weights, data and seed."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
        bn.train()
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)[: batch * max_batches]
    with torch.no_grad():
        for i in range(0, len(order), batch):
            model(x[order[i : i + batch]].float())
    for bn, m in zip(bns, momenta, strict=True):
        bn.momentum = m
    model.eval()


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train_ulw(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split("sleep-edf")
    train_names = split["nights"]["train"][: args.max_nights]
    val_names = split["nights"]["val"][: max(1, (args.max_nights or 10**9) // 4)]
    cache = out / "cache"
    train_x, train_y = stack(
        load_nights(train_names, cache, args.seed, args.max_epochs, args.psg_dir)
    )
    val_x, val_y = stack(load_nights(val_names, cache, args.seed, args.max_epochs, args.psg_dir))
    if not len(train_y):
        raise SystemExit("train: no training epochs found")

    torch.manual_seed(args.seed)
    model = ULWSleepNet(4)
    std = train_x.float().std(dim=(0, 2))
    model.input_scale.copy_(1.0 / torch.clamp(std, min=1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, amsgrad=True)
    steps_per_epoch = max(1, int(np.ceil(len(train_y) / args.batch)))
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10 * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    state = {"epoch": 0, "best": -1.0, "history": []}
    last = out / "last.pt"
    if args.resume and last.exists():
        ck = torch.load(last, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["torch_rng"])  # dropout draws from the global generator
        state = ck["state"]
        print(
            f"train: resumed at epoch {state['epoch']} (best val balanced accuracy "
            f"{state['best']:.3f})"
        )

    from rich.progress import Progress

    loss_fn = nn.CrossEntropyLoss()
    with Progress(disable=not sys.stdout.isatty()) as progress:
        task = progress.add_task("ULW-SleepNet", total=args.epochs, completed=state["epoch"])
        while state["epoch"] < args.epochs:
            model.train()
            order = torch.randperm(len(train_y), generator=gen)
            t0, total = time.perf_counter(), 0.0
            for i in range(0, len(order), args.batch):
                idx = order[i : i + args.batch]
                opt.zero_grad()
                loss = loss_fn(model(train_x[idx].float()), train_y[idx])
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            recalibrate_bn(model, train_x, seed=args.seed + state["epoch"])
            val_bacc = float(balanced_accuracy_score(val_y.numpy(), model.predict(val_x).numpy()))
            state["epoch"] += 1
            state["history"].append(
                {
                    "epoch": state["epoch"],
                    "loss": total / len(train_y),
                    "val_balanced_accuracy": val_bacc,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if val_bacc > state["best"]:
                state["best"] = val_bacc
                save_atomic(
                    {
                        "model": model.state_dict(),
                        "epoch": state["epoch"],
                        "val_balanced_accuracy": val_bacc,
                    },
                    out / "best.pt",
                )
            save_atomic(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "sched": sched.state_dict(),
                    "gen": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "state": state,
                },
                last,
            )
            progress.update(task, advance=1)
            print(
                f"train: epoch {state['epoch']}/{args.epochs} loss {total / len(train_y):.4f} "
                f"val balanced accuracy {val_bacc:.3f}",
                flush=True,
            )
    summary = {
        "train_nights": train_names,
        "val_nights": val_names,
        "train_epochs": int(len(train_y)),
        "val_epochs": int(len(val_y)),
        **state,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.train", description=__doc__.split("\n")[0]
    )
    sub = ap.add_subparsers(dest="model", required=True)
    u = sub.add_parser("ulw", help="ULW-SleepNet on Sleep-EDF")
    u.add_argument("--out", default="runs/ulw")
    u.add_argument("--epochs", type=int, default=50)
    u.add_argument("--batch", type=int, default=32)
    u.add_argument("--lr", type=float, default=1e-3)
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--threads", type=int, default=2)
    u.add_argument("--max-nights", type=int, help="use only the first N training nights")
    u.add_argument("--max-epochs", type=int, help="use only the first N epochs of each night")
    u.add_argument("--psg-dir", type=Path, help="train on real Sleep-EDF PSG/hypnogram EDFs")
    u.add_argument("--resume", action="store_true")
    from training.train_mamba import add_arguments, train_mamba

    add_arguments(sub)
    args = ap.parse_args(argv)
    if args.model == "mamba":
        train_mamba(args)
    else:
        train_ulw(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
