"""Causal Mamba evaluation on Walch subjects (``python -m training.evaluate --model mamba``).

Every subject in DIR (the layout of ../shared/data/sleep_accel_walch: ``features/<id>.npz``)
that is not a training or validation subject of the committed split is resynthesised into ANNE
streams from its real heart rate and activity, run through the runtime's feature chain, and
staged from a zero state, one second at a time in effect (the causal model's full-sequence
forward equals its step, tests/test_mamba_model.py). For 3, 4 and 5 classes it reports:

- the causal model with every sensor, and the ablations ``chest`` (ECG, ACC, chest temperature:
  no finger unit) and ``acc`` (accelerometry only), the same weights with the other sensors
  absent (their features 0, as the runtime feeds a missing sensor);
- the bidirectional (offline) variant, for the causal-vs-bidirectional gap;
- the information ceiling: gradient boosting on the real Walch features of the training
  subjects that the resynthesis carries (heart rate, activity count), with the context a causal
  model has (causal means and deviations from 1 minute to the whole night so far, the time since
  the night began), scored on the same epochs (``ceiling_features``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from firmware_sim.resynth.data import data_root
from firmware_sim.resynth.nights import WALCH_STAGE
from training.data.anne import (
    CLASS_NAMES,
    SENSOR_SETS,
    FeatureStats,
    Night,
    epoch_logits,
    keep_mask,
    resynth_walch,
    to_classes,
)
from training.metrics import stage_metrics
from training.models.mamba import MambaStager
from training.splits import load as load_split
from training.splits import seen

WEIGHTS = Path(__file__).resolve().parents[1] / "edge" / "models" / "mamba_anne"


def walch_root(data: Path) -> Path:
    """The data root holding ``sleep_accel_walch/features`` for DIR given either way."""
    if (data / "features").is_dir():
        return (
            data.parent
            if data.name == "sleep_accel_walch"
            else linked_root(data, "sleep_accel_walch")
        )
    if (data / "sleep_accel_walch" / "features").is_dir():
        return data
    raise SystemExit(f"evaluate: no Walch features/ under {data}")


def linked_root(data: Path, folder: str) -> Path:
    """A DIR named otherwise: present it as <tmp>/<folder> → DIR (the shared data layout)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix=f"{folder}-"))
    (root / folder).symlink_to(data.resolve(), target_is_directory=True)
    return root


CONTEXT_EPOCHS = (2, 10, 30, 90, 180, None)  # 1, 5, 15, 45, 90 min and the whole past


def context_features(hr: np.ndarray, count: np.ndarray, t: np.ndarray) -> np.ndarray:
    """[N, F] per epoch: heart rate, activity count and time since the start, and for both
    series their causal mean and standard deviation over the last 1, 5, 15, 45, 90 minutes and
    the whole night so far, and their excess over the night's running minimum."""
    cols = [hr, count, t]
    i = np.arange(hr.size)
    for series in (hr, count):
        c1 = np.cumsum(np.concatenate([[0.0], series]))
        c2 = np.cumsum(np.concatenate([[0.0], series * series]))
        for w in CONTEXT_EPOCHS:
            lo = np.zeros_like(i) if w is None else np.maximum(0, i + 1 - w)
            n = i + 1 - lo
            mean = (c1[i + 1] - c1[lo]) / n
            cols += [mean, np.sqrt(np.maximum((c2[i + 1] - c2[lo]) / n - mean * mean, 0.0))]
        cols.append(series - np.minimum.accumulate(series))
    return np.stack(cols, axis=1)


def ceiling_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A Walch subject's real per-epoch ``context_features`` and five-stage labels."""
    with np.load(path) as z:
        hr, count, t, y = (z[k].astype(np.float64) for k in ("hr", "count", "time", "y"))
    labels = np.array([WALCH_STAGE[int(v)] for v in y], dtype=np.int8)
    return context_features(hr, count, t), labels


def ceiling_classifier(subjects: list[str], root: Path, n_classes: int):
    """Gradient boosting, class-balanced like the model's loss (its checkpoint is chosen on
    balanced accuracy too); measured on the 5-class test subjects: kappa 0.36 with this
    context against 0.27 with the epoch's own features and 15 minutes of context, unbalanced."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    folder = root / "sleep_accel_walch" / "features"
    feats = [ceiling_features(folder / f"{s}.npz") for s in subjects]
    x = np.concatenate([f[0] for f in feats])
    y = to_classes(np.concatenate([f[1] for f in feats]), n_classes)
    return HistGradientBoostingClassifier(
        max_iter=200, random_state=0, class_weight="balanced"
    ).fit(x, y)


def load_weights(path: Path) -> tuple[MambaStager, FeatureStats]:
    ck = torch.load(path, weights_only=False)
    cfg = ck["config"]
    model = MambaStager(n_classes=cfg["classes"], bidirectional=cfg["bidirectional"])
    model.load_state_dict(ck["model"])
    return model.eval(), FeatureStats.from_json(ck["stats"])


def causal_models(weights: Path):
    """(class count, model, normalisation) of each causal_<K>class.pt in ``weights``."""
    for k in (3, 4, 5):
        path = weights / f"causal_{k}class.pt"
        if path.exists():
            yield (k, *load_weights(path))


def night_logits(model: MambaStager, stats: FeatureStats, night: Night, mask=None) -> np.ndarray:
    x = stats.apply(night.x)
    if mask is not None:
        x[:, ~mask] = 0.0
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


def evaluate_walch(
    data: Path,
    weights: Path = WEIGHTS,
    max_nights: int | None = None,
    max_epochs: int | None = None,
    variants=None,
) -> dict:
    root = walch_root(data)
    split = load_split("walch")
    trained_on = seen("walch")
    subjects = sorted(
        p.stem
        for p in (root / "sleep_accel_walch" / "features").glob("*.npz")
        if p.stem not in trained_on
    )[:max_nights]
    if not subjects:
        raise SystemExit(f"evaluate: no held-out Walch subject under {data}")
    nights = [resynth_walch(s, root=root, max_epochs=max_epochs) for s in subjects]
    result: dict = {}
    for k, model, stats in causal_models(weights):
        runs = {name: ([], []) for name in SENSOR_SETS}
        for night in nights:
            for name, sensors in SENSOR_SETS.items():
                mask = None if name == "full" else keep_mask(sensors)
                lg, ye = epoch_logits(
                    night_logits(model, stats, night, mask), to_classes(night.y, k)
                )
                runs[name][0].append(ye)
                runs[name][1].append(lg.argmax(axis=1))
        y = np.concatenate(runs["full"][0])
        labels = CLASS_NAMES[k]
        out = stage_metrics(y, np.concatenate(runs["full"][1]), labels)
        out["ablations"] = {
            name: stage_metrics(np.concatenate(r[0]), np.concatenate(r[1]), labels)
            for name, r in runs.items()
        }
        bidir_path = weights / f"bidirectional_{k}class.pt"
        if bidir_path.exists():
            bmodel, bstats = load_weights(bidir_path)
            bp = [
                epoch_logits(night_logits(bmodel, bstats, n), to_classes(n.y, k))[0].argmax(1)
                for n in nights
            ]
            out["bidirectional"] = stage_metrics(y, np.concatenate(bp), labels)
            out["causal_minus_bidirectional_balanced_accuracy"] = (
                out["balanced_accuracy"] - out["bidirectional"]["balanced_accuracy"]
            )
        ceiling = ceiling_classifier(split["subjects"]["train"], data_root_for_ceiling(root), k)
        cy, cp = [], []
        for s in subjects:
            fx, fy = ceiling_features(root / "sleep_accel_walch" / "features" / f"{s}.npz")
            if max_epochs:  # the same epochs as the model when nights are cut
                with np.load(root / "sleep_accel_walch" / "features" / f"{s}.npz") as z:
                    ep = np.rint(z["time"] * 3600 / 30).astype(np.int64)
                keep = ep - ep[0] < max_epochs
                fx, fy = fx[keep], fy[keep]
            cy.append(to_classes(fy, k))
            cp.append(ceiling.predict(fx))
        out["ceiling"] = stage_metrics(np.concatenate(cy), np.concatenate(cp), labels)
        out["kappa_minus_ceiling"] = out["kappa"] - out["ceiling"]["kappa"]
        if k == 5 and variants is not None:
            out["variants"] = variants.score(nights)
        out["subjects"] = subjects
        out["data"] = (
            "ANNE streams resynthesised from the real heart rate and activity of held-out Walch "
            "subjects (training/splits/walch.json), real PSG stages"
        )
        result[str(k)] = out
    if not result:
        raise SystemExit(f"evaluate: no causal_<K>class.pt weights in {weights}")
    return result


def data_root_for_ceiling(root: Path) -> Path:
    """Training subjects' real features: the shared data root, else the evaluated one."""
    shared = data_root()
    return shared if (shared / "sleep_accel_walch" / "features").is_dir() else root


class StepVariants:
    """Exported step variants of the bundled 5-class model, stepped through the edge runtime
    one second at a time with carried state; agreement on 30-s epochs with the first."""

    def __init__(self, manifest: Path, names: list[str]) -> None:
        from edge.models.step_runner import load_step_model

        self.names = names
        self.models = [load_step_model(manifest, *n.split(":")) for n in names]

    def score(self, nights: list[Night]) -> dict:
        preds: dict[str, list[np.ndarray]] = {n: [] for n in self.names}
        ys = []
        for night in nights:
            for name, model in zip(self.names, self.models, strict=True):
                conv, h = model.initial_state(1)
                logits = np.empty((len(night), len(model.classes)), np.float32)
                for t in range(len(night)):
                    logits[t : t + 1], conv, h = model.step(night.x[t : t + 1], conv, h)
                lg, ye = epoch_logits(logits, night.y)
                preds[name].append(lg.argmax(1))
            ys.append(ye)
        y = np.concatenate(ys)
        first = np.concatenate(preds[self.names[0]])
        out = {}
        for name in self.names:
            p = np.concatenate(preds[name])
            out[name] = stage_metrics(y, p) | {"agreement_with_first": float((p == first).mean())}
        return out
