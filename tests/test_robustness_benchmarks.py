"""The imperfect-link benchmarks keep working (their --quick smoke runs; nothing timed)."""

from tests.commands import run_json


def test_robustness_benchmark_quick_json():
    records = run_json("benchmarks/robustness.py", "--quick", "--json", module=False, timeout=600)
    keys = {"model", "dataset", "condition", "epochs", "unscored_fraction", "kappa",
            "balanced_accuracy", "kappa_clean"}  # fmt: skip
    assert records and all(set(r) == keys for r in records)
    assert {r["model"] for r in records} == {"mamba_anne", "ulw_sleepnet"}
    by = {(r["model"], r["condition"]): r for r in records}
    for model in ("mamba_anne", "ulw_sleepnet"):
        assert by[model, "clean"]["unscored_fraction"] == 0.0
        assert by[model, "clean"]["epochs"] == by[model, "loss 20%"]["epochs"] == 40
        assert by[model, "loss 20%"]["unscored_fraction"] <= 0.05  # the gaps were bridged
    # PSG without its EMG: every epoch unscored (ULW-SleepNet needs all four channels)
    assert by["ulw_sleepnet", "off emg"]["unscored_fraction"] == 1.0
    assert by["ulw_sleepnet", "off emg"]["kappa"] is None
    # ANNE without its finger temperature: still staged
    assert by["mamba_anne", "off temp_finger"]["unscored_fraction"] == 0.0


def test_bridge_benchmark_quick_json():
    doc = run_json("benchmarks/bridge.py", "--quick", "--json", module=False, timeout=300)
    rows = doc["rows"]
    assert {r["method"] for r in rows} == {"none", "linear", "pattern"}
    anne = [r for r in rows if r["dataset"] == "anne"]
    # without a bridge every second touched by a lost frame is lost; with one, almost none
    assert all(r["seconds_lost"] == 1.0 for r in anne if r["method"] == "none")
    assert all(r["seconds_lost"] < 0.2 for r in anne if r["method"] != "none")
    psg = [r for r in rows if r["dataset"] == "psg"]
    none = {(r["stream"], r["loss"]): r["missing_after"] for r in psg if r["method"] == "none"}
    for r in psg:
        if r["method"] == "linear":
            assert r["missing_after"] < none[r["stream"], r["loss"]]


def test_bridge_attribution_quick_json():
    """Loss confined to one stream at a time: every condition on the same epochs, the clean
    run agrees with itself, and ACC without a bridge (a NaN resets its filters) changes stages."""
    doc = run_json(
        "benchmarks/bridge.py", "--attribution", "--quick", "--json", module=False, timeout=300
    )
    by = {r["condition"]: r for r in doc["rows"]}
    assert set(by) == {
        "clean",
        "every stream lossy (linear)",
        "only ecg lossy (linear)",
        "only ppg lossy (linear)",
        "only acc lossy (linear)",
        "only acc lossy (pattern)",
        "only acc lossy (none)",
    }
    assert len({r["epochs"] for r in by.values()}) == 1 and by["clean"]["epochs"] == 120
    assert by["clean"]["agreement_with_clean"] == 1.0
    assert by["only acc lossy (none)"]["agreement_with_clean"] < 1.0
    assert all(-1.0 <= r["kappa"] <= 1.0 for r in by.values())
