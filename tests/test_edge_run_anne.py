"""edge-run --device anne: the causal Mamba live on the virtual ANNE One, with faults, missing
sensors, and kill -9 / resume (the recurrent state is part of the checkpoint)."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.commands import run

HALF_HOUR = "1800"


def edge_run(*args, timeout=300):
    out = run("edge.cli", "--device", "anne", *args, "--plain", timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("anne_clean")
    res = edge_run("--source", "sim", "--duration", HALF_HOUR, "--out", str(out))
    return out, res.stdout


def test_stages_a_simulated_anne_night(clean):
    out, stdout = clean
    epochs = lines(out / "epochs.jsonl")
    assert [e["index"] for e in epochs] == list(range(60))
    assert all(
        e["stage"] in (0, 1, 2, 3, 4) and e["model"].startswith("mamba_anne") for e in epochs
    )
    assert all(abs(sum(e["probabilities"].values()) - 1) < 1e-3 for e in epochs)
    assert "agreement with the record's scored hypnogram" in stdout
    assert json.loads((out / "stats.json").read_text())["TIB"] == 30.0


def test_faults_and_missing_sensors(tmp_path):
    edge_run(
        "--source", "sim", "--duration", HALF_HOUR, "--out", str(tmp_path), "--seed", "2",
        "--loss", "0.01", "--duplicate", "0.01", "--disconnect", "120/1000",
        "--leads-off", "ecg:300-600", "--leads-off", "acc:1200-1320",
    )  # fmt: skip
    epochs = lines(tmp_path / "epochs.jsonl")
    assert [e["index"] for e in epochs] == list(range(60))  # exactly once
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["counts"]["lost"] == summary["source_stats"]["injected_lost"] > 0
    # ECG off 300-600 s: scored on the other sensors, flagged, its missing share reported
    ecg_off = [e for e in epochs if 10 <= e["index"] < 20]
    assert all(e["stage"] >= 0 and "reduced_sensors" in e["flags"] for e in ecg_off)
    assert all(e["missing"]["ecg"] == 1.0 for e in ecg_off)
    assert all("ecg" not in e["groups"] for e in ecg_off)
    # ACC off 1200-1320 s: staged on ECG and PPG (the state keeps stepping), ACC not used
    acc_off = [e for e in epochs if 40 <= e["index"] < 44]
    assert all(e["stage"] >= 0 and "acc" not in e["groups"] for e in acc_off)
    # the link down 880-1000 s: no sensor at all, unscored with the reason
    down = [e for e in epochs if 30 <= e["index"] < 33]
    assert all(e["stage"] == -1 and e["probabilities"] is None for e in down)
    assert all(e["reason"].startswith("missing data: no ecg or ppg or acc") for e in down)
    # 1 % loss: the lost frames were bridged, and every epoch with a link up was staged
    assert sum("bridged" in e["flags"] for e in epochs) > 30
    assert all(e["stage"] >= 0 for e in epochs if not 29 <= e["index"] < 34)


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, clean):
    ref, _ = clean
    out = tmp_path / "night"
    cmd = [sys.executable, "-m", "edge.cli", "--device", "anne", "--source", "sim",
           "--duration", HALF_HOUR, "--plain", "--out", str(out), "--speed", "120",
           "--checkpoint-every", "7"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    jsonl = out / "epochs.jsonl"
    while time.monotonic() < deadline:
        if (out / "checkpoint.npz").exists() and jsonl.exists():
            if len(jsonl.read_text().splitlines()) >= 24:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(jsonl.read_text().splitlines())
    assert 24 <= written < 60
    res = run("edge.cli", *cmd[3:], "--resume", "--speed", "max")
    assert res.returncode == 0, res.stderr
    assert "resumed at epoch" in res.stdout
    for name in ("epochs.jsonl", "hypnogram.csv", "stats.json"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def test_anne_over_a_real_mosquitto_equals_the_in_process_run(broker, tmp_path):
    """firmware-sim's virtual ANNE publishing over a real broker (~18 frames a second, 60×
    real time) into edge-run --source mqtt: no frame lost, the epochs of the in-process run."""
    from tests.test_edge_run_mqtt import start_edge_run

    ref = tmp_path / "ref"
    edge_run("--source", "sim", "--duration", "600", "--out", str(ref))
    edge = start_edge_run(broker, "anne7", tmp_path / "out", device="anne")
    sim = run(
        "firmware_sim.cli", "--device", "anne", "--transport", "mqtt",
        "--broker", f"127.0.0.1:{broker.port}", "--device-id", "anne7",
        "--duration", "600", "--speed", "60", timeout=240,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    _, err = edge.communicate(timeout=240)
    assert edge.returncode == 0, err
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["counts"]["lost"] == 0 and summary["counts"]["frames"] > 10_000
    got = (tmp_path / "out" / "epochs.jsonl").read_text().splitlines()
    assert len(got) == 20 and got == (ref / "epochs.jsonl").read_text().splitlines()


@pytest.mark.parametrize("backend", ["litert", "native", "numpy"])
def test_other_backends_stage_the_same_night(tmp_path, clean, backend):
    ref, _ = clean
    edge_run(
        "--source", "sim", "--duration", HALF_HOUR, "--out", str(tmp_path), "--backend", backend
    )
    a, b = lines(ref / "epochs.jsonl"), lines(tmp_path / "epochs.jsonl")
    assert [e["stage"] for e in a] == [e["stage"] for e in b]
    for x, y in zip(a, b, strict=True):
        for k, p in x["probabilities"].items():
            assert abs(p - y["probabilities"][k]) < 1e-3
