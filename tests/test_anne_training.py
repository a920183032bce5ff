"""Causal Mamba training path: the fast scan, real ANNE exports (EDF written with edfio), a
training smoke run that resumes exactly, and the Walch evaluation's JSON on a tiny folder."""

import json
import shutil

import edfio
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from edge.devices import load_device
from edge.features import reference_frame_features
from firmware_sim.resynth import data_root
from tests.commands import run_json
from training.data.anne import (
    CLASS_MAPS,
    FeatureStats,
    Night,
    anne_export,
    keep_mask,
    merge_classes,
    per_second_stages,
    to_classes,
)
from training.evaluate_mamba import WEIGHTS
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


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 20), st.just(5)), elements=st.floats(-30, 30)),
    st.sampled_from([3, 4, 5]),
)
def test_merged_classes_sum_the_probabilities_of_their_stages(logits, k):
    """Reference: softmax, then the probabilities of each group of CLASS_MAPS summed."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    groups = {3: [[0], [1, 2, 3], [4]], 4: [[0], [1, 2], [3], [4]], 5: [[i] for i in range(5)]}
    want = np.stack([p[:, g].sum(axis=1) for g in groups[k]], axis=1)
    np.testing.assert_allclose(np.exp(merge_classes(logits, k)), want, rtol=1e-9, atol=1e-12)


def test_merge_classes_keeps_a_model_of_that_size_and_refuses_other_sizes():
    lg = np.array([[2.0, 0.5, -1.0]])
    np.testing.assert_allclose(np.exp(merge_classes(lg, 3)).sum(), 1.0)
    assert merge_classes(lg, 3).argmax() == 0
    with pytest.raises(ValueError, match="4 classes cannot become 3"):
        merge_classes(np.zeros((2, 4)), 3)


def walch_folder(tmp_path, subjects):
    folder = tmp_path / "sleep_accel_walch" / "features"
    folder.mkdir(parents=True)
    for s in subjects:
        shutil.copy(data_root() / "sleep_accel_walch" / "features" / f"{s}.npz", folder)
    return folder.parent


def test_walch_evaluation_json_on_a_folder_in_the_shared_layout(tmp_path):
    split = load_split("walch")
    data = walch_folder(tmp_path, (split["subjects"]["test"][0], split["subjects"]["train"][0]))
    r = run_json(
        "training.evaluate", "--model", "mamba", "--dataset", "walch",
        "--data", str(data), "--max-epochs", "120", "--json",
    )  # fmt: skip
    assert set(r) == {"3", "4", "5"}
    for k, res in r.items():
        assert KEYS <= set(res) and KEYS <= set(res["ceiling"])
        assert len(res["confusion"]) == int(k)
        assert res["subjects"] == [split["subjects"]["test"][0]]  # the training subject is skipped
        assert res["split"] == "test"
        assert res["n_epochs"] == res["ceiling"]["n_epochs"] > 100  # the same epochs
        assert {"full", "chest", "ecg", "acc", "ppg_acc"} == set(res["ablations"])
        for name, ablation in res["ablations"].items():  # beside each, the model for it alone
            alone = ablation["dedicated"]
            assert KEYS <= set(alone) and alone["n_epochs"] == res["n_epochs"], name
            assert ablation["kappa_minus_dedicated"] == pytest.approx(
                ablation["kappa"] - alone["kappa"]
            )
        assert KEYS <= set(res["bidirectional"])
        # every class count is staged by the bundled 5-class model, its stages relabelled;
        # its summed probabilities and the dedicated 3- and 4-class models on the same epochs
        assert res["model"].startswith("causal_5class.pt")
        if k == "5":
            assert "dedicated" not in res and "relabelled" not in res["model"]
            continue
        assert "relabelled" in res["model"]
        assert KEYS <= set(res["summed_probabilities"])
        dedicated = res["dedicated"]
        assert KEYS <= set(dedicated) and KEYS <= set(dedicated["bidirectional"])
        assert dedicated["model"] == f"causal_{k}class.pt"
        assert dedicated["n_epochs"] == res["summed_probabilities"]["n_epochs"] == res["n_epochs"]
        assert dedicated["kappa_minus_ceiling"] == pytest.approx(
            dedicated["kappa"] - res["ceiling"]["kappa"]
        )
    # relabelling the stages: the 3- and 4-class confusions are the 5-class one, merged
    five = np.array(r["5"]["confusion"])
    for k in (3, 4):
        merge = np.eye(k, dtype=np.int64)[list(CLASS_MAPS[k])]  # [5, k]
        assert (merge.T @ five @ merge).tolist() == r[str(k)]["confusion"]
        for sensors in ("chest", "acc"):
            five_ablated = np.array(r["5"]["ablations"][sensors]["confusion"])
            got = r[str(k)]["ablations"][sensors]["confusion"]
            assert (merge.T @ five_ablated @ merge).tolist() == got


def test_walch_validation_split_and_weights_without_a_5_class_model(tmp_path):
    """``--split val`` scores the committed validation subjects; weights without a 5-class
    model stage each class count with its own model."""
    split = load_split("walch")
    val, test = split["subjects"]["val"][0], split["subjects"]["test"][0]
    data = walch_folder(tmp_path, (val, test))
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("causal_3class.pt", "bidirectional_3class.pt"):
        (weights / name).symlink_to(WEIGHTS / name)
    r = run_json(
        "training.evaluate", "--model", "mamba", "--dataset", "walch", "--split", "val",
        "--data", str(data), "--weights", str(weights), "--max-epochs", "60", "--json",
    )  # fmt: skip
    assert set(r) == {"3"}
    res = r["3"]
    assert res["subjects"] == [val] and res["split"] == "val"
    assert "validation" in res["data"]
    assert res["model"] == "causal_3class.pt" and "dedicated" not in res
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
    for k, res in r.items():
        assert KEYS <= set(res) and KEYS <= set(res["ceiling"])
        assert res["model"].startswith("causal_5class.pt")
        if k != "5":
            assert KEYS <= set(res["dedicated"])
            assert res["dedicated"]["n_epochs"] == res["n_epochs"]
        assert res["subjects"] == [test_user]  # the training user is skipped
        assert res["n_epochs"] == res["ceiling"]["n_epochs"] == 600  # the same epochs
        truth = np.array(res["confusion"]).sum(axis=1)
        assert truth[0] == 480 and truth[1] == 120  # 4 h awake before bed, then asleep


def test_export_metrics_only_rewrites_the_metrics_and_nothing_else(tmp_path):
    from export.mamba import main as export_main

    bundled = json.loads((WEIGHTS / "mamba_anne.json").read_text())
    (tmp_path / "mamba_anne.json").write_text(json.dumps(bundled))
    held_out, validation = tmp_path / "test.json", tmp_path / "val.json"
    held_out.write_text(json.dumps({"5": {"kappa": 0.5}}))
    validation.write_text(json.dumps({"5": {"kappa": 0.25}}))
    args = ["--metrics-only", "--out", str(tmp_path), "--evaluation", str(held_out)]
    assert export_main([*args, "--validation-evaluation", str(validation)]) == 0
    got = json.loads((tmp_path / "mamba_anne.json").read_text())
    assert got["metrics"] == {"5": {"kappa": 0.5}}
    assert got["metrics_validation"] == {"5": {"kappa": 0.25}}
    rewritten = ("metrics", "metrics_validation")
    assert {k: v for k, v in got.items() if k not in rewritten} == {
        k: v for k, v in bundled.items() if k not in rewritten
    }
    with pytest.raises(SystemExit):
        export_main(["--out", str(tmp_path)])  # no checkpoint, not --metrics-only


def test_cv_folds_partition_the_training_and_validation_subjects():
    from training.train_mamba import cv_fold

    split = load_split("walch")["subjects"]
    folds = [cv_fold(4, i) for i in range(4)]
    held = [s for _, v in folds for s in v]
    assert sorted(held) == sorted(split["train"] + split["val"])  # each subject in one fold
    for train, val in folds:
        assert set(train).isdisjoint(val) and set(train) | set(val) == set(held)
        assert set(train + val).isdisjoint(split["test"])
    with pytest.raises(SystemExit, match="0..3"):
        cv_fold(4, 4)
    with pytest.raises(SystemExit, match="2 or more"):
        cv_fold(1, 0)


def test_cross_validation_smoke_pools_every_fold_and_resumes(tmp_path):
    from training.cross_validate import main as cv_main

    args = ["--folds", "2", "--classes", "5", "3", "--epochs", "1", "--steps", "1"]
    args += ["--crop", "300", "--max-epochs", "20", "--max-nights", "6", "--no-mmash"]
    args += ["--jobs", "2", "--out", str(tmp_path / "cv")]
    assert cv_main(args) == 0
    r = json.loads((tmp_path / "cv" / "cross_validation.json").read_text())
    n = 6 * 20  # every subject scored once, by the fold that left it out
    assert r["5"]["dedicated"]["n_epochs"] == r["5"]["ceiling"]["n_epochs"] == n
    assert set(r["3"]) == {"relabelled", "summed_probabilities", "dedicated", "ceiling"}
    for m in r["3"].values():
        assert KEYS <= set(m) and m["n_epochs"] == n and len(m["fold_kappa"]) == 2
    merge = np.eye(3, dtype=np.int64)[list(CLASS_MAPS[3])]
    five = np.array(r["5"]["dedicated"]["confusion"])
    assert (merge.T @ five @ merge).tolist() == r["3"]["relabelled"]["confusion"]
    assert r["3"]["relabelled"]["kappa_minus_ceiling"] == pytest.approx(
        r["3"]["relabelled"]["kappa"] - r["3"]["ceiling"]["kappa"]
    )
    subjects = [s for f in r["setup"]["folds"] for s in f]
    assert len(subjects) == len(set(subjects)) == 6
    split = load_split("walch")["subjects"]
    assert set(subjects) <= set(split["train"] + split["val"])
    stamp = (tmp_path / "cv" / "fold0-5class" / "final.pt").stat().st_mtime_ns
    assert cv_main(args) == 0  # trained models are kept: only the scores are recomputed
    assert (tmp_path / "cv" / "fold0-5class" / "final.pt").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "cv" / "cross_validation.json").read_text()) == r
    longer = [a if a != "1" or args[i - 1] != "--epochs" else "2" for i, a in enumerate(args)]
    assert cv_main(longer) == 0  # more passes: every run resumes from its last pass
    final = torch.load(tmp_path / "cv" / "fold1-3class" / "final.pt", weights_only=False)
    assert final["epoch"] == 2
    assert "resumed at epoch 1" in (tmp_path / "cv" / "fold1-3class.log").read_text()
