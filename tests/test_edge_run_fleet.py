"""Many devices in one engine: ``edge-run --source mqtt --device-id +`` and ``edge.fleet``.

Each device's night in a fleet equals the same night staged alone (their seconds batched into
shared model calls change nothing), a crashed fleet resumes every device from its checkpoint,
and N devices published by the simulator's gateway through a real mosquitto come out whole.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge.cli import _stager_factory, build_parser
from edge.devices import load_device
from edge.fleet import Fleet
from edge.models.streams import StreamBank
from edge.run import run_night
from edge.session import Session
from edge.sources import FrameList
from firmware_sim.device import VirtualDevice
from firmware_sim.sources import synth_night
from tests.mosquitto import first_message, tool

ANNE = load_device("anne")
MANIFEST = Path("edge/models/mamba_anne/mamba_anne.json")
SECONDS = 300


@pytest.fixture(scope="module")
def night():
    rec = synth_night("walch/46343", ANNE, 0, SECONDS).recording
    return [f.data for f in VirtualDevice.from_recording(ANNE, rec).frames()]


def factory(push_s: float = 1.0):
    args = build_parser().parse_args(["--device", "anne"])
    make, spec, model = _stager_factory(MANIFEST, ANNE, args)
    return (lambda bank, device_id: Session(ANNE, spec, make(bank, device_id), push_s)), model


def alone(frames, out):
    make, _ = factory()
    run_night(FrameList(frames, "night"), make(None, 0), out, {}, checkpoint_every=0)
    return lines(out / "epochs.jsonl")


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def interleave(fleet, frames, ids, start=0, stop=None, rng=None):
    """Frames of every device in rounds (a little of each), stepping after each round."""
    rng = rng or np.random.default_rng(0)
    pos = dict.fromkeys(ids, start)
    stop = len(frames) if stop is None else stop
    while any(p < stop for p in pos.values()):
        for d in ids:
            n = int(rng.integers(1, 40))
            for data in frames[pos[d] : min(pos[d] + n, stop)]:
                fleet.feed(d, data)
            pos[d] = min(pos[d] + n, stop)
        fleet.step()


@pytest.mark.parametrize("hold_s", [0.0, 10.0])
def test_fleet_batches_devices_and_equals_each_night_alone(night, tmp_path, hold_s):
    """Frame by frame (hold 0) or held until each epoch is due (hold 10 s): the same epochs."""
    reference = alone(night, tmp_path / "alone")
    make, model = factory()
    bank = StreamBank(model)
    fleet = Fleet(make, bank, tmp_path / "fleet", {}, checkpoint_every=0, hold_s=hold_s)
    ids = ["dev-a", "dev-b", "dev-c", "dev-d"]
    interleave(fleet, night, ids)
    assert len(bank) == 4
    fleet.close()
    assert len(bank) == 0  # finished devices leave the bank
    for d in ids:
        got = lines(tmp_path / "fleet" / d / "epochs.jsonl")
        assert [g["stage"] for g in got] == [r["stage"] for r in reference]
        for g, r in zip(got, reference, strict=True):  # batched calls: rounding only
            assert g["probabilities"].keys() == r["probabilities"].keys()
            assert (
                max(abs(g["probabilities"][k] - r["probabilities"][k]) for k in r["probabilities"])
                <= 2e-5
            )
        assert (tmp_path / "fleet" / d / "hypnogram.edf").exists()
    assert bank.stream_steps == 4 * SECONDS
    if hold_s == 0:
        assert bank.calls < 2 * SECONDS  # the four devices' seconds shared model calls
        assert fleet.stats.handovers == fleet.stats.frames
    else:  # a hand-over every ≤ 10 s of a device's frames and one when each epoch is due
        assert fleet.stats.handovers <= 4 * (SECONDS // 10 + SECONDS // 30 + 2)


def test_held_frames_are_handed_over_as_soon_as_each_epoch_is_due(night, tmp_path):
    """An epoch comes out of a holding fleet on the same frame as out of a session pushed
    every 0.25 s (the live default), or a frame or two later — never seconds later."""
    emitted_at = {}
    for hold_s in (0.0, 10.0):
        make, model = factory(0.25)
        fleet = Fleet(make, StreamBank(model), tmp_path / f"h{hold_s}", {}, 0, hold_s=hold_s)
        at = []
        for k, data in enumerate(night):
            fleet.feed("dev", data)
            fleet.step()
            at += [k] * (fleet.stats.epochs - len(at))
        fleet.close()
        emitted_at[hold_s] = np.array(at[: SECONDS // 30 - 1])  # the last one: at the close
    assert len(emitted_at[0.0]) == SECONDS // 30 - 1
    late = emitted_at[10.0] - emitted_at[0.0]
    assert (late >= 0).all() and late.max() <= 3, late  # ~18 frames a second


def test_crashed_fleet_resumes_every_device_from_its_checkpoint(night, tmp_path):
    reference = alone(night, tmp_path / "alone")
    ids = ["dev-a", "dev-b"]
    make, model = factory()
    crashed = Fleet(make, StreamBank(model), tmp_path / "fleet", {}, checkpoint_every=3)
    interleave(crashed, night, ids, stop=len(night) * 2 // 3)
    for d in ids:  # a checkpoint was written; the crash leaves the files as they were
        assert (tmp_path / "fleet" / d / "checkpoint.npz").exists()
    del crashed  # kill -9: nothing closed, no reports
    make, model = factory()
    fleet = Fleet(make, StreamBank(model), tmp_path / "fleet", {}, 3, resume=True)
    # the broker redelivers what was not acknowledged; frames already in the checkpoint are
    # recognised by their sequence numbers and dropped as duplicates
    interleave(fleet, night, ids)
    fleet.close()
    for d in ids:
        got = lines(tmp_path / "fleet" / d / "epochs.jsonl")
        assert [g["index"] for g in got] == list(range(SECONDS // 30))  # each epoch once
        assert [g["stage"] for g in got] == [r["stage"] for r in reference]
        assert fleet.stats.finished[d].resumed_at > 0


def test_unsafe_device_ids_are_refused(tmp_path):
    make, model = factory()
    fleet = Fleet(make, StreamBank(model), tmp_path / "fleet", {})
    fleet.feed("..", b"\x00" * 20)
    assert fleet.stats.rejected_ids == 1 and not fleet.devices
    assert not (tmp_path / "fleet").exists() or not any((tmp_path / "fleet").iterdir())


@pytest.mark.parametrize("bundle_s", ["0", "0.25", "0.25 one"])
def test_gateway_devices_over_mosquitto_into_one_engine(broker, tmp_path, bundle_s):
    """A message per frame, each device's frames of every 0.25 s in one bundle, or all devices'
    frames of every 0.25 s in one gateway message: every device's night comes out whole and
    equal to the night staged alone."""
    n = 3
    cmd = [sys.executable, "-m", "edge.cli", "--source", "mqtt", "--device", "anne",
           "--device-id", "+", "--broker", f"127.0.0.1:{broker.port}", "--out",
           str(tmp_path / "fleet"), "--plain", "--idle-exit", "4", "--publish"]  # fmt: skip
    edge = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = first_message(broker.port, "sleepedge/v1/_fleet/status/engine")
    assert seen == "online", (seen, edge.poll())
    sub = [tool("mosquitto_sub"), "-p", str(broker.port)]
    stages = subprocess.Popen(
        [*sub, "-q", "1", "-v", "-C", str(n * SECONDS // 30), "-W", "240", "-t",
         "sleepedge/v1/+/stage"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    sim = subprocess.run(
        [sys.executable, "-m", "firmware_sim.cli", "--device", "anne", "--transport", "mqtt",
         "--broker", f"127.0.0.1:{broker.port}", "--device-id", "gw", "--devices", str(n),
         "--duration", str(SECONDS), "--speed", "30", "--bundle", bundle_s.split()[0],
         *(["--one-message"] if "one" in bundle_s else [])],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert sim.returncode == 0, sim.stderr
    assert f"published {n * 5350:,} frames of {n} devices in " in sim.stdout
    assert "(all acknowledged)" in sim.stdout
    messages = int(sim.stdout.split(" devices in ")[1].split(" messages")[0].replace(",", ""))
    if bundle_s == "0":
        assert messages == n * 5350
    elif bundle_s == "0.25":  # ~18 frames a second, bundled 4 times a second
        assert n * SECONDS * 4 <= messages <= n * (SECONDS * 4 + 1)
    else:  # all devices share each message: ≤ 4 a second of night (fewer at 30 × real time,
        # where one 20-ms tick of the gateway's clock spans several windows)
        assert SECONDS <= messages <= SECONDS * 4 + 2
    out, err = edge.communicate(timeout=240)
    assert edge.returncode == 0, err
    reference = alone_cli(tmp_path / "alone")
    for k in range(1, n + 1):
        d = f"gw-{k:04d}"
        got = lines(tmp_path / "fleet" / d / "epochs.jsonl")
        assert [g["stage"] for g in got] == [r["stage"] for r in reference]
        run = json.loads((tmp_path / "fleet" / d / "run.json").read_text())
        assert run["counts"]["lost"] == 0 and run["counts"]["gap_samples"] == 0
        assert f"{d}: {SECONDS // 30} epochs, frames 5,350, lost 0" in out
    published, _ = stages.communicate(timeout=240)
    topics = [line.split(" ", 1)[0] for line in published.splitlines()]
    assert sorted(set(topics)) == [f"sleepedge/v1/gw-{k:04d}/stage" for k in range(1, n + 1)]
    handovers = int(out.split(" hand-overs")[0].rsplit(" ", 1)[1].replace(",", ""))
    assert handovers <= n * (SECONDS // 30 + 2)  # held until each epoch was due, then decoded


def alone_cli(out):
    res = subprocess.run(
        [sys.executable, "-m", "edge.cli", "--source", "sim", "--device", "anne", "--duration",
         str(SECONDS), "--plain", "--out", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return lines(out / "epochs.jsonl")


def test_pushing_sooner_stages_epochs_sooner_and_the_same(night):
    """``--push-every``: live engines run the operators every 0.25 s of samples; replays every
    1 s. The epochs are the same; each comes out frames sooner (an epoch's last second needs
    the samples after it, which a 1-s push holds back for up to a second)."""
    emitted = {}
    for push in (1.0, 0.25):
        make, _ = factory(push)
        session = make(None, 0)
        at, records = [], []
        for k, data in enumerate(night):
            got = session.feed(data)
            at += [k] * len(got)
            records += [r.to_json() for r in got]
        emitted[push] = (at, records)
    assert emitted[0.25][1] == emitted[1.0][1][: len(emitted[0.25][1])]
    assert len(emitted[0.25][1]) >= len(emitted[1.0][1]) >= SECONDS // 30 - 1
    n = len(emitted[1.0][0])
    sooner = np.array(emitted[1.0][0]) - np.array(emitted[0.25][0][:n])
    assert (sooner >= 0).all() and np.median(sooner) >= 5  # ANNE sends ~18 frames a second


def test_a_device_that_sent_only_garbage_ends_cleanly(tmp_path):
    """Bytes that decode to nothing (e.g. a message on a topic the engine misread) give a night
    with no epochs and counted rejections, not a crash at the end of the run."""
    make, model = factory()
    fleet = Fleet(make, StreamBank(model), tmp_path / "fleet", {})
    for _ in range(3):
        fleet.feed("dev", b"\x63garbage-bytes")
    fleet.step()
    fleet.close()
    result = fleet.stats.finished["dev"]
    assert result.epochs == 0 and result.counts["rejected:unknown stream"] == 3
