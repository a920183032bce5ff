"""Imperfect streams through the whole session (wire → receiver → bridge → operators → model):
streams that never start, stop for good or come back after an hour, a link that goes down, a
device clock that jumps, lossy links — the night goes on, every epoch appears once and says
why, and a snapshot taken under faults resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest

from edge.cli import MODELS_DIR
from edge.devices import load_device
from edge.devices.codec import decode, encode
from edge.models.step_runner import load_step_model
from edge.session import Session
from edge.staging import FrameStager
from firmware_sim.device import VirtualDevice
from firmware_sim.faults import FaultPlan, apply_faults
from firmware_sim.recordings import Recording
from firmware_sim.resynth import walch_night
from tests.streaming import through_npz

ANNE = load_device("anne")
SPEC = ANNE.input("mamba")
MANIFEST = MODELS_DIR / "mamba_anne" / "mamba_anne.json"
HOUR_EPOCHS = 120


@pytest.fixture(scope="module")
def model():
    return load_step_model(MANIFEST, "onnxruntime")


@pytest.fixture(scope="module")
def night():
    return walch_night("46343", 0, max_epochs=2 * HOUR_EPOCHS)


def session(model) -> Session:
    stager = FrameStager(model, SPEC.stream_columns(), ("ecg", "ppg", "acc"))
    return Session(ANNE, SPEC, stager)


def frames_of(recording: Recording, keep=None, **device) -> list:
    """The device's sent frames in order, those failing ``keep(frame)`` dropped."""
    sent = list(VirtualDevice.from_recording(ANNE, recording, **device).frames())
    return [f for f in sent if keep is None or keep(f)]


def stage(model, frames: list, end_s: float, batch: int = 4096) -> tuple[list, Session]:
    s = session(model)
    records = []
    data = [f.data if hasattr(f, "data") else f for f in frames]
    for i in range(0, len(data), batch):
        records += s.feed_many(data[i : i + batch])
    return records + s.finish(end_s), s


def by_index(records) -> dict[int, object]:
    indices = [r.index for r in records]
    assert indices == sorted(set(indices)), "an epoch written twice or out of order"
    return {r.index: r for r in records}


def test_streams_that_never_start_stop_for_good_or_come_back(model, night):
    """PPG never starts; ACC is silent from 10 min to 1 h 10 (it comes back after an hour);
    ECG stops for good at 1 h 30; the link is down for everything from 110 to 112 min."""
    rec = night.recording
    signals = {k: v for k, v in rec.signals.items() if k != "ppg"}
    times = {k: v for k, v in rec.times.items() if k != "ppg"}

    def keep(f) -> bool:
        if f.stream == "acc" and 600 <= f.t_send_s < 4200:
            return False
        if f.stream == "ecg" and f.t_send_s >= 5400:
            return False
        return not 6600 <= f.t_send_s < 6720

    records, _ = stage(model, frames_of(Recording(signals, times), keep), rec.duration_s)
    epochs = by_index(records)
    assert sorted(epochs) == list(range(len(night.stages)))  # every epoch exactly once
    for k, r in epochs.items():
        t = 30 * k
        assert r.missing["ppg"] == 1.0
        if 6600 <= t and t + 30 <= 6720:  # nothing at all: unscored, with the reason
            assert r.stage == -1 and r.probabilities is None
            assert r.reason.startswith("missing data: no ecg or ppg or acc in 100%")
            continue
        assert r.stage >= 0, (k, r.reason)
        used = set(r.groups)
        assert "ppg" not in used and "reduced_sensors" in r.flags
        if 630 <= t and t + 30 <= 4170:
            assert used == {"temp_chest", "temp_finger", "ecg"}  # on ECG alone
        if 4230 <= t < 6570:
            assert "acc" in used  # came back: stepping on ACC again
        if t >= 5430:
            assert "ecg" not in used and r.missing["ecg"] == 1.0


def test_every_sensor_off_leaves_every_epoch_unscored_with_the_reason(model, night):
    off = {s: [(0.0, 1e9)] for s in ANNE.streams}
    first_hour = frames_of(night.recording, lambda f: f.t_send_s < 3600, sensor_off=off)
    records, s = stage(model, first_hour, 3600.0)
    assert [r.index for r in records] == list(range(HOUR_EPOCHS))
    assert all(r.stage == -1 and r.probabilities is None for r in records)
    assert all(r.reason.startswith("missing data: no ecg or ppg or acc") for r in records)
    assert s.counts()["sensor_off"] > 0


def test_a_clock_that_jumps_loses_nothing_and_stages_as_before(model, night):
    """At 20 min the device clock jumps 5 minutes ahead (the sequence numbers go on): every
    stream is re-anchored on its sequence, no frame is rejected and the epochs are staged as
    without the jump (temperatures, timestamped, within their own jitter)."""
    sent = frames_of(night.recording)
    codecs = ANNE.codecs()
    jumped = []
    for f in sent:
        if f.t_send_s <= 1200:
            jumped.append(f.data)
            continue
        fr = decode(codecs, f.data)
        codec = ANNE.streams[fr.stream].codec()
        jumped.append(
            encode(codec, fr.seq, fr.t_device_ns + 300 * 10**9, fr.samples, sensor_off=False)
        )
    end = night.recording.duration_s
    want, _ = stage(model, sent, end)
    got, s = stage(model, jumped, end)
    counts = s.counts()
    assert counts["clock_steps"] == len(ANNE.streams)
    assert not any(k.startswith("rejected") for k in counts) and counts["lost"] == 0
    assert [r.index for r in got] == [r.index for r in want]
    assert all(r.stage >= 0 for r in got)
    agree = np.mean([a.stage == b.stage for a, b in zip(got, want, strict=True)])
    assert agree >= 0.98


@pytest.mark.parametrize("cut", [7, 20_000])
def test_a_snapshot_under_faults_resumes_exactly(model, night, cut):
    """Loss, duplicates, reordering, a disconnect and clock drift; the session snapshotted
    (through the checkpoint's array format) after ``cut`` frames and restored into a new one:
    the epochs equal the uninterrupted run's."""
    sent = frames_of(night.recording, lambda f: f.t_send_s < 2400, drift_ppm=200.0)
    plan = FaultPlan(3, 0.05, 0.02, 0.02, 3, 60.0, 1800.0)
    data = [d.frame.data for d in apply_faults(sent, plan)[0]]
    end = 2400.0
    want, _ = stage(model, data, end, batch=512)
    a = session(model)
    first = []
    for i in range(0, cut, 512):
        first += a.feed_many(data[i : min(i + 512, cut)])
    first += a.collect()
    snap = through_npz(a.snapshot())
    b = session(model)
    b.restore(snap)
    rest = []
    for i in range(cut, len(data), 512):
        rest += b.feed_many(data[i : i + 512])
    rest += b.finish(end)
    assert [r.to_json() for r in first + rest] == [r.to_json() for r in want]
    assert sum("bridged" in r.flags for r in want) > len(want) / 2  # the faults were bridged
    assert all(r.stage >= 0 for r in want if (30 * r.index) % 1800 < 1740)  # link up: staged
