"""Training smoke on tiny resynthesised data: it runs, checkpoints, and resumes exactly."""

import json

import torch

from training.train import main


def weights(path):
    return torch.load(path, weights_only=False)["model"]


def test_train_checkpoints_and_resumes_exactly(tmp_path):
    common = ["ulw", "--max-nights", "2", "--max-epochs", "40", "--threads", "1", "--seed", "3"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main([*common, "--epochs", "3", "--out", str(whole)]) == 0
    assert main([*common, "--epochs", "2", "--out", str(split)]) == 0
    assert main([*common, "--epochs", "3", "--out", str(split), "--resume"]) == 0
    a, b = weights(whole / "last.pt"), weights(split / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((split / "train_summary.json").read_text())
    assert summary["epoch"] == 3 and len(summary["history"]) == 3
    assert (split / "best.pt").exists()
    assert weights(split / "best.pt")["input_scale"].shape == (4,)
