"""Frames from a gateway over MQTT: ``sleepedge/v1/<device-id>/raw/<stream>`` at QoS 1.

A persistent session (fixed client id, ``clean_start=False``, session expiry) keeps QoS 1 frames
on the broker while we are away; paho reconnects by itself and ``on_connected`` subscribes
again, so a broker restart loses nothing the broker persisted. Frames go through a bounded queue:
when the engine falls behind by ``max_queue`` frames, newer frames are dropped and counted
(bounded memory under a flood). The source ends when the device's availability topic turns
``offline`` live (a retained ``offline`` from an earlier run is ignored) and the queue is drained,
or when ``stop()`` is called.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator

from edge.devices.profile import DeviceProfile
from edge.net.mqtt import BrokerAddress, connect

log = logging.getLogger("sleepedge.mqtt")


class MqttSource:
    def __init__(
        self,
        profile: DeviceProfile,
        broker: BrokerAddress,
        device_id: str,
        client_id: str | None = None,
        max_queue: int = 100_000,
        session_expiry_s: int = 24 * 3600,
        quiet_s: float = 1.0,
    ) -> None:
        if profile.mqtt is None:
            raise ValueError(f"device {profile.name!r} has no [mqtt] topics in its descriptor")
        self.description = f"MQTT {broker.host}:{broker.port} device {device_id}"
        self.stats = {"received": 0, "dropped_queue_full": 0, "reconnects": 0}
        self._queue: queue.Queue[bytes] = queue.Queue(max_queue)
        self._ended = threading.Event()
        self._quiet_s = quiet_s
        self._raw = profile.mqtt.topic("raw", device_id, "+")
        self._status = profile.mqtt.topic("status", device_id)
        self._connects = 0

        def subscribe(client) -> None:
            self._connects += 1
            self.stats["reconnects"] = self._connects - 1
            client.subscribe([(self._raw, 1), (self._status, 1)])

        self.client = connect(
            broker,
            client_id or f"edge-{device_id}",
            clean_start=False,
            session_expiry_s=session_expiry_s,
            on_connected=subscribe,
        )
        self.client.on_message = self._on_message

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == self._status:
            if msg.payload == b"offline" and not msg.retain:
                log.info("device went offline: ending after the queue drains")
                self._ended.set()
            return
        try:
            self._queue.put_nowait(msg.payload)
            self.stats["received"] += 1
        except queue.Full:
            self.stats["dropped_queue_full"] += 1

    def __iter__(self) -> Iterator[bytes]:
        while True:
            try:
                yield self._queue.get(timeout=self._quiet_s if self._ended.is_set() else 0.2)
            except queue.Empty:
                if self._ended.is_set():
                    return

    def stop(self) -> None:
        self._ended.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
