"""Faults found by benchmarks/reliability.py, kept as tests: timestamps beyond 2^62 ns never
re-anchor a stream's clock (the offset overflowed int64 in ``feed_many``), a refused
``--resume`` changes no output byte, and an output file deleted under the engine is one line."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.devices import load_device
from edge.devices.receiver import Receiver
from firmware_sim.device import VirtualDevice
from firmware_sim.sources import synth_night
from tests.commands import run

ANNE = load_device("anne")


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    rec = synth_night("walch/46343", ANNE, 0, 60).recording
    return [f.data for f in VirtualDevice.from_recording(ANNE, rec).frames()]


def with_time(data: bytes, t_ns: int) -> bytes:
    return data[:4] + struct.pack("<Q", t_ns) + data[12:]


@pytest.mark.parametrize("t_ns", [2**64 - 1, 2**63 - 1, 2**62])
def test_a_time_beyond_2_62_ns_is_rejected_never_a_clock_step(frames, t_ns):
    ecg = [f for f in frames if f[0] == ANNE.streams["ecg"].wire.code]
    bad = [*ecg[:20], with_time(ecg[20], t_ns), *ecg[21:40]]
    one, many = Receiver(ANNE), Receiver(ANNE)
    a = [r for f in bad for r in one.feed(f)] + one.flush()
    b = []
    for k in range(0, len(bad), 7):  # feed_many after the bad frame is where it overflowed
        b += many.feed_many(bad[k : k + 7])
    b += many.flush()
    for rx in (one, many):
        assert rx.rejected["absurd timestamp"] == 1 and rx.clock_steps == 0
        assert rx.counts()["frames"] == 39
    assert len(a) == 39


def test_random_timestamps_never_raise_and_every_frame_is_accounted_for(frames):
    rng = np.random.default_rng(3)
    rx = Receiver(ANNE)
    fed = 0
    for _ in range(300):
        batch = []
        for _ in range(int(rng.integers(1, 20))):
            f = frames[int(rng.integers(len(frames)))]
            if rng.random() < 0.5:
                f = with_time(f, int(rng.integers(0, 2**63)) * int(rng.integers(1, 3)) - 1)
            batch.append(f)
        fed += len(batch)
        if rng.random() < 0.5:
            rx.feed_many(batch)
        else:
            for f in batch:
                rx.feed(f)
    rx.flush()
    c = rx.counts()
    rejected = sum(v for k, v in c.items() if k.startswith("rejected:"))
    assert c["frames"] + c["duplicates"] + rejected == fed


def edge_run(out: Path, *extra: str, duration: str = "900"):
    return run("edge.cli", "--source", "sim", "--device", "anne", "--duration", duration, "--plain",
               "--out", str(out), "--checkpoint-every", "5", *extra, timeout=300)  # fmt: skip


def test_a_refused_resume_changes_no_output(tmp_path):
    out = tmp_path / "night"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--source", "sim", "--device", "anne", "--duration",
         "900", "--plain", "--out", str(out), "--checkpoint-every", "5", "--speed", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    ck = out / "checkpoint.npz"
    while not (ck.exists() and (out / "epochs.jsonl").stat().st_size > 4000):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert (out / "epochs.jsonl").stat().st_size > 0
    other = edge_run(out, "--resume", "--seed", "9")  # a checkpoint of other options
    assert other.returncode == 2 and "another configuration" in other.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files
    raw = ck.read_bytes()  # a damaged checkpoint: refused before the outputs are cut
    ck.write_bytes(raw[: len(raw) // 2])
    damaged = edge_run(out, "--resume")
    assert damaged.returncode == 2 and len(damaged.stderr.strip().splitlines()) == 1
    files[ck.name] = ck.read_bytes()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == files


def test_outputs_cut_short_under_the_engine_refuse_a_resume_with_one_line(tmp_path):
    out = tmp_path / "night"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "--source", "sim", "--device", "anne", "--duration",
         "1800", "--plain", "--out", str(out), "--checkpoint-every", "5", "--speed", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    path = out / "epochs.jsonl"
    while not ((out / "checkpoint.npz").exists() and path.stat().st_size > 8000):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    path.unlink()  # deleted under the engine: the next checkpoint notices
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert err.strip().count("\n") == 0 and "was deleted under the engine" in err
    resumed = edge_run(out, "--resume", duration="1800")
    assert resumed.returncode == 2 and "epochs.jsonl" in resumed.stderr
    assert resumed.stderr.strip().count("\n") == 0
