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


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on a free loopback port (see tests/mosquitto.py)."""
    from tests.mosquitto import Broker

    b = Broker(tmp_path).start()
    yield b
    b.stop()
