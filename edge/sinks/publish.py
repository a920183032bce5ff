"""``--publish``: each epoch as JSON to ``sleepedge/v1/<device-id>/stage`` at QoS 1."""

from __future__ import annotations

import json

from edge.devices.profile import DeviceProfile
from edge.net.mqtt import AckTracker, BrokerAddress, connect
from edge.staging import EpochRecord


class StagePublisher:
    """One MQTT client; ``write`` publishes to ``device_id``'s stage topic, ``for_device`` gives
    a per-device view of the same client (a fleet publishes every device's epochs through one
    connection)."""

    def __init__(self, profile: DeviceProfile, broker: BrokerAddress, device_id: str) -> None:
        if profile.mqtt is None:
            raise ValueError(f"device {profile.name!r} has no [mqtt] topics in its descriptor")
        self.profile, self.device_id = profile, device_id
        self.client = connect(broker, f"edge-pub-{device_id}")
        self.acks = AckTracker(self.client)

    def write(self, records: list[EpochRecord], device_id: str | None = None) -> None:
        topic = self.profile.mqtt.topic("stage", device_id or self.device_id)
        for r in records:
            payload = json.dumps(r.to_json(), separators=(",", ":")).encode()
            self.acks.publish(self.client, topic, payload)

    def for_device(self, device_id: str) -> DevicePublisher:
        return DevicePublisher(self, device_id)

    def close(self, timeout_s: float = 30.0) -> None:
        self.acks.wait(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()


class DevicePublisher:
    """One device's epochs through a shared ``StagePublisher``; closing it closes nothing."""

    def __init__(self, shared: StagePublisher, device_id: str) -> None:
        self.shared, self.device_id = shared, device_id

    def write(self, records: list[EpochRecord]) -> None:
        self.shared.write(records, self.device_id)

    def close(self) -> None:
        pass
