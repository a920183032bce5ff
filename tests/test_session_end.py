"""A device says where its session ends (``codec.encode_end``), and frames never vanish silently:
the end-of-session message counts the frames lost after the last one received and writes the
missing tail as unscored ``no_data`` epochs; the simulator's BLE transport applies backpressure
(what it says it notified is what the link carried, at --speed max, even over a stalled link);
over a real Bumble stack and a real mosquitto, delivered == sent at --speed max."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edge.cli import MODELS_DIR, _stager
from edge.devices import load_device
from edge.devices.codec import Rejected, SessionEnd, decode_end, encode_end, is_end
from edge.session import Session
from firmware_sim.device import VirtualDevice
from firmware_sim.sources import synth_night
from tests.commands import run, spawn, wait_for_port
from tests.mosquitto import free_port

ANNE = load_device("anne")
SECONDS = 300


def session() -> Session:
    args = SimpleNamespace(backend="onnxruntime", precision="fp32", threads=1)
    stager, spec = _stager(MODELS_DIR / "mamba_anne" / "mamba_anne.json", ANNE, args)
    return Session(ANNE, spec, stager)


@pytest.fixture(scope="module")
def device():
    rec = synth_night("walch/46343", ANNE, 0, SECONDS).recording
    return VirtualDevice.from_recording(ANNE, rec)


def test_end_message_round_trip_and_every_defect_is_rejected():
    end = SessionEnd(1_700_000_300 * 10**9, {1: 2399, 3: 65535, 4: 0})
    data = encode_end(end)
    assert is_end(data) and len(data) == 11 + 3 * 3
    assert decode_end(data) == end
    for bad in (data[:10], data[:-1], data + b"\0", bytes([0xFE, 2]) + data[2:], b"\xfe"):
        got = decode_end(bad)
        assert isinstance(got, Rejected) and got.reason == "bad end of session", bad
    twice = struct.pack("<BBQBBHBH", 0xFE, 1, 5, 2, 1, 1, 1, 2)  # stream 1 listed twice
    assert isinstance(decode_end(twice), Rejected)
    assert decode_end(struct.pack("<BBQBBH", 0xFE, 1, 5, 1, 1, 2)) == SessionEnd(5, {1: 2})


def test_a_lost_tail_is_counted_and_written_as_no_data(device):
    frames = list(device.frames())
    cut = 240.0
    kept = [f.data for f in frames if f.t_send_s < cut]
    lost = len(frames) - len(kept)
    s = session()
    records = s.feed_many(kept[:1000]) + [r for f in kept[1000:] for r in s.feed(f)]
    records += s.feed(encode_end(device.session_end()))
    records += s.finish()
    assert [r.index for r in records] == list(range(SECONDS // 30))  # each epoch once
    tail = [r for r in records if "no_data" in r.flags]
    assert [r.index for r in tail] == [8, 9]
    assert all(f"{lost} frame(s) lost before the device's end of session" in r.reason for r in tail)
    assert s.counts()["lost_at_end"] == lost == s.counts()["lost"] > 0
    # without the message the same frames make a short night and count nothing lost
    short = session()
    plain = short.feed_many(kept) + short.finish()
    assert len(plain) == 8 and short.counts()["lost"] == 0


def test_trailing_loss_across_sequence_wraps_and_a_bad_end_is_counted():
    """Three hours of a device whose link died after one minute: the ECG lost more than 65,536
    frames, so the u16 sequence number wrapped; the end time says how often."""
    short = synth_night("walch/46343", ANNE, 0, 60).recording
    dev = VirtualDevice.from_recording(ANNE, short)
    frames = list(dev.frames())
    n = {name: int(3 * 3600 * spec.rate_hz) for name, spec in ANNE.streams.items()}
    long_signals = {k: np.zeros((ANNE.streams[k].n_axes, n[k])) for k in dev.signals}
    times = {k: np.arange(n[k]) / ANNE.streams[k].rate_hz + t[0] for k, t in dev.times.items()}
    end = VirtualDevice(ANNE, long_signals, times).session_end()
    last = {f.stream: f.seq for f in frames}
    by_code = {ANNE.streams[k].wire.code: k for k in ANNE.streams}
    expected = {by_code[c]: q - last[by_code[c]] for c, q in end.last_seq.items()}
    assert expected["ecg"] > 65_536
    s = session()
    s.feed_many([f.data for f in frames])
    s.feed(b"\xfe\x01garbage")
    s.feed(encode_end(end))
    records = s.finish()
    assert s.lost_at_end == expected
    assert s.counts()["rejected:bad end of session"] == 1
    assert records[-1].index == 3 * 3600 // 30 - 1 and "no_data" in records[-1].flags


def test_snapshot_keeps_the_end_of_session(device):
    from tests.streaming import through_npz

    frames = [f.data for f in device.frames() if f.t_send_s < 200]
    a = session()
    a.feed_many(frames)
    a.feed(encode_end(device.session_end()))
    b = session()
    b.restore(through_npz(a.snapshot()))
    assert b.end == a.end == device.session_end()
    ra, rb = a.finish(), b.finish()
    assert [r.index for r in ra] == [r.index for r in rb] and a.lost_at_end == b.lost_at_end


# ---- over a real BLE stack and a real mosquitto ---------------------------------------------


@pytest.fixture
def stallable_controllers():
    """Two linked Bumble controllers in a process the test can pause (a stalled link)."""
    p1, p2 = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bumble.apps.controllers",
         f"tcp-server:127.0.0.1:{p1}", f"tcp-server:127.0.0.1:{p2}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(p2, "bumble controllers")
    yield proc, p1, p2
    os.kill(proc.pid, signal.SIGCONT)
    proc.terminate()
    proc.wait(10)


def ble_night(ports, out, *faults, stall=None):
    """firmware-sim → linked controllers → edge-run at --speed max; ``stall(proc)`` is called
    once the simulator streams. Returns (simulator's stdout, run.json)."""
    proc, p1, p2 = ports
    edge = spawn(
        "edge.cli", "--source", "ble", "--device", "anne", "--ble-backend", "bumble",
        "--ble-transport", f"tcp-client:127.0.0.1:{p2}", "--idle-exit", "20", "--plain",
        "--out", str(out),
    )  # fmt: skip
    sim = spawn(
        "firmware_sim.cli", "--device", "anne", "--transport", "ble", "--duration", str(SECONDS),
        "--ble-transport", f"tcp-client:127.0.0.1:{p1}", "--speed", "max", *faults,
    )  # fmt: skip
    try:
        if stall is not None:
            stall(proc)
        sim_out, sim_err = sim.communicate(timeout=300)
        assert sim.returncode == 0, sim_err
        edge_out, edge_err = edge.communicate(timeout=300)
        assert edge.returncode == 0, edge_err
    finally:
        for p in (sim, edge):
            if p.poll() is None:
                p.terminate()
                p.wait(10)
    return sim_out, json.loads((out / "run.json").read_text())


def notified(sim_out: str) -> int:
    return int(sim_out.split("notified ")[1].split(" frames")[0].replace(",", ""))


def test_ble_at_max_speed_over_a_stalled_link_delivers_what_it_notified(
    stallable_controllers, tmp_path, device
):
    def stall(proc):  # the controllers stop for 3 s while the night streams
        time.sleep(4)
        os.kill(proc.pid, signal.SIGSTOP)
        time.sleep(3)
        os.kill(proc.pid, signal.SIGCONT)

    sim_out, summary = ble_night(stallable_controllers, tmp_path / "ble", stall=stall)
    sent = len(list(device.frames()))
    assert notified(sim_out) == sent
    assert summary["counts"]["frames"] == sent and summary["counts"]["lost"] == 0
    assert summary["counts"]["lost_at_end"] == 0  # the end of session came
    assert summary["epochs"] == SECONDS // 30


def test_ble_link_cut_before_the_end_counts_the_lost_tail(stallable_controllers, tmp_path):
    sim_out, summary = ble_night(stallable_controllers, tmp_path / "ble", "--disconnect", "60/300")
    assert "1 link drop(s)" in sim_out
    assert summary["source_stats"]["connects"] == 2  # back after the drop for the end message
    c = summary["counts"]
    assert c["frames"] == notified(sim_out) and c["lost"] == c["lost_at_end"] > 1000
    records = [json.loads(x) for x in (tmp_path / "ble" / "epochs.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(SECONDS // 30))
    tail = [r for r in records if "no_data" in r["flags"]]
    assert [r["index"] for r in tail] == [8, 9]
    assert all(f"{c['lost_at_end']} frame(s) lost" in r["reason"] for r in tail)


def mqtt_night(broker, out, *faults):
    from tests.test_edge_run_mqtt import start_edge_run

    edge = start_edge_run(broker, "rel1", out, device="anne")
    sim = run(
        "firmware_sim.cli", "--device", "anne", "--transport", "mqtt", "--device-id", "rel1",
        "--broker", f"127.0.0.1:{broker.port}", "--duration", str(SECONDS), "--speed", "max",
        *faults, timeout=300,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    assert "broker may drop" in sim.stderr or "drops frames it acknowledged" in sim.stderr
    _, err = edge.communicate(timeout=300)
    assert edge.returncode == 0, err
    return sim.stdout, json.loads((out / "run.json").read_text())


def test_mqtt_at_max_speed_through_the_test_broker_loses_nothing(broker, tmp_path, device):
    sim_out, summary = mqtt_night(broker, tmp_path / "mqtt")
    sent = len(list(device.frames()))
    assert f"published {sent:,} frames" in sim_out
    c = summary["counts"]
    assert c["frames"] == sent and c["lost"] == 0 and c["lost_at_end"] == 0
    assert summary["epochs"] == SECONDS // 30


def test_mqtt_lost_tail_is_counted_from_the_end_message(broker, tmp_path):
    _, summary = mqtt_night(broker, tmp_path / "mqtt", "--disconnect", "60/300")
    c = summary["counts"]
    assert c["lost"] == c["lost_at_end"] > 1000
    records = [json.loads(x) for x in (tmp_path / "mqtt" / "epochs.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == list(range(SECONDS // 30))
    assert [r["index"] for r in records if "no_data" in r["flags"]] == [8, 9]
