"""The console scripts as a user runs them: exit codes and one-line messages."""

import subprocess
import sys

from tests.commands import run


def edge_run(*args, timeout=300):
    return run("edge.cli", *args, timeout=timeout)


def test_sim_stages_the_bundled_psg_night(tmp_path):
    out = edge_run("--source", "sim", "--duration", "95", "--out", str(tmp_path), "--plain")
    assert out.returncode == 0, out.stderr
    assert "4 epochs (ulw_sleepnet)" in out.stdout  # rounded up to whole epochs
    assert "synth:sleep-edf/SC4001" in out.stdout
    assert "agreement with the record's scored hypnogram" in out.stdout
    lines = (tmp_path / "epochs.jsonl").read_text().splitlines()
    assert len(lines) == 4


def test_expected_failures_are_one_line_not_tracebacks(tmp_path):
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"not an edf at all")
    for args, text in [
        (("--device", "nope"), "unknown device 'nope'"),
        (("--device", "anne", "--model", "ulw_sleepnet"), "is for device 'psg', not 'anne'"),
        (("--backend", "native", "--device", "anne", "--precision", "int8"), "fp32 only"),
        (("--duration", "-1"), "must be positive"),
        (("--push-every", "-0.5"), "--push-every must be >= 0"),
        (("--device-id", "+"), "--device-id + (every device) needs --source mqtt"),
        (("--device-id", "+", "--source", "mqtt", "--broker", "127.0.0.1:1"), "cannot reach"),
        (("--source", "replay"), "--source replay needs --file"),
        (("--source", "replay", "--file", str(bad)), "bad.edf"),
        (("--source", "replay", "--file", str(tmp_path / "none.edf")), "none.edf"),
        (("--source", "mqtt", "--broker", "127.0.0.1:1"), "cannot reach MQTT broker"),
        (("--model", "nope"), "model 'nope' not found"),
        (("--source", "ble", "--ble-backend", "bumble"), "needs --ble-transport"),
        (
            (
                "--source",
                "ble",
                "--ble-backend",
                "bumble",
                "--ble-transport",
                "tcp-client:127.0.0.1:1",
            ),
            "BLE: [Errno 111]",
        ),
        (("--resume", "--out", str(tmp_path / "fresh")), "no checkpoint"),
        (("--montage", "aasm"), "--channels, --montage and --hypnogram need --source replay"),
        (("--source", "replay", "--file", str(bad), "--channels", "eeg"), "STREAM=LABEL pairs"),
    ]:
        out = edge_run(*args, "--out", str(tmp_path / "o"))
        assert out.returncode == 2, (args, out.stderr)
        assert text in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_firmware_sim_fails_fast_with_one_line():
    for args, text in [
        (("--broker", "127.0.0.1:1"), "cannot reach MQTT broker 127.0.0.1:1"),
        (("--device", "nope"), "unknown device 'nope'"),
        (("--source", "synth:walch/nope", "--broker", "127.0.0.1:1"), "cannot reach MQTT broker"),
        (("--speed", "0"), "speed must be positive"),
        (("--devices", "0"), "--devices N needs N >= 1"),
        (("--devices", "3", "--transport", "ble"), "--devices N needs N >= 1"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "firmware_sim.cli", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert out.returncode == 2, (args, out.stderr)
        assert text in out.stderr and "Traceback" not in out.stderr
