"""Subject-wise train/validation/test splits, generated once (seeded) and committed as JSON.

    python -m training.splits            # rewrites training/splits/*.json from ../shared/data

Every night of a subject lands in one split: Sleep-EDF SC records are SC4<ss><n>, ss the subject;
Walch has one night per subject; MMASH one day and night per user. The hidden test set (one
whole subject per dataset) is not in ../shared/data at all; these splits divide what is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from firmware_sim.resynth.data import data_root

OUT = Path(__file__).resolve().parent / "splits"
FRACTIONS = (0.7, 0.1, 0.2)  # train, validation, test


def split_subjects(subjects: list[str], seed: int) -> dict[str, list[str]]:
    order = list(np.random.default_rng(seed).permutation(sorted(subjects)))
    n = len(order)
    n_train, n_val = round(FRACTIONS[0] * n), round(FRACTIONS[1] * n)
    return {
        "train": sorted(order[:n_train]),
        "val": sorted(order[n_train : n_train + n_val]),
        "test": sorted(order[n_train + n_val :]),
    }


def sleep_edf(root: Path) -> dict:
    nights = sorted(p.stem for p in (root / "sleep_edf" / "bandpower_features").glob("SC*.npz"))
    by_subject: dict[str, list[str]] = {}
    for night in nights:
        by_subject.setdefault(night[3:5], []).append(night)
    subjects = split_subjects(list(by_subject), seed=2)
    return {
        "dataset": "sleep-edf",
        "unit": "subject (SC4<ss><n>: ss)",
        "subjects": subjects,
        "nights": {k: sorted(n for s in v for n in by_subject[s]) for k, v in subjects.items()},
    }


def _one_night_each(dataset: str, unit: str, subjects: list[str], seed: int) -> dict:
    split = split_subjects(subjects, seed)
    return {"dataset": dataset, "unit": unit, "subjects": split, "nights": split}


def walch(root: Path) -> dict:
    subjects = sorted(p.stem for p in (root / "sleep_accel_walch" / "features").glob("*.npz"))
    return _one_night_each("walch", "subject (one night each)", subjects, seed=3)


def mmash(root: Path) -> dict:
    from firmware_sim.resynth.mmash import read_csv_gz

    users = sorted(
        p.name
        for p in (root / "mmash").glob("user_*")
        if read_csv_gz(p / "sleep.csv.gz").get("Onset Time")  # no sleep period: no labels
    )
    unit = "user (one day and night each; users without a sleep period left out)"
    return _one_night_each("mmash", unit, users, seed=4)


def load(dataset: str) -> dict:
    path = OUT / f"{dataset}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def seen(dataset: str) -> set[str]:
    """Training and validation subjects: never scored by an evaluation."""
    subjects = load(dataset)["subjects"]
    return set(subjects["train"]) | set(subjects["val"])


def main() -> None:
    root = data_root()
    OUT.mkdir(exist_ok=True)
    for name, make in (("sleep-edf", sleep_edf), ("walch", walch), ("mmash", mmash)):
        (OUT / f"{name}.json").write_text(json.dumps(make(root), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {OUT / name}.json")


if __name__ == "__main__":
    main()
