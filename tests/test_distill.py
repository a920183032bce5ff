"""Self-distillation for lossy links (training.distill_mamba): paired crops and a smoke run."""

import numpy as np
import torch

from training.data.anne import FeatureStats, Night
from training.distill_mamba import PairedCrops, _kl
from training.distill_mamba import main as distill_main
from training.train import main as train_main


def test_paired_crops_lose_the_same_streams_and_stretches_in_both_copies():
    rng = np.random.default_rng(0)
    n = 900
    clean = [Night(np.ones((n, 140), np.float32), np.zeros(n, np.int8), f"c{i}") for i in range(3)]
    lossy = [
        Night(np.full((n, 140), 2, np.float32), np.zeros(n, np.int8), f"c{i}") for i in range(3)
    ]
    stats = FeatureStats(np.zeros(140, np.float32), np.ones(140, np.float32))
    crops = PairedCrops(clean, lossy, stats, crop_s=600, seed=int(rng.integers(1000)))
    zeroed = 0
    for _ in range(20):
        x, xl = crops.batch(4)
        assert x.shape == xl.shape == (4, 600, 140)
        assert torch.equal(x == 0, xl == 0)  # dropout and bursts hit both copies alike
        assert torch.all((x == 0) | (x == 1)) and torch.all((xl == 0) | (xl == 2))
        zeroed += int((x == 0).any(dim=1).sum())
    assert zeroed > 0  # some streams were dropped (half the crops lose a set)


def test_kl_is_zero_for_equal_logits_and_positive_otherwise():
    a = torch.randn(2, 7, 5)
    assert float(_kl(a, a)) < 1e-6
    assert float(_kl(a, a + torch.randn(2, 7, 5))) > 0


def test_distillation_smoke_starts_from_the_teacher_and_keeps_its_format(tmp_path):
    cache = tmp_path / "cache"
    common = ["--max-nights", "2", "--max-epochs", "60", "--threads", "1", "--cache", str(cache)]
    teacher_dir = tmp_path / "teacher"
    assert train_main(["mamba", *common, "--crop", "600", "--steps", "2", "--epochs", "1",
                       "--out", str(teacher_dir)]) == 0  # fmt: skip
    teacher = torch.load(teacher_dir / "best.pt", weights_only=True)
    out = tmp_path / "distill"
    args = [*common, "--teacher", str(teacher_dir / "best.pt"), "--out", str(out)]
    assert distill_main([*args, "--epochs", "1", "--steps", "2", "--crop", "600"]) == 0
    last = torch.load(out / "last.pt", weights_only=True)
    assert [h["epoch"] for h in last["history"]] == [0, 1]
    assert set(last["history"][1]["clean"]) == set(last["history"][1]["lossy"]) >= {"full", "acc"}
    assert any(not torch.equal(last["model"][k], teacher["model"][k]) for k in teacher["model"])
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["stats"] == teacher["stats"]  # the teacher's normalisation, unchanged
    assert best["config"]["classes"] == teacher["config"]["classes"]
    assert "distilled" in best["config"]
    assert best["train_nights"] and best["val_nights"]  # what export.mamba calibrates on
