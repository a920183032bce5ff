"""``--publish``: each epoch as JSON to ``sleepedge/v1/<device-id>/stage`` at QoS 1."""

from __future__ import annotations

import json

from edge.devices.profile import DeviceProfile
from edge.net.mqtt import AckTracker, BrokerAddress, connect
from edge.staging import EpochRecord


class StagePublisher:
    def __init__(self, profile: DeviceProfile, broker: BrokerAddress, device_id: str) -> None:
        if profile.mqtt is None:
            raise ValueError(f"device {profile.name!r} has no [mqtt] topics in its descriptor")
        self.topic = profile.mqtt.topic("stage", device_id)
        self.client = connect(broker, f"edge-pub-{device_id}")
        self.acks = AckTracker(self.client)

    def write(self, records: list[EpochRecord]) -> None:
        for r in records:
            payload = json.dumps(r.to_json(), separators=(",", ":")).encode()
            self.acks.publish(self.client, self.topic, payload)

    def close(self, timeout_s: float = 30.0) -> None:
        self.acks.wait(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()
