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


def test_precise_bn_matches_inference_statistics():
    """After recalibration each BN's running statistics equal the statistics of its input at
    inference (dropout off) over the same data."""
    from training.models.ulw_sleepnet import ULWSleepNet
    from training.train import recalibrate_bn

    torch.manual_seed(0)
    m = ULWSleepNet(4)
    x = torch.randn(128, 4, 3000) * torch.tensor([25.0, 20.0, 40.0, 5.0])[None, :, None]
    m.input_scale.copy_(1 / torch.tensor([25.0, 20.0, 40.0, 5.0]))
    recalibrate_bn(m, x, seed=1, batch=128, max_batches=1)  # one batch: the exact statistics
    bns = [mod for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm1d)]
    seen = {}
    hooks = [
        bn.register_forward_hook(lambda mod, i, o, k=k: seen.__setitem__(k, i[0]))
        for k, bn in enumerate(bns)
    ]
    m.eval()
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    for k, bn in enumerate(bns):
        torch.testing.assert_close(bn.running_mean, seen[k].mean(dim=(0, 2)), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, seen[k].var(dim=(0, 2)), rtol=1e-3, atol=1e-6)
    assert all(bn.momentum == 0.01 for bn in bns) and not m.training


def test_real_and_synthetic_nights_never_share_a_cache(tmp_path):
    """A real-EDF run reads real files even where a resynthesised cache already exists, and
    reports split nights it cannot find instead of silently training on fewer."""
    from tests.commands import run

    tiny = ["--max-nights", "1", "--max-epochs", "30", "--epochs", "1", "--out", str(tmp_path)]
    assert main(["ulw", *tiny, "--threads", "1"]) == 0
    empty = tmp_path / "no_edfs"
    empty.mkdir()
    out = run("training.train", "ulw", *tiny, "--psg-dir", str(empty))
    assert out.returncode != 0 and "no training epochs found" in out.stderr
    assert "have no *-PSG.edf" in out.stderr
