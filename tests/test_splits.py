"""Committed splits are by subject: no subject and no night is in two splits."""

import json
from pathlib import Path

import pytest

from training.splits import load

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dataset", ["sleep-edf", "walch"])
def test_splits_are_disjoint_by_subject(dataset):
    s = load(dataset)
    subjects = [set(s["subjects"][k]) for k in ("train", "val", "test")]
    nights = [set(s["nights"][k]) for k in ("train", "val", "test")]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not subjects[a] & subjects[b] and not nights[a] & nights[b]
    if dataset == "sleep-edf":
        for k in ("train", "val", "test"):
            assert {n[3:5] for n in s["nights"][k]} == set(s["subjects"][k])
    total = sum(len(n) for n in nights)
    assert total == {"sleep-edf": 151, "walch": 30}[dataset]


def test_split_files_are_what_the_generator_writes(tmp_path, monkeypatch):
    import training.splits as sp

    monkeypatch.setattr(sp, "OUT", tmp_path)
    sp.main()
    for name in ("sleep-edf", "walch"):
        assert json.loads((tmp_path / f"{name}.json").read_text()) == load(name)
