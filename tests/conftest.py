"""Shared test configuration: hypothesis profiles sized for a 2-core machine."""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=40,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


import pytest  # noqa: E402

from tests.commands import wait_for_port  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on a free loopback port (see tests/mosquitto.py)."""
    from tests.mosquitto import Broker

    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def linked_controllers():
    """Two Bumble virtual controllers linked in another process, each on a TCP port: a
    peripheral on one and a central on the other talk over a real BLE host stack."""
    import subprocess
    import sys

    from tests.mosquitto import free_port

    p1, p2 = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bumble.apps.controllers",
            f"tcp-server:127.0.0.1:{p1}",
            f"tcp-server:127.0.0.1:{p2}",
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(p2, "bumble controllers")
    yield p1, p2
    proc.terminate()
    proc.wait(10)
