"""Causal Mamba training path: the fast scan, real ANNE exports (EDF written with edfio), a
training smoke run that resumes exactly, and the Walch evaluation's JSON on a tiny folder."""

import shutil

import edfio
import numpy as np
import pytest
import torch

from edge.devices import load_device
from edge.features import reference_frame_features
from firmware_sim.resynth import data_root
from tests.commands import run_json
from training.data.anne import (
    FeatureStats,
    Night,
    anne_export,
    keep_mask,
    per_second_stages,
    to_classes,
)
from training.models.mamba import fast_scan, sequential_scan
from training.splits import load as load_split
from training.train import main as train_main
from training.train_mamba import StagingLoss

ANNE = load_device("anne")
KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "kappa", "mcc", "n_epochs", "confusion"}


def test_fast_scan_equals_the_sequential_recurrence_with_exact_gradients():
    g = torch.Generator().manual_seed(0)
    decay = torch.rand(3, 257, 4, 5, generator=g, dtype=torch.float64) * 0.6 + 0.4
    drive = torch.randn(3, 257, 4, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(fast_scan(decay, drive), sequential_scan(decay, drive))
    small = (decay[:, :30].clone().requires_grad_(), drive[:, :30].clone().requires_grad_())
    assert torch.autograd.gradcheck(fast_scan, small)


def test_class_maps_and_sensor_masks():
    y = np.array([0, 1, 2, 3, 4, -1])
    assert to_classes(y, 4).tolist() == [0, 1, 1, 2, 3, -1]
    assert to_classes(y, 3).tolist() == [0, 1, 1, 1, 2, -1]
    assert keep_mask(("acc",)).sum() == 36 and keep_mask(("temp_chest", "ecg", "acc")).sum() == 88
    assert per_second_stages(np.array([2, 4]), 75).tolist() == [2] * 30 + [4] * 30 + [-1] * 15
    stats = FeatureStats.fit([Night(np.array([[1.0, np.nan], [3.0, 5.0]]), np.zeros(2), "a")])
    assert stats.apply(np.array([[2.0, np.nan]])).tolist() == [[0.0, 0.0]]  # missing → 0


def write_anne_edf(path, seconds=300, seed=0):
    rng = np.random.default_rng(seed)
    sig = []
    for stream in ANNE.streams.values():
        labels = stream.file_labels or tuple((stream.name,) for _ in stream.axes)
        for axis in range(stream.n_axes):
            n = int(seconds * stream.rate_hz)
            base = 34.0 if stream.name.startswith("temp") else 0.0
            data = base + rng.standard_normal(n) * (0.1 if base else 1.0)
            sig.append(
                edfio.EdfSignal(
                    data, stream.rate_hz, label=labels[axis][0], physical_range=(-50.0, 50.0)
                )
            )
    edfio.Edf(sig).write(path)
    return edfio.read_edf(path)


def test_real_anne_export_with_a_csv_hypnogram(tmp_path):
    edf_path = tmp_path / "night01.edf"
    edf = write_anne_edf(edf_path)
    (tmp_path / "night01-hypnogram.csv").write_text(
        "epoch,stage\n"
        + "".join(f"{i},{s}\n" for i, s in enumerate("W N1 N2 N3 R ? N2 N2 W W".split()))
    )
    night = anne_export(edf_path)
    assert night.x.shape == (300, 140)
    assert night.y[::30].tolist() == [0, 1, 2, 3, 4, -1, 2, 2, 0, 0]
    # the same features as the runtime's chain on the file's own samples
    signals = {
        "ecg": edf.get_signal("ECG").data[None],
        "ppg": edf.get_signal("PPG").data[None],
        "acc": np.stack([edf.get_signal(f"ACC {a}").data for a in "XYZ"]),
        "temp_chest": edf.get_signal("Temp chest").data[None],
        "temp_finger": edf.get_signal("Temp finger").data[None],
    }
    times = {k: np.arange(signals[k].shape[1]) * 1.0 for k in ("temp_chest", "temp_finger")}
    want = reference_frame_features(ANNE.input("mamba"), signals, times).T
    np.testing.assert_allclose(night.x, want.astype(np.float32), rtol=1e-6, atol=1e-6)
    (tmp_path / "night01-hypnogram.csv").unlink()
    with pytest.raises(ValueError, match="no hypnogram"):
        anne_export(edf_path)


def test_mamba_training_smoke_resumes_exactly(tmp_path):
    cache = tmp_path / "cache"
    common = ["mamba", "--max-nights", "2", "--max-epochs", "80", "--crop", "600", "--steps", "2"]
    common += ["--threads", "1", "--seed", "5", "--cache", str(cache), "--classes", "4"]
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train_main([*common, "--epochs", "3", "--out", str(whole)]) == 0
    assert train_main([*common, "--epochs", "2", "--out", str(split)]) == 0
    assert train_main([*common, "--epochs", "3", "--out", str(split), "--resume"]) == 0
    a = torch.load(whole / "last.pt", weights_only=False)["model"]
    b = torch.load(split / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    best = torch.load(split / "best.pt", weights_only=False)
    assert best["config"]["classes"] == 4 and len(best["stats"]["mean"]) == 140


def test_walch_evaluation_json_on_a_folder_in_the_shared_layout(tmp_path):
    split = load_split("walch")
    folder = tmp_path / "sleep_accel_walch" / "features"
    folder.mkdir(parents=True)
    for s in (split["subjects"]["test"][0], split["subjects"]["train"][0]):
        shutil.copy(data_root() / "sleep_accel_walch" / "features" / f"{s}.npz", folder)
    r = run_json(
        "training.evaluate", "--model", "mamba", "--dataset", "walch",
        "--data", str(tmp_path / "sleep_accel_walch"), "--max-epochs", "120", "--json",
    )  # fmt: skip
    assert set(r) == {"3", "4", "5"}
    for k, res in r.items():
        assert KEYS <= set(res) and KEYS <= set(res["ceiling"])
        assert len(res["confusion"]) == int(k)
        assert res["subjects"] == [split["subjects"]["test"][0]]  # the training subject is skipped
        assert res["n_epochs"] == res["ceiling"]["n_epochs"] > 100  # the same epochs
        assert {"full", "chest", "acc"} == set(res["ablations"])
        assert KEYS <= set(res["bidirectional"])


def test_wake_sleep_loss_scores_only_p_wake_on_mmash_crops():
    """Staged crops: class-weighted cross-entropy; wake/sleep crops: balanced binary
    cross-entropy of P(W) against 1 − P(W), blind to how the sleep mass is spread."""
    torch.manual_seed(0)
    logits = torch.randn(2, 50, 5)
    y = torch.stack([torch.randint(0, 5, (50,)), torch.randint(0, 2, (50,))])
    y[1, :5] = -1
    wake_sleep = torch.tensor([False, True])
    class_w, ws_w = torch.rand(5) + 0.5, torch.tensor([3.0, 0.6])
    loss = StagingLoss(class_w, ws_w, weight=0.7)
    got = loss(logits, y, wake_sleep)
    p = torch.softmax(logits.double(), -1)
    ce = -(class_w[y[0]] * torch.log(p[0, torch.arange(50), y[0]])).sum() / class_w[y[0]].sum()
    keep = y[1] >= 0
    p_wake = p[1, keep, 0]
    nll = torch.where(y[1, keep] == 0, -torch.log(p_wake), -torch.log(1 - p_wake))
    w = ws_w[y[1, keep]]
    assert torch.allclose(got.double(), ce + 0.7 * (w * nll).sum() / w.sum(), atol=1e-5)
    shuffled = logits.clone()
    shuffled[1, :, 1:] = shuffled[1, :, 1:].flip(-1)  # sleep mass spread otherwise
    assert torch.allclose(loss(shuffled, y, wake_sleep), got, atol=1e-6)
    assert torch.allclose(
        StagingLoss(class_w, ws_w, weight=0.0)(logits, y, wake_sleep).double(), ce, atol=1e-5
    )


def test_mmash_wake_sleep_evaluation_json(tmp_path):
    split = load_split("mmash")
    test_user, train_user = split["subjects"]["test"][0], split["subjects"]["train"][0]
    for user in (test_user, train_user):
        shutil.copytree(data_root() / "mmash" / user, tmp_path / "mmash" / user)
    r = run_json(
        "training.evaluate", "--model", "mamba", "--dataset", "mmash",
        "--data", str(tmp_path / "mmash"), "--max-epochs", "600", "--json",
    )  # fmt: skip
    assert set(r) == {"3", "4", "5"}
    for res in r.values():
        assert KEYS <= set(res) and KEYS <= set(res["ceiling"])
        assert res["subjects"] == [test_user]  # the training user is skipped
        assert res["n_epochs"] == res["ceiling"]["n_epochs"] == 600  # the same epochs
        truth = np.array(res["confusion"]).sum(axis=1)
        assert truth[0] == 480 and truth[1] == 120  # 4 h awake before bed, then asleep
