"""Evaluation on a folder in the ../shared/data layout: metrics keys, ceiling, held-out only."""

import shutil

from firmware_sim.resynth import data_root
from tests.commands import run, run_json
from training.splits import load
from training.train import main as train_main

KEYS = {"accuracy", "balanced_accuracy", "macro_f1", "kappa", "mcc", "n_epochs", "confusion"}


def test_evaluate_json_on_a_folder_in_the_shared_layout(tmp_path):
    ck = tmp_path / "run"
    train_main(
        [
            "ulw",
            "--max-nights",
            "1",
            "--max-epochs",
            "30",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--out",
            str(ck),
        ]
    )
    test_night = load("sleep-edf")["nights"]["test"][0]
    train_night = load("sleep-edf")["nights"]["train"][0]
    folder = tmp_path / "data" / "sleep_edf" / "bandpower_features"
    folder.mkdir(parents=True)
    for night in (test_night, train_night):
        shutil.copy(data_root() / "sleep_edf" / "bandpower_features" / f"{night}.npz", folder)
    r = run_json(
        "training.evaluate",
        "--model",
        "ulw",
        "--dataset",
        "sleep-edf",
        "--data",
        str(tmp_path / "data"),
        "--checkpoint",
        str(ck / "best.pt"),
        "--max-epochs",
        "60",
        "--json",
    )
    assert KEYS <= set(r) and KEYS <= set(r["ceiling"])
    assert r["nights"] == [test_night]  # a training night in the folder is never scored
    assert r["n_epochs"] == r["ceiling"]["n_epochs"] > 0
    assert sum(map(sum, r["confusion"])) == r["n_epochs"]


def test_evaluate_without_checkpoint_is_one_line(tmp_path):
    out = run(
        "training.evaluate",
        "--model",
        "ulw",
        "--dataset",
        "dreams",
        "--checkpoint",
        str(tmp_path / "none.pt"),
    )
    assert out.returncode == 2 and "no checkpoint" in out.stderr and "Traceback" not in out.stderr


def test_evaluate_scores_the_shipped_files_through_the_runtime(tmp_path):
    """--manifest: every variant scored on the same epochs, agreement with the first."""
    from edge.cli import MODELS_DIR

    test_night = load("sleep-edf")["nights"]["test"][0]
    folder = tmp_path / "data" / "sleep_edf" / "bandpower_features"
    folder.mkdir(parents=True)
    shutil.copy(data_root() / "sleep_edf" / "bandpower_features" / f"{test_night}.npz", folder)
    r = run_json(
        "training.evaluate", "--model", "ulw", "--dataset", "sleep-edf",
        "--data", str(tmp_path / "data"), "--max-epochs", "60", "--json",
        "--manifest", str(MODELS_DIR / "ulw_sleepnet" / "ulw_sleepnet.json"),
        "--variants", "onnxruntime:fp32,litert:fp32,onnxruntime:int8",
    )  # fmt: skip
    v = r["variants"]
    assert list(v) == ["onnxruntime:fp32", "litert:fp32", "onnxruntime:int8"]
    assert v["onnxruntime:fp32"]["agreement_with_first"] == 1.0
    assert v["litert:fp32"]["agreement_with_first"] == 1.0  # same weights, parity ≤ 1e-4
    assert all(KEYS <= set(x) for x in v.values())
    assert v["onnxruntime:fp32"]["confusion"] == r["confusion"]
