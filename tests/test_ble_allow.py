"""``edge-run --ble-allow``: over a real BLE stack (Bumble GATT server in firmware-sim, two
virtual controllers linked over TCP, bleak on Bumble in edge-run), the engine connects only to
a wearable on its allow-list: off the list it never connects and ends with one line naming what
it saw; on the list it stages the night."""

import json

from tests.commands import run, spawn

NIGHT = ["--duration", "300", "--device-id", "ble8"]


def sim_and_edge(p1: int, p2: int, out, *allow: str):
    sim = spawn(
        "firmware_sim.cli", "--device", "psg", "--transport", "ble",
        "--ble-transport", f"tcp-client:127.0.0.1:{p1}", "--speed", "max", *NIGHT,
    )  # fmt: skip
    try:
        edge = run(
            "edge.cli", "--source", "ble", "--device", "psg", "--ble-backend", "bumble",
            "--ble-transport", f"tcp-client:127.0.0.1:{p2}", "--idle-exit", "8", "--plain",
            "--out", str(out), *NIGHT[2:], *allow, timeout=300,
        )  # fmt: skip
    finally:
        sim.terminate()
        sim.wait(10)
    return edge


def test_a_device_off_the_allow_list_is_never_connected(tmp_path, linked_controllers):
    edge = sim_and_edge(*linked_controllers, tmp_path / "out", "--ble-allow", "C0:98:E5:49:00:99")
    err = edge.stderr.strip().splitlines()
    assert edge.returncode == 2 and len(err) == 1, edge.stderr
    assert "no device on the allow-list" in err[0] and "PSG-SE-ble8" in err[0], err
    assert not (tmp_path / "out" / "epochs.jsonl").read_text()  # nothing staged


def test_a_device_on_the_allow_list_is_staged(tmp_path, linked_controllers):
    edge = sim_and_edge(
        *linked_controllers, tmp_path / "out", "--ble-allow", "AA:BB:CC:DD:EE:FF",
        "--ble-allow", "PSG-SE-ble8",
    )  # fmt: skip
    assert edge.returncode == 0, edge.stderr
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["source_stats"]["connects"] >= 1 and summary["source_stats"]["not_allowed"] == 0
    assert summary["epochs"] == 10


def test_an_explicit_address_off_the_list_is_refused_at_once(tmp_path):
    edge = run(
        "edge.cli", "--source", "ble", "--device", "psg", "--ble-backend", "bumble",
        "--ble-transport", "tcp-client:127.0.0.1:9", "--ble-address", "C0:98:E5:49:00:01",
        "--ble-allow", "C0:98:E5:49:00:02", "--plain", "--out", str(tmp_path / "out"),
    )  # fmt: skip
    err = edge.stderr.strip().splitlines()
    assert edge.returncode == 2 and len(err) == 1 and "not on the --ble-allow list" in err[0], err
