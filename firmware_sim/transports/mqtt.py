"""A virtual device behind a gateway: each frame published to ``sleepedge/v1/<id>/raw/<stream>``
at QoS 1 (one message per frame, about 8 a second per stream at most), availability retained."""

from __future__ import annotations

from edge.devices import DeviceProfile
from edge.net.mqtt import BrokerAddress, connect
from firmware_sim.device import SentFrame


class MqttPublisher:
    def __init__(
        self, profile: DeviceProfile, broker: BrokerAddress, device_id: str, qos: int = 1
    ) -> None:
        if profile.mqtt is None:
            raise ValueError(f"device {profile.name!r} has no [mqtt] topics in its descriptor")
        self.profile, self.device_id, self.qos = profile, device_id, qos
        self._topics = {s: profile.mqtt.topic("raw", device_id, s) for s in profile.streams}
        self._status = profile.mqtt.topic("status", device_id)
        self.client = connect(broker, f"sim-{device_id}", status_topic=self._status)
        self._pending = []
        self.published = 0

    def send(self, frame: SentFrame) -> None:
        info = self.client.publish(self._topics[frame.stream], frame.data, qos=self.qos)
        self._pending.append(info)
        self.published += 1
        if len(self._pending) >= 512:  # bound what waits for PUBACK
            self._pending = [i for i in self._pending if not i.is_published()]

    def close(self, timeout_s: float = 30.0) -> None:
        """Wait until the broker has acknowledged every frame, go offline, disconnect."""
        for info in self._pending:
            info.wait_for_publish(timeout_s)
        self._pending.clear()
        self.client.publish(self._status, b"offline", qos=1, retain=True).wait_for_publish(
            timeout_s
        )
        self.client.disconnect()
        self.client.loop_stop()
