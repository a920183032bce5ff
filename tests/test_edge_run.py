"""edge-run end to end: faults, exactly-once epochs, kill -9 and resume, files other tools read."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.commands import run

HOUR = "3600"


def edge_run(*args, timeout=300):
    out = run("edge.cli", *args, "--plain", timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def clean_hour(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    edge_run("--source", "sim", "--duration", HOUR, "--out", str(out), "--checkpoint-every", "0")
    return out


def test_faults_every_epoch_once_counters_match(tmp_path):
    edge_run(
        "--source", "sim", "--duration", HOUR, "--out", str(tmp_path), "--seed", "3",
        "--loss", "0.02", "--duplicate", "0.02", "--reorder", "0.02", "--disconnect", "150/1000",
        "--drift-ppm", "50", "--leads-off", "eeg_fpz_cz:600-900",
    )  # fmt: skip
    epochs = lines(tmp_path / "epochs.jsonl")
    assert [e["index"] for e in epochs] == list(range(120))  # exactly once, in order
    summary = json.loads((tmp_path / "run.json").read_text())
    counts, injected = summary["counts"], summary["source_stats"]
    assert counts["lost"] == injected["injected_lost"] > 0
    assert counts["duplicates"] == injected["injected_duplicated"] > 0
    assert counts["reordered"] > 0 and sum(summary["rejected_by_reason"].values()) == 0
    # the 200-s link-down windows leave unscored epochs with a reason; the leads-off window of
    # one EEG is the reduced-input rule's (the other EEG copied in): staged, flagged reduced
    unscored = [e for e in epochs if e["stage"] == -1]
    assert unscored and all(e["reason"].startswith("missing data") for e in unscored)
    off = {e["index"]: e for e in epochs if e["missing"]["eeg_fpz_cz"] > 0.25}
    assert set(off) >= set(range(21, 29))  # eeg_fpz_cz off 600-900 s
    reduced = [e for e in off.values() if e["missing"]["eeg_pz_oz"] <= 0.25]
    assert reduced and all(e["stage"] >= 0 and "reduced" in e["flags"] for e in reduced)
    assert all(e["probabilities"] is None for e in unscored)
    short = [e for e in epochs if "interpolated" in e["flags"]]
    assert all(e["stage"] >= 0 for e in short)  # short gaps filled, still scored


def test_kill_9_then_resume_equals_an_uninterrupted_run(tmp_path, clean_hour):
    out = tmp_path / "night"
    cmd = [sys.executable, "-m", "edge.cli", "--source", "sim", "--duration", HOUR, "--plain",
           "--out", str(out), "--speed", "150", "--checkpoint-every", "10"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    jsonl = out / "epochs.jsonl"
    while time.monotonic() < deadline:  # kill mid-night, after a checkpoint and some epochs
        if (out / "checkpoint.npz").exists() and jsonl.exists():
            if len(jsonl.read_text().splitlines()) >= 45:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(jsonl.read_text().splitlines())
    assert 45 <= written < 120  # killed in the middle, some epochs past the checkpoint
    res = run("edge.cli", *cmd[3:], "--resume", "--speed", "max")
    assert res.returncode == 0, res.stderr
    assert "resumed at epoch" in res.stdout
    for name in ("epochs.jsonl", "hypnogram.csv", "stats.json"):
        assert (out / name).read_bytes() == (clean_hour / name).read_bytes(), name
    assert not (out / "checkpoint.npz").exists()


def test_outputs_load_in_other_tools(clean_hour):
    import edfio
    import mne

    epochs = lines(clean_hour / "epochs.jsonl")
    stages = np.array([e["stage"] for e in epochs])
    assert set(stages) <= {-1, 0, 1, 2, 3, 4}
    names = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM", -1: "unscored"}
    assert all(names[e["stage"]] == e["stage_name"] for e in epochs)  # YASA's coding
    csv = (clean_hour / "hypnogram.csv").read_text().splitlines()
    assert csv[0] == "epoch,start_s,stage,stage_name,reason"
    assert [int(r.split(",")[2]) for r in csv[1:]] == stages.tolist()
    for e in epochs:
        if e["stage"] >= 0:
            p = e["probabilities"]
            assert abs(sum(p.values()) - 1) < 1e-3 and max(p, key=p.get) == e["stage_name"]

    edf = edfio.read_edf(clean_hour / "hypnogram.edf")
    assert [a.text for a in edf.annotations] == [
        "Sleep stage " + {0: "W", 1: "1", 2: "2", 3: "3", 4: "R", -1: "?"}[s] for s in stages
    ]
    assert [a.onset for a in edf.annotations] == [30.0 * i for i in range(len(stages))]
    np.testing.assert_array_equal(edf.signals[0].data, stages)
    raw = mne.io.read_raw_edf(clean_hour / "hypnogram.edf", verbose="error")
    assert list(raw.annotations.description) == [a.text for a in edf.annotations]

    # AASM statistics, computed independently here from the stage sequence
    st = json.loads((clean_hour / "stats.json").read_text())
    sleep_idx = [i for i, s in enumerate(stages) if s in (1, 2, 3, 4)]
    first, last = sleep_idx[0], sleep_idx[-1]
    assert st["TIB"] == len(stages) / 2
    assert st["SOL"] == first / 2
    assert st["TST"] == len(sleep_idx) / 2
    assert st["WASO"] == sum(1 for s in stages[first : last + 1] if s == 0) / 2
    assert st["SE"] == pytest.approx(100 * len(sleep_idx) / len(stages))
    rem = [i for i in range(first, len(stages)) if stages[i] == 4]
    assert st["REM_latency"] == ((rem[0] - first) / 2 if rem else None)
    for code, name in [(1, "N1"), (2, "N2"), (3, "N3"), (4, "REM")]:
        n = int((stages == code).sum())
        assert st[name] == n / 2
        assert st[f"%{name}"] == pytest.approx(100 * n / len(sleep_idx))
    assert (clean_hour / "hypnogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_of_a_real_edf_file_written_with_edfio(tmp_path, clean_hour):
    """A PSG EDF+ written here (the simulator's waveforms for the bundled night) replays to the
    same epochs as the in-process simulation of that night."""
    from edfio import Edf, EdfSignal

    from edge.devices import load_device
    from firmware_sim.sources import synth_night

    psg = load_device("psg")
    rec = synth_night("sleep-edf/SC4001", psg, 0, 3600).recording
    labels = {"eeg_fpz_cz": "EEG Fpz-Cz", "eeg_pz_oz": "EEG Pz-Oz", "eog": "EOG horizontal",
              "emg": "EMG submental"}  # fmt: skip
    signals = [
        EdfSignal(
            rec.signals[name][0],
            sampling_frequency=psg.streams[name].rate_hz,
            label=label,
            physical_dimension="uV",
            physical_range=(-3276.8, 3276.7),  # the wire's int16 × 0.1 uV: same quantisation
            digital_range=(-32768, 32767),
        )
        for name, label in labels.items()
    ]
    Edf(signals).write(tmp_path / "night-PSG.edf")
    out = tmp_path / "out"
    res = edge_run(
        "--source", "replay", "--file", str(tmp_path / "night-PSG.edf"), "--out", str(out)
    )
    assert "from file" in res.stdout
    got, want = lines(out / "epochs.jsonl"), lines(clean_hour / "epochs.jsonl")
    assert len(got) == len(want) == 120
    agree = np.mean([g["stage"] == w["stage"] for g, w in zip(got, want, strict=True)])
    assert agree >= 0.95  # EDF's own digital rounding differs from the wire's by ≤ 0.05 uV


def test_memory_stays_bounded_under_a_flood(broker):
    """A flood through a real broker into an engine that does not keep up: the MQTT source's
    queue holds at most ``max_queue`` frames, every other frame is counted as dropped."""
    from edge.devices import load_device
    from edge.net.mqtt import AckTracker, BrokerAddress, connect
    from edge.sources.mqtt import MqttSource

    addr = BrokerAddress("127.0.0.1", broker.port)
    src = MqttSource(load_device("psg"), addr, "flood", max_queue=100)
    pub = connect(addr, "flooder")
    acks = AckTracker(pub)
    for i in range(2_000):
        acks.publish(pub, "sleepedge/v1/flood/raw/eeg", i.to_bytes(4, "little") * 50)
    assert acks.wait(30)
    deadline = time.monotonic() + 30
    while src.stats["received"] + src.stats["dropped_queue_full"] < 2_000:
        assert time.monotonic() < deadline, src.stats
        time.sleep(0.05)
    assert src.stats == {"received": 100, "dropped_queue_full": 1_900, "reconnects": 0,
                         "bad_bundles": 0}  # fmt: skip
    assert src._queue.qsize() == 100
    pub.disconnect()
    src.close()


def test_live_panel_renders_on_a_terminal(tmp_path):
    """The rich panel path (stdout a terminal) runs and draws the stage and hypnogram."""
    import pty

    cmd = [sys.executable, "-m", "edge.cli", "--source", "sim", "--duration", "300",
           "--out", str(tmp_path)]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(sys.executable, cmd)
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "hypnogram" in text and "SleepEdge" in text and "10 epochs" in text


def test_mqtt_source_ends_after_idle_exit(broker):
    """--idle-exit: once frames have arrived, a quiet link ends the night (no 'finished')."""
    from edge.devices import load_device
    from edge.net.mqtt import AckTracker, BrokerAddress, connect
    from edge.sources.mqtt import MqttSource

    addr = BrokerAddress("127.0.0.1", broker.port)
    src = MqttSource(load_device("psg"), addr, "idle", idle_exit_s=0.5)
    pub = connect(addr, "idler")
    acks = AckTracker(pub)
    for i in range(3):
        acks.publish(pub, "sleepedge/v1/idle/raw/eeg", bytes([i]))
    assert acks.wait(10)
    t0 = time.monotonic()
    assert list(src) == [b"\x00", b"\x01", b"\x02"]
    assert time.monotonic() - t0 < 5
    pub.disconnect()
    src.close()


def test_duration_cuts_a_recorded_file_for_both_commands(tmp_path):
    """--duration applies to files too (edge-run replay and firmware-sim share one cut)."""
    from edge.devices import load_device
    from firmware_sim.recordings import first_seconds, load_recording
    from firmware_sim.sources import open_source

    psg = load_device("psg")
    path = tmp_path / "night.npz"
    np.savez(path, **{n: np.zeros((1, int(300 * s.rate_hz))) for n, s in psg.streams.items()})
    rec = load_recording(path, psg)
    cut = first_seconds(rec, 40, psg)  # rounded up to whole epochs: 60 s
    assert cut.signals["eeg_fpz_cz"].shape[-1] == 6000 and cut.signals["emg"].shape[-1] == 60
    rec2, _ = open_source(str(path), psg, duration_s=40)
    assert rec2.signals["eog"].shape[-1] == 6000
