"""edge-run over a real BLE stack: a virtual PSG (Bumble GATT server in firmware-sim) → two
virtual controllers linked over TCP → bleak on the Bumble backend in edge-run → outputs."""

import json

from tests.commands import run, spawn

FAULTS = ["--duration", "1200", "--seed", "5", "--loss", "0.01", "--disconnect", "30/360"]


def test_ble_night_with_link_drops_equals_the_in_process_run(tmp_path, linked_controllers):
    reference = tmp_path / "reference"
    ref = run("edge.cli", "--source", "sim", "--plain", "--out", str(reference), *FAULTS)
    assert ref.returncode == 0, ref.stderr
    p1, p2 = linked_controllers
    sim = spawn(
        "firmware_sim.cli", "--device", "psg", "--transport", "ble",
        "--ble-transport", f"tcp-client:127.0.0.1:{p1}", "--speed", "max",
        "--device-id", "ble7", *FAULTS,
    )  # fmt: skip
    try:
        out = tmp_path / "ble"
        edge = run(
            "edge.cli", "--source", "ble", "--device", "psg", "--ble-backend", "bumble",
            "--ble-transport", f"tcp-client:127.0.0.1:{p2}", "--device-id", "ble7",
            "--idle-exit", "5", "--plain", "--out", str(out),
            timeout=300,
        )  # fmt: skip
        assert edge.returncode == 0, edge.stderr
        sim_out, sim_err = sim.communicate(timeout=60)
        assert sim.returncode == 0, sim_err
        assert "3 link drop(s)" in sim_out
        summary = json.loads((out / "run.json").read_text())
        assert summary["source_stats"]["connects"] == 4  # first connect + one per link drop
        expected = json.loads((reference / "run.json").read_text())["counts"]
        assert summary["counts"]["lost"] == expected["lost"] > 0
        got = (out / "epochs.jsonl").read_text().splitlines()
        assert got == (reference / "epochs.jsonl").read_text().splitlines()
    finally:
        if sim.poll() is None:
            sim.terminate()
            sim.wait(10)
