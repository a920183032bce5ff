"""Causal Mamba training (``python -m training.train mamba``), the paper's recipe (DESIGN §2.1).

Random 5,000-s crops, batch 4, class-weighted cross-entropy on every labelled second, Adam 1e-3,
the best checkpoint by validation balanced accuracy on 30-s epochs (mean of the 30 one-second
logits, as the runtime stages). Data: ANNE nights resynthesised from the Walch training subjects
of the committed split (or real ANNE exports, ``--anne-dir``), and, for wake/sleep, the MMASH
training users' days (``resynth_mmash``; ``--no-mmash`` leaves them out): a MMASH crop has no
stages, so its loss is the binary cross-entropy of P(W) against P(any sleep stage) = 1 − P(W),
balanced between wake and sleep, scaled by ``--mmash-weight``. Modality dropout: half the crops
lose a random non-empty subset of ECG, PPG, chest and finger temperature (set to 0 after the
fixed normalisation, exactly what the runtime feeds for an absent sensor), so one model serves
devices with fewer sensors. Seeded, resumable (``last.pt`` every epoch, atomic); ``best.pt``
is the best pass on validation, ``final.pt`` the last one. ``--folds K --fold I`` trains on
fold I's complement of the training + validation subjects and validates on fold I
(``training/cross_validate.py`` runs every fold).
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

from training.data.anne import (
    DROPPABLE,
    SENSOR_SETS,
    STAGING_STREAMS,
    FeatureStats,
    Night,
    anne_export,
    epoch_logits,
    epoch_wake_sleep,
    keep_mask,
    link_fault_rate,
    resynth_mmash,
    resynth_walch,
    stream_columns,
    to_classes,
)
from training.models.mamba import MambaStager
from training.splits import load as load_split
from training.train import save_atomic


def load_nights(
    names: list[str],
    cache: Path,
    seed: int,
    max_epochs: int | None,
    anne_dir: Path | None,
    mmash: bool = False,
    lossy: bool = False,
) -> list[Night]:
    """Nights as raw features, cached as float16 .npz (resynthesis + features ~5 s a night;
    a MMASH day ~15 s). ``lossy``: each night's copy seen through a lossy link (its frames
    lost at its ``link_fault_rate``), resynthesised nights only."""
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    kind = "wake_sleep" if mmash else "stages"
    for name in names:
        source = "export" if anne_dir is not None else f"{'mmash-' if mmash else ''}synth{seed}"
        loss = link_fault_rate(name, seed) if lossy else 0.0
        f = cache / f"{name}-{source}{'-lossy' if lossy else ''}-{max_epochs or 'all'}.npz"
        if f.exists():
            with np.load(f) as z:
                out.append(Night(z["x"].astype(np.float32), z["y"], name, kind))
            continue
        if mmash:
            night = resynth_mmash(name, seed, max_epochs=max_epochs, loss=loss)
        elif anne_dir is not None:
            found = [p for p in sorted(anne_dir.iterdir()) if p.stem == name]
            if not found:
                print(f"train: no ANNE export named {name} in {anne_dir}", file=sys.stderr)
                continue
            night = anne_export(found[0])
        else:
            night = resynth_walch(name, seed, max_epochs=max_epochs, loss=loss)
        x16 = night.x.astype(np.float16)
        tmp = f.with_suffix(f".{os.getpid()}.tmp.npz")  # concurrent runs share a cache
        np.savez(tmp, x=x16, y=night.y)
        os.replace(tmp, f)
        out.append(Night(x16.astype(np.float32), night.y, name, kind))
    return out


def cv_fold(
    folds: int, fold: int, max_subjects: int | None = None, seed: int = 0
) -> tuple[list[str], list[str]]:
    """(training, validation) subjects of ``fold`` when the committed split's training and
    validation Walch subjects (the first ``max_subjects`` of them in a seeded order, for smoke
    runs) are cut into ``folds`` groups by subject; the test subjects are never in any fold."""
    if folds < 2:
        raise SystemExit("train: --folds must be 2 or more (one fold validates, the rest train)")
    if not 0 <= fold < folds:
        raise SystemExit(f"train: --fold must be in 0..{folds - 1}")
    subjects = load_split("walch")["subjects"]
    order = np.random.default_rng(seed).permutation(sorted(subjects["train"] + subjects["val"]))
    order = order[:max_subjects]
    groups = [sorted(g.tolist()) for g in np.array_split(order, folds)]
    return sorted(s for i, g in enumerate(groups) if i != fold for s in g), groups[fold]


def export_names(anne_dir: Path) -> list[str]:
    """Recordings in ``anne_dir`` (EDF files or CSV directories) that have a hypnogram."""
    from training.data.anne import find_anne_hypnogram

    return sorted(
        p.stem
        for p in anne_dir.iterdir()
        if (p.suffix.lower() == ".edf" and "-hypnogram" not in p.name or p.is_dir())
        and find_anne_hypnogram(p) is not None
    )


def class_weights(nights: list[Night], n_classes: int) -> torch.Tensor:
    """Inverse class frequency over labelled seconds of staged nights, normalised to mean 1."""
    y = np.concatenate([to_classes(n.y, n_classes) for n in nights if n.kind == "stages"])
    counts = np.bincount(y[y >= 0], minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    return torch.tensor(w / w[w > 0].mean(), dtype=torch.float32)


def wake_sleep_weights(nights: list[Night]) -> torch.Tensor:
    """[awake, asleep] inverse frequency over the wake/sleep nights' labelled seconds, mean 1."""
    y = np.concatenate([n.y for n in nights if n.kind == "wake_sleep"] or [np.zeros(0, np.int8)])
    counts = np.bincount(y[y >= 0], minlength=2).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / 2, 0.0)
    return torch.tensor(
        w / max(w[w > 0].mean(), 1e-12) if (w > 0).any() else w, dtype=torch.float32
    )


class StagingLoss(nn.Module):
    """Class-weighted cross-entropy on staged crops plus, on wake/sleep crops, the balanced
    binary cross-entropy of P(W) against 1 − P(W) (class 0 is W in every class map)."""

    def __init__(self, class_w: torch.Tensor, wake_sleep_w: torch.Tensor, weight: float) -> None:
        super().__init__()
        self.staged = nn.CrossEntropyLoss(weight=class_w, ignore_index=-1)
        self.register_buffer("ws_w", wake_sleep_w)
        self.weight = weight

    def forward(self, logits: torch.Tensor, y: torch.Tensor, wake_sleep: torch.Tensor):
        k = logits.shape[-1]
        total = logits.new_zeros(())
        staged = ~wake_sleep
        if staged.any() and (y[staged] >= 0).any():
            total = total + self.staged(logits[staged].reshape(-1, k), y[staged].reshape(-1))
        ys = y[wake_sleep]
        if self.weight > 0 and (ys >= 0).any():
            lg = logits[wake_sleep]
            log_all = torch.logsumexp(lg, dim=-1)
            log_wake = lg[..., 0] - log_all
            log_sleep = torch.logsumexp(lg[..., 1:], dim=-1) - log_all
            keep = ys >= 0
            target = ys[keep]
            nll = torch.where(target == 0, -log_wake[keep], -log_sleep[keep])
            w = self.ws_w[target]
            total = total + self.weight * (w * nll).sum() / w.sum().clamp_min(1e-12)
        return total


class Crops:
    """Random fixed-length crops across nights (weighted by length), with modality dropout.
    A batch also says which crops come from wake/sleep nights (their y: 0 awake, 1 asleep).

    Modality dropout (what the runtime does with a missing stream: its features become 0, the
    training mean): with probability ``dropout`` a crop loses a set of streams for its whole
    length — half the time one of the named device subsets (``SENSOR_SETS``), else a random set
    that keeps at least one staging stream; with probability ``burst`` it also loses each
    stream for random stretches (lossy links, a strap that slips: gaps too long to bridge).
    ``sensors`` fixes the streams instead (a model trained for one subset alone)."""

    def __init__(
        self,
        nights,
        n_classes,
        crop_s,
        stats: FeatureStats,
        seed,
        dropout=0.5,
        burst=0.0,
        sensors: tuple[str, ...] | None = None,
    ):
        self.x = [torch.from_numpy(stats.apply(n.x)) for n in nights]
        self.y = [
            torch.from_numpy(
                (to_classes(n.y, n_classes) if n.kind == "stages" else n.y).astype(np.int64)
            )
            for n in nights
        ]
        self.wake_sleep = [n.kind == "wake_sleep" for n in nights]
        self.crop = min(crop_s, min(len(y) for y in self.y))
        lengths = np.array([len(y) - self.crop + 1 for y in self.y], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.rng = np.random.default_rng(seed)
        self.dropout, self.burst, self.sensors = dropout, burst, sensors
        cols = stream_columns()
        self.columns = {s: torch.from_numpy(cols[s]) for s in DROPPABLE}
        self.subsets = [v for k, v in SENSOR_SETS.items() if k != "full"]

    def dropped(self) -> list[str]:
        """The streams a crop loses for its whole length."""
        if self.sensors is not None:
            return [s for s in DROPPABLE if s not in self.sensors]
        if self.rng.random() >= self.dropout:
            return []
        if self.rng.random() < 0.5:
            keep = self.subsets[int(self.rng.integers(len(self.subsets)))]
            return [s for s in DROPPABLE if s not in keep]
        while True:
            drop = [s for s in DROPPABLE if self.rng.random() < 0.5]
            if any(s not in drop for s in STAGING_STREAMS):
                return drop

    def bursts(self, x: torch.Tensor) -> None:
        """Random stretches of 1-60 s (about 3 % of the crop per stream) lost in place."""
        for cols in self.columns.values():
            for _ in range(int(self.rng.poisson(self.crop / 1000))):
                a = int(self.rng.integers(0, self.crop))
                x[a : a + int(self.rng.integers(1, 61)), cols] = 0.0

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs, ys, ws = [], [], []
        for _ in range(size):
            i = int(self.rng.choice(len(self.x), p=self.p))
            s = int(self.rng.integers(0, len(self.y[i]) - self.crop + 1))
            x = self.x[i][s : s + self.crop].clone()
            for stream in self.dropped():
                x[:, self.columns[stream]] = 0.0
            if self.burst and self.rng.random() < self.burst:
                self.bursts(x)
            xs.append(x)
            ys.append(self.y[i][s : s + self.crop])
            ws.append(self.wake_sleep[i])
        return torch.stack(xs), torch.stack(ys), torch.tensor(ws)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def selection_score(scores: dict[str, float]) -> float:
    """Validation balanced accuracy that picks the checkpoint: the full sensor set weighs half,
    the mean over the other sets the other half (a model for any subset must not buy them
    with its full-set accuracy); one set alone: its own."""
    others = [v for k, v in scores.items() if k != "full"]
    if "full" not in scores or not others:
        return float(np.mean(list(scores.values())))
    return 0.5 * scores["full"] + 0.5 * float(np.mean(others))


def _mask(sensors: tuple[str, ...] | None) -> np.ndarray | None:
    return None if sensors is None or set(sensors) == set(DROPPABLE) else keep_mask(sensors)


def _balanced(y: np.ndarray, p: np.ndarray) -> float:
    return float(balanced_accuracy_score(y, p)) if len(y) else 0.0


def predict_epochs(
    model: MambaStager, nights: list[Night], stats: FeatureStats, n_classes: int, mask=None
) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) per labelled 30-s epoch over whole nights, from a zero state
    (wake/sleep nights: 0 awake / 1 asleep; don't mix kinds in one call)."""
    ys, ps = [], []
    model.eval()
    with torch.no_grad():
        for n in nights:
            x = stats.apply(n.x)
            if mask is not None:
                x[:, ~mask] = 0.0
            logits = model(torch.from_numpy(x)[None])[0].numpy()
            if n.kind == "wake_sleep":
                ye, pe = epoch_wake_sleep(logits, n.y)
            else:
                lg, ye = epoch_logits(logits, to_classes(n.y, n_classes))
                pe = lg.argmax(axis=1)
            ys.append(ye)
            ps.append(pe)
    return np.concatenate(ys), np.concatenate(ps)


def train_mamba(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.anne_dir is not None:
        names = export_names(args.anne_dir)
        n_val = max(1, len(names) // 5)
        train_names, val_names = names[n_val:], names[:n_val]
    elif args.folds:
        train_names, val_names = cv_fold(args.folds, args.fold, args.max_nights)
    else:
        split = load_split("walch")
        train_names = split["subjects"]["train"][: args.max_nights]
        val_names = split["subjects"]["val"][: max(1, (args.max_nights or 10**9) // 4)]
    cache = Path(args.cache) if args.cache else out / "cache"
    train = load_nights(train_names, cache, args.seed, args.max_epochs, args.anne_dir)
    val = load_nights(val_names, cache, args.seed, args.max_epochs, args.anne_dir)
    if not train:
        raise SystemExit("train: no training nights found")
    ws_train_names, ws_val_names = [], []
    if args.mmash and args.anne_dir is None:
        ws_split = load_split("mmash")["subjects"]
        ws_train_names = ws_split["train"][: args.max_nights]
        ws_val_names = ws_split["val"][: max(1, (args.max_nights or 10**9) // 4)]
    ws_train = load_nights(ws_train_names, cache, args.seed, args.max_epochs, None, mmash=True)
    ws_val = load_nights(ws_val_names, cache, args.seed, args.max_epochs, None, mmash=True)
    train = train + ws_train
    lossy = []
    if args.link_faults and args.anne_dir is None:  # a lossy-link copy of every training night
        lossy = load_nights(train_names, cache, args.seed, args.max_epochs, None, lossy=True)
        lossy += load_nights(ws_train_names, cache, args.seed, args.max_epochs, None, True, True)
    stats = FeatureStats.fit(train)
    init = None
    if args.init is not None:  # fine-tune: start from these weights, keep their statistics
        init = torch.load(args.init, weights_only=True)
        stats = FeatureStats.from_json(init["stats"])
    weights = class_weights(train, args.classes)
    sensors = SENSOR_SETS[args.sensors] if args.sensors else None
    crops = Crops(
        train + lossy, args.classes, args.crop, stats, args.seed, args.modality_dropout, args.burst,
        sensors,
    )  # fmt: skip
    # model selection: the sensor set trained for, or every named set (selection_score)
    selection = {args.sensors: sensors} if sensors else {k: v for k, v in SENSOR_SETS.items()}
    steps_per_epoch = args.steps or max(
        1, int(np.ceil(sum(len(n) for n in train) / (args.batch * crops.crop)))
    )

    torch.manual_seed(args.seed)
    model = MambaStager(n_classes=args.classes, bidirectional=args.bidirectional)
    if init is not None:
        model.load_state_dict(init["model"])
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = StagingLoss(weights, wake_sleep_weights(train), args.mmash_weight)
    config = {
        "classes": args.classes,
        "bidirectional": args.bidirectional,
        "crop_s": crops.crop,
        "batch": args.batch,
        "lr": args.lr,
        "modality_dropout": args.modality_dropout,
        "burst_dropout": args.burst,
        "link_faults": bool(lossy),
        "sensors": args.sensors,
        "init": str(args.init) if args.init else None,
        "seed": args.seed,
        "data": "real ANNE exports" if args.anne_dir else "Walch subjects resynthesised (ANNE)",
        "wake_sleep_data": "MMASH users resynthesised (ANNE), actigraphy sleep periods"
        if ws_train
        else None,
        "mmash_weight": args.mmash_weight if ws_train else 0.0,
    }
    state = {"epoch": 0, "best": -1.0, "history": []}
    last = out / "last.pt"
    if args.resume and last.exists():
        ck = torch.load(last, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        crops.set_state(ck["crops"])
        torch.set_rng_state(ck["torch_rng"])
        state = ck["state"]
        print(f"train: resumed at epoch {state['epoch']} (best {state['best']:.3f})")

    from rich.progress import Progress

    label = f"Mamba {args.classes}-class {'bidirectional' if args.bidirectional else 'causal'}"
    with Progress(disable=not sys.stdout.isatty()) as progress:
        task = progress.add_task(label, total=args.epochs, completed=state["epoch"])
        while state["epoch"] < args.epochs:
            model.train()
            t0, total = time.perf_counter(), 0.0
            for _ in range(steps_per_epoch):
                x, y, wake_sleep = crops.batch(args.batch)
                opt.zero_grad()
                loss = loss_fn(model(x), y, wake_sleep)
                loss.backward()
                opt.step()
                total += loss.item()
            scores = {
                k: _balanced(*predict_epochs(model, val, stats, args.classes, _mask(v)))
                for k, v in selection.items()
            }
            val_bacc = selection_score(scores)
            ws_bacc = None
            if ws_val:
                yw, pw = predict_epochs(model, ws_val, stats, args.classes)
                ws_bacc = float(balanced_accuracy_score(yw, pw)) if len(yw) else None
            state["epoch"] += 1
            state["history"].append(
                {
                    "epoch": state["epoch"],
                    "loss": total / steps_per_epoch,
                    "val_balanced_accuracy": val_bacc,
                    "val_balanced_accuracy_by_sensors": scores,
                    "val_wake_sleep_balanced_accuracy": ws_bacc,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if val_bacc > state["best"]:
                state["best"] = val_bacc
                save_atomic(
                    {
                        "model": model.state_dict(),
                        "config": config,
                        "stats": stats.to_json(),
                        "epoch": state["epoch"],
                        "val_balanced_accuracy": val_bacc,
                        "train_nights": train_names,
                        "val_nights": val_names,
                        "wake_sleep_train": ws_train_names,
                        "wake_sleep_val": ws_val_names,
                    },
                    out / "best.pt",
                )
            save_atomic(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "crops": crops.state(),
                    "torch_rng": torch.get_rng_state(),
                    "state": state,
                },
                last,
            )
            progress.update(task, advance=1)
            print(
                f"train: epoch {state['epoch']}/{args.epochs} loss {total / steps_per_epoch:.4f} "
                f"val balanced accuracy {val_bacc:.3f}"
                + (f", wake/sleep {ws_bacc:.3f}" if ws_bacc is not None else ""),
                flush=True,
            )
    save_atomic(  # the weights after the last pass, unselected (cross-validation scores these)
        {
            "model": model.state_dict(),
            "config": config,
            "stats": stats.to_json(),
            "epoch": state["epoch"],
            "train_nights": train_names,
            "val_nights": val_names,
        },
        out / "final.pt",
    )
    summary = {
        **config,
        "train_nights": train_names,
        "val_nights": val_names,
        "wake_sleep_train": ws_train_names,
        "wake_sleep_val": ws_val_names,
        "train_seconds": int(sum(len(n) for n in train)),
        "steps_per_epoch": steps_per_epoch,
        **state,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def load_checkpoint(path: Path) -> tuple[MambaStager, FeatureStats, dict]:
    ck = torch.load(path, weights_only=True)
    cfg = ck["config"]
    model = MambaStager(n_classes=cfg["classes"], bidirectional=cfg["bidirectional"])
    model.load_state_dict(ck["model"])
    return model.eval(), FeatureStats.from_json(ck["stats"]), ck


def add_arguments(sub) -> None:
    m = sub.add_parser("mamba", help="causal Mamba on ANNE features (Walch resynthesis)")
    m.add_argument("--out", default="runs/mamba")
    m.add_argument("--classes", type=int, choices=[3, 4, 5], default=5)
    m.add_argument("--bidirectional", action="store_true", help="the paper's offline variant")
    m.add_argument("--epochs", type=int, default=40)
    m.add_argument("--steps", type=int, help="batches per epoch (default: one pass of seconds)")
    m.add_argument("--batch", type=int, default=4)
    m.add_argument("--crop", type=int, default=5000, help="crop length in seconds")
    m.add_argument("--lr", type=float, default=1e-3)
    m.add_argument(
        "--modality-dropout", type=float, default=0.5, help="share of crops losing streams"
    )
    m.add_argument(
        "--burst", type=float, default=0.5, help="share of crops losing streams in stretches"
    )
    m.add_argument(
        "--sensors",
        choices=sorted(SENSOR_SETS),
        help="train for this sensor set alone (a comparison model for the any-subset one)",
    )
    m.add_argument("--init", type=Path, help="fine-tune from this checkpoint (best.pt)")
    m.add_argument(
        "--no-link-faults",
        dest="link_faults",
        action="store_false",
        help="leave out the lossy-link copy of each training night (frames lost at 2-30 %%, "
        "bridged and masked as at run time)",
    )
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument(
        "--max-nights",
        type=int,
        help="use only the first N training subjects (with --folds: N subjects in all)",
    )
    m.add_argument("--max-epochs", type=int, help="use only the first N 30-s epochs a night")
    m.add_argument("--cache", help="feature cache directory (default OUT/cache)")
    m.add_argument("--anne-dir", type=Path, help="train on real ANNE exports with hypnograms")
    m.add_argument(
        "--no-mmash",
        dest="mmash",
        action="store_false",
        help="leave out the MMASH wake/sleep days (kept by default for resynthesised training)",
    )
    m.add_argument(
        "--mmash-weight", type=float, default=0.2, help="weight of the wake/sleep loss term"
    )
    m.add_argument("--resume", action="store_true")
    m.add_argument(
        "--folds",
        type=int,
        help="cross-validation: cut the training + validation Walch subjects into N folds",
    )
    m.add_argument("--fold", type=int, default=0, help="with --folds: the fold validated on")
