"""Causal Mamba evaluation on Walch subjects (``python -m training.evaluate --model mamba``).

Every subject in DIR (the layout of ../shared/data/sleep_accel_walch: ``features/<id>.npz``)
that is not a training or validation subject of the committed split is resynthesised into ANNE
streams from its real heart rate and activity, run through the runtime's feature chain, and
staged from a zero state, one second at a time in effect (the causal model's full-sequence
forward equals its step, tests/test_mamba_model.py). ``--split val`` scores the committed
validation subjects instead (to choose between models, never a reported score). For 3, 4 and 5
classes it reports:

- the causal 5-class model (the one the runtime ships; its stage relabelled at 4 and 3
  classes, ``record_model``) with every sensor, and the ablations ``chest`` (ECG, ACC, chest
  temperature: no finger unit) and ``acc`` (accelerometry only), the same weights with the
  other sensors absent (their features 0, as the runtime feeds a missing sensor);
- the bidirectional (offline) variant, for the causal-vs-bidirectional gap;
- at 4 and 3 classes, on the same epochs: the 5-class model's probabilities summed per class
  (``summed_probabilities``) and the dedicated ``causal_<K>class.pt`` models (``dedicated``);
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
    CLASS_MAPS,
    CLASS_NAMES,
    SENSOR_SETS,
    FeatureStats,
    Night,
    epoch_logits,
    keep_mask,
    merge_classes,
    resynth_walch,
    to_classes,
)
from training.metrics import stage_metrics
from training.models.mamba import MambaStager
from training.splits import load as load_split
from training.splits import seen

WEIGHTS = Path(__file__).resolve().parents[1] / "edge" / "models" / "mamba_anne"
# models trained for one sensor set alone: comparisons for the any-subset model, not shipped
SUBSET_WEIGHTS = Path(__file__).resolve().parent / "weights" / "anne_subsets"


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


def ceiling_staged(
    root: Path, train_subjects: list[str], subjects: list[str], k: int, max_epochs: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) at ``k`` classes of the ceiling trained on ``train_subjects`` over
    the epochs of ``subjects`` (the first ``max_epochs`` a night when nights are cut, as the
    model's)."""
    ceiling = ceiling_classifier(train_subjects, data_root_for_ceiling(root), k)
    cy, cp = [], []
    for s in subjects:
        path = root / "sleep_accel_walch" / "features" / f"{s}.npz"
        fx, fy = ceiling_features(path)
        if max_epochs:
            with np.load(path) as z:
                ep = np.rint(z["time"] * 3600 / 30).astype(np.int64)
            keep = ep - ep[0] < max_epochs
            fx, fy = fx[keep], fy[keep]
        cy.append(to_classes(fy, k))
        cp.append(ceiling.predict(fx))
    return np.concatenate(cy), np.concatenate(cp)


def load_weights(path: Path) -> tuple[MambaStager, FeatureStats]:
    ck = torch.load(path, weights_only=True)
    cfg = ck["config"]
    model = MambaStager(n_classes=cfg["classes"], bidirectional=cfg["bidirectional"])
    model.load_state_dict(ck["model"])
    return model.eval(), FeatureStats.from_json(ck["stats"])


def record_model(weights: Path, k: int) -> Path | None:
    """The weights whose staging is scored at ``k`` classes: the 5-class causal model, the one
    the runtime ships, its stages relabelled (N1+N2 light, N1+N2+N3 NREM: what a user of its
    stages reads at fewer classes); without it ``causal_<k>class.pt``."""
    for path in (weights / "causal_5class.pt", weights / f"causal_{k}class.pt"):
        if path.exists():
            return path
    return None


def model_label(path: Path, k: int) -> str:
    classes = torch.load(path, weights_only=True)["config"]["classes"]
    relabelled = f", its stages relabelled {' | '.join(group_names(k))}" if classes != k else ""
    return f"{path.name}{relabelled}"


def group_names(k: int) -> list[str]:
    """The five stages in each of ``k`` classes, e.g. ``W``, ``N1+N2``."""
    five = ("W", "N1", "N2", "N3", "REM")
    return [
        "+".join(s for s, c in zip(five, CLASS_MAPS[k], strict=True) if c == group)
        for group in range(k)
    ]


def predict(epoch_logits: np.ndarray, k: int, decode: str = "stage") -> np.ndarray:
    """Class per epoch at ``k`` classes from a model's epoch logits. A model with more classes
    (five) either stages and relabels (``stage``: argmax over the five stages, then
    ``CLASS_MAPS``) or adds up its probabilities per class (``summed``: ``merge_classes``)."""
    if epoch_logits.shape[1] == k:
        return epoch_logits.argmax(axis=1)
    if decode == "stage":
        return to_classes(epoch_logits.argmax(axis=1), k)
    return merge_classes(epoch_logits, k).argmax(axis=1)


class EpochLogits:
    """Per-epoch mean logits of every night (the runtime's 30-s rule), per weights file and
    sensor set, computed once and shared by every class count scored from them."""

    def __init__(self, nights: list[Night]) -> None:
        self.nights = nights
        self._models: dict[Path, tuple[MambaStager, FeatureStats]] = {}
        self._runs: dict[tuple[Path, str], list[tuple[np.ndarray, np.ndarray]]] = {}

    def runs(self, path: Path, sensors: str = "full") -> list[tuple[np.ndarray, np.ndarray]]:
        """(epoch logits, the night's label of each epoch) per night; unlabelled epochs out."""
        if (path, sensors) not in self._runs:
            if path not in self._models:
                self._models[path] = load_weights(path)
            model, stats = self._models[path]
            mask = None if sensors == "full" else keep_mask(SENSOR_SETS[sensors])
            self._runs[path, sensors] = [
                epoch_logits(night_logits(model, stats, n, mask), n.y) for n in self.nights
            ]
        return self._runs[path, sensors]

    def staged(
        self, path: Path, k: int, sensors: str = "full", decode: str = "stage"
    ) -> tuple[np.ndarray, np.ndarray]:
        """(labels as the nights hold them — five stages, or wake/sleep —, predicted class at
        ``k`` classes) per epoch."""
        runs = self.runs(path, sensors)
        return (
            np.concatenate([ye for _, ye in runs]),
            np.concatenate([predict(lg, k, decode) for lg, _ in runs]),
        )

    def stage_metrics(
        self, path: Path, k: int, sensors: str = "full", decode: str = "stage"
    ) -> dict:
        y, p = self.staged(path, k, sensors, decode)
        return stage_metrics(to_classes(y, k), p, CLASS_NAMES[k])


def night_logits(model: MambaStager, stats: FeatureStats, night: Night, mask=None) -> np.ndarray:
    x = stats.apply(night.x)
    if mask is not None:
        x[:, ~mask] = 0.0
    with torch.no_grad():
        return model(torch.from_numpy(x)[None])[0].numpy()


def with_bidirectional(out: dict, logits: EpochLogits, path: Path, k: int) -> dict:
    """Adds the bidirectional twin of ``path`` (same name, ``bidirectional_``) and the gap."""
    twin = path.with_name(path.name.replace("causal_", "bidirectional_"))
    if twin.exists():
        out["bidirectional"] = logits.stage_metrics(twin, k)
        out["causal_minus_bidirectional_balanced_accuracy"] = (
            out["balanced_accuracy"] - out["bidirectional"]["balanced_accuracy"]
        )
    return out


def evaluated_subjects(root: Path, split: str, max_nights: int | None) -> list[str]:
    """``test``: every subject under ``root`` the committed split did not train or validate
    on; ``val``: the committed validation subjects (model selection, never a reported score)."""
    present = sorted(p.stem for p in (root / "sleep_accel_walch" / "features").glob("*.npz"))
    if split == "val":
        chosen = set(load_split("walch")["subjects"]["val"])
        return [s for s in present if s in chosen][:max_nights]
    trained_on = seen("walch")
    return [s for s in present if s not in trained_on][:max_nights]


def with_subset_models(ablations: dict, logits: EpochLogits, folder: Path | None, k: int) -> None:
    """Beside each sensor set's ablation, the model trained for that set alone
    (``folder/subset_<set>.pt``, for comparison only), and the gap between them."""
    if folder is None:
        return
    for name, m in ablations.items():
        path = folder / f"subset_{name}.pt"
        if path.exists():
            m["dedicated"] = logits.stage_metrics(path, k, name)
            m["kappa_minus_dedicated"] = m["kappa"] - m["dedicated"]["kappa"]


def evaluate_walch(
    data: Path,
    weights: Path = WEIGHTS,
    max_nights: int | None = None,
    max_epochs: int | None = None,
    variants=None,
    split: str = "test",
    subset_weights: Path | None = SUBSET_WEIGHTS,
) -> dict:
    root = walch_root(data)
    subjects = evaluated_subjects(root, split, max_nights)
    if not subjects:
        raise SystemExit(f"evaluate: no {split} Walch subject under {data}")
    nights = [resynth_walch(s, root=root, max_epochs=max_epochs) for s in subjects]
    logits = EpochLogits(nights)
    train_subjects = load_split("walch")["subjects"]["train"]
    result: dict = {}
    for k in (3, 4, 5):
        path = record_model(weights, k)
        if path is None:
            continue
        out = logits.stage_metrics(path, k)
        out["model"] = model_label(path, k)
        out["ablations"] = {name: logits.stage_metrics(path, k, name) for name in SENSOR_SETS}
        with_subset_models(out["ablations"], logits, subset_weights, k)
        with_bidirectional(out, logits, path, k)
        cy, cp = ceiling_staged(root, train_subjects, subjects, k, max_epochs)
        out["ceiling"] = stage_metrics(cy, cp, CLASS_NAMES[k])
        out["kappa_minus_ceiling"] = out["kappa"] - out["ceiling"]["kappa"]
        own = weights / f"causal_{k}class.pt"
        if own != path:  # the other ways to stage k classes, on the same epochs
            summed = logits.stage_metrics(path, k, decode="summed")
            out["summed_probabilities"] = summed | {
                "kappa_minus_ceiling": summed["kappa"] - out["ceiling"]["kappa"]
            }
            if own.exists():
                dedicated = logits.stage_metrics(own, k) | {"model": model_label(own, k)}
                dedicated["kappa_minus_ceiling"] = dedicated["kappa"] - out["ceiling"]["kappa"]
                out["dedicated"] = with_bidirectional(dedicated, logits, own, k)
        if k == 5 and variants is not None:
            out["variants"] = variants.score(nights)
        out["subjects"] = subjects
        out["split"] = split
        out["data"] = (
            "ANNE streams resynthesised from the real heart rate and activity of "
            + ("held-out" if split == "test" else "validation (model selection only)")
            + " Walch subjects (training/splits/walch.json), real PSG stages"
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
