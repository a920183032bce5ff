"""A virtual device behind a gateway: each frame published to ``sleepedge/v1/<id>/raw/<stream>``
at QoS 1 (one message per frame, about 8 a second per stream at most), availability retained.
At the end, the end-of-session message (``codec.encode_end``: the last sequence number of each
stream) on ``sleepedge/v1/<id>/raw/end``, then ``finished`` on the status topic."""

from __future__ import annotations

from edge.devices import DeviceProfile
from edge.devices.codec import SessionEnd, encode_end
from edge.net.mqtt import AckTracker, BrokerAddress, connect
from firmware_sim.device import SentFrame

END_STREAM = "end"  # raw/<END_STREAM>: the end-of-session message


class MqttPublisher:
    def __init__(
        self, profile: DeviceProfile, broker: BrokerAddress, device_id: str, qos: int = 1
    ) -> None:
        if profile.mqtt is None:
            raise ValueError(f"device {profile.name!r} has no [mqtt] topics in its descriptor")
        self.profile, self.device_id, self.qos = profile, device_id, qos
        self._topics = {s: profile.mqtt.topic("raw", device_id, s) for s in profile.streams}
        self._end = profile.mqtt.topic("raw", device_id, END_STREAM)
        self._status = profile.mqtt.topic("status", device_id)
        self.client = connect(broker, f"sim-{device_id}", status_topic=self._status)
        self.acks = AckTracker(self.client)  # after connect: its "online" is not counted

    @property
    def published(self) -> int:
        return self.acks.sent

    def send(self, frame: SentFrame) -> None:
        """Publish one frame; while the broker is away paho queues it and resends later."""
        self.acks.publish(self.client, self._topics[frame.stream], frame.data)

    def close(self, timeout_s: float = 60.0, end: SessionEnd | None = None) -> None:
        """Wait until the broker has acknowledged every frame, send ``end`` (where the session
        ended) and say ``finished`` (the recording is over; live only), go ``offline``
        (retained), disconnect."""
        self.acks.wait(timeout_s)
        if end is not None:
            self.acks.publish(self.client, self._end, encode_end(end))
        self.acks.publish(self.client, self._status, b"finished")
        self.acks.publish(self.client, self._status, b"offline", retain=True)
        self.acks.wait(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()
