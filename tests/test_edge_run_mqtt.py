"""edge-run over MQTT with a real mosquitto: a broker restart mid-night loses nothing at QoS 1,
and the command-line clients interoperate (mosquitto_sub reads epochs, mosquitto_pub frames)."""

import json
import subprocess
import sys
import time

from edge.devices import load_device
from edge.devices.codec import bundle
from firmware_sim.device import VirtualDevice
from firmware_sim.sources import synth_night
from tests.mosquitto import first_message, tool

PSG = load_device("psg")


def start_edge_run(broker, device_id, out, *extra, device="psg"):
    cmd = [sys.executable, "-m", "edge.cli", "--source", "mqtt", "--device", device, "--plain",
           "--broker", f"127.0.0.1:{broker.port}", "--device-id", device_id, "--out", str(out),
           *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # the engine's retained "online" is published after it subscribed to the raw topics
    seen = first_message(broker.port, f"sleepedge/v1/{device_id}/status/engine")
    assert seen == "online", (seen, proc.poll())
    return proc


def test_broker_restart_mid_night_loses_no_frame(broker, tmp_path):
    reference = tmp_path / "reference"
    ref = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "--source",
            "sim",
            "--duration",
            "1200",
            "--plain",
            "--out",
            str(reference),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ref.returncode == 0, ref.stderr
    sub = subprocess.Popen(
        [
            tool("mosquitto_sub"),
            "-p",
            str(broker.port),
            "-q",
            "1",
            "-C",
            "40",
            "-W",
            "240",
            "-t",
            "sleepedge/v1/dev9/stage",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
    )
    edge = start_edge_run(broker, "dev9", tmp_path / "out", "--publish")
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_sim.cli",
            "--device",
            "psg",
            "--transport",
            "mqtt",
            "--broker",
            f"127.0.0.1:{broker.port}",
            "--device-id",
            "dev9",
            "--duration",
            "1200",
            "--speed",
            "60",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)  # about a third of the way through the night
    broker.restart()
    sim_out, sim_err = sim.communicate(timeout=240)
    assert sim.returncode == 0, sim_err
    edge_out, edge_err = edge.communicate(timeout=240)
    assert edge.returncode == 0, edge_err
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["source_stats"]["reconnects"] >= 1  # the restart really cut the link
    assert "published 4,800 frames (4,802 acknowledged)" in sim_out  # + finished + offline; the
    # "online" re-announced after the reconnect is not one of its publishes and is not counted
    assert run["counts"]["lost"] == 0 and run["counts"]["gap_samples"] == 0, run["counts"]
    got = (tmp_path / "out" / "epochs.jsonl").read_text().splitlines()
    assert got == (reference / "epochs.jsonl").read_text().splitlines()  # as if in-process
    published, _ = sub.communicate(timeout=240)
    lines = published.splitlines()
    assert [json.loads(x) for x in lines] == [json.loads(x) for x in got]  # mosquitto_sub reads


def test_frames_from_mosquitto_pub_are_decoded_and_garbage_is_counted(broker, tmp_path):
    rec = synth_night("sleep-edf/SC4001", PSG, 0, 30).recording
    frames = list(VirtualDevice.from_recording(PSG, rec).frames())
    edge = start_edge_run(broker, "pub1", tmp_path / "out")
    pub = [tool("mosquitto_pub"), "-p", str(broker.port), "-q", "1"]
    f = tmp_path / "frame.bin"
    for fr in frames:
        f.write_bytes(fr.data)
        subprocess.run([*pub, "-t", f"sleepedge/v1/pub1/raw/{fr.stream}", "-f", str(f)], check=True)
    f.write_bytes(b"\x07garbage")
    subprocess.run([*pub, "-t", "sleepedge/v1/pub1/raw/eeg", "-f", str(f)], check=True)
    subprocess.run([*pub, "-t", "sleepedge/v1/pub1/status", "-m", "finished"], check=True)
    out, err = edge.communicate(timeout=120)
    assert edge.returncode == 0, err
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["counts"]["frames"] == len(frames)
    assert sum(run["rejected_by_reason"].values()) == 1
    epochs = (tmp_path / "out" / "epochs.jsonl").read_text().splitlines()
    assert len(epochs) == 1 and json.loads(epochs[0])["stage"] >= 0


def test_bundled_frames_are_unpacked_and_a_cut_bundle_keeps_its_whole_frames(broker, tmp_path):
    """A gateway's bundles (``codec.bundle``) on the device's bundle topic: every frame is
    staged as if sent alone; a bundle cut short mid-frame keeps the frames before the cut and
    is counted with its reason."""
    rec = synth_night("sleep-edf/SC4001", PSG, 0, 30).recording
    frames = [fr.data for fr in VirtualDevice.from_recording(PSG, rec).frames()]
    edge = start_edge_run(broker, "gw1", tmp_path / "out")
    pub = [
        tool("mosquitto_pub"),
        "-p",
        str(broker.port),
        "-q",
        "1",
        "-t",
        "sleepedge/v1/gw1/bundle",
    ]
    f = tmp_path / "bundle.bin"
    half = len(frames) // 2
    f.write_bytes(bundle(frames[:half]))
    subprocess.run([*pub, "-f", str(f)], check=True)
    cut = bundle(frames[half:])
    f.write_bytes(cut + bundle(frames[:1])[:-3])  # a repeat of frame 0, cut 3 bytes short
    subprocess.run([*pub, "-f", str(f)], check=True)
    subprocess.run([*pub[:-2], "-t", "sleepedge/v1/gw1/status", "-m", "finished"], check=True)
    out, err = edge.communicate(timeout=120)
    assert edge.returncode == 0, err
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["counts"]["frames"] == len(frames) and run["counts"]["lost"] == 0
    assert run["source_stats"]["bad_bundles"] == 1
    epochs = (tmp_path / "out" / "epochs.jsonl").read_text().splitlines()
    assert len(epochs) == 1 and json.loads(epochs[0])["stage"] >= 0
