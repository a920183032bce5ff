"""Plays deliveries on a clock: real time, N × real time, or as fast as possible.

``speed=None`` ("max") never sleeps, so tests are deterministic; otherwise delivery k waits
until ``t_deliver_s / speed`` seconds after the start (an absolute schedule: no drift builds
up from sleeping late).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from firmware_sim.device import SentFrame
from firmware_sim.faults import Delivery


def play(
    deliveries: Iterable[Delivery],
    send: Callable[[SentFrame], None],
    speed: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Send every delivery at its time; returns the number sent."""
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be positive, got {speed}")
    start = clock()
    sent = 0
    for d in deliveries:
        if speed is not None:
            wait = start + d.t_deliver_s / speed - clock()
            if wait > 0:
                sleep(wait)
        send(d.frame)
        sent += 1
    return sent
