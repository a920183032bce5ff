"""The console scripts as a user runs them: exit codes and one-line messages."""

import subprocess
import sys


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args], capture_output=True, text=True, check=False
    )


def test_sim_plays_the_bundled_anne_night_over_the_wire():
    out = run("--source", "sim", "--duration", "90")
    assert out.returncode == 0, out.stderr
    assert "night synth:walch/46343" in out.stdout
    assert "lost 0, rejected 0; 90 feature frames of input 'mamba'" in out.stdout
    assert "real hypnogram of this night: W 3" in out.stdout  # the record's first 3 epochs


def test_sim_plays_the_bundled_psg_night():
    out = run("--source", "sim", "--device", "psg", "--duration", "95")
    assert out.returncode == 0, out.stderr
    assert "4 epochs of input 'ulw_sleepnet'" in out.stdout  # rounded up to whole epochs


def test_expected_failures_are_one_line_not_tracebacks():
    for args, text in [
        (("--source", "ble"), "not yet available"),
        (("--device", "nope"), "unknown device 'nope'"),
        (("--duration", "-1"), "must be positive"),
    ]:
        out = run(*args)
        assert out.returncode == 2
        assert text in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_firmware_sim_fails_fast_with_one_line():
    for args, text in [
        (("--broker", "127.0.0.1:1"), "cannot reach MQTT broker 127.0.0.1:1"),
        (("--device", "nope"), "unknown device 'nope'"),
        (("--source", "synth:walch/nope", "--broker", "127.0.0.1:1"), "cannot reach MQTT broker"),
        (("--speed", "0"), "speed must be positive"),
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
