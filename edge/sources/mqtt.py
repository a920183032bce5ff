"""Frames from a gateway over MQTT: ``sleepedge/v1/<device-id>/raw/<stream>`` at QoS 1, one
frame per message, or ``sleepedge/v1/<device-id>/bundle``, several frames of the device per
message (``codec.bundle``: a gateway batching what it heard); a fleet engine also hears
``sleepedge/v1/<gateway-id>/gateway``, the bundles of all of a gateway's devices in one message
(``codec.gateway``). A bundle cut short keeps its whole frames and is counted in
``stats["bad_bundles"]`` with the reason logged.

A persistent session (fixed client id, ``clean_start=False``, session expiry) keeps QoS 1 frames
on the broker while we are away; paho reconnects by itself and ``on_connected`` subscribes
again, so a broker restart loses nothing the broker persisted. Frames go through a bounded queue:
when the engine falls behind by ``max_queue`` frames, newer frames are dropped and counted
(bounded memory under a flood). The device's end-of-session message (``raw/end``,
``codec.encode_end``) goes to the session like a frame, which counts the frames lost after the
last one received. The source ends when the device says ``finished`` on its status topic
(live; a retained message from an earlier run is ignored) and the queue is drained, or when
``stop()`` is called (Ctrl-C / SIGTERM in edge-run). ``offline`` (a last will, or a gateway
going away) is availability only: the night goes on and the gap shows when frames come back.
The engine announces itself on ``<status>/engine`` (retained
``online`` once subscribed, ``offline`` by last will or on close), so a gateway or a test knows
when frames will be heard.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from edge.devices.codec import unbundle, ungateway
from edge.devices.profile import DeviceProfile
from edge.net.mqtt import BrokerAddress, connect
from edge.sources.frame_queue import FrameQueue

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
        idle_exit_s: float | None = None,
    ) -> None:
        if profile.mqtt is None:
            raise ValueError(f"device {profile.name!r} has no [mqtt] topics in its descriptor")
        self.description = f"MQTT {broker.host}:{broker.port} device {device_id}"
        self.stats = {"received": 0, "dropped_queue_full": 0, "reconnects": 0, "bad_bundles": 0}
        self._queue = FrameQueue(max_queue, self.stats)
        self._ended = threading.Event()
        self._quiet_s, self.idle_exit_s = quiet_s, idle_exit_s
        self._last_frame = time.monotonic()
        self._raw = profile.mqtt.topic("raw", device_id, "+")
        self._bundle = profile.mqtt.topic("bundle", device_id)
        self._status = profile.mqtt.topic("status", device_id)
        self._end = profile.mqtt.topic("raw", device_id, "end")  # the end-of-session message
        self.engine_topic = profile.mqtt.topic("status", self._engine_id(device_id)) + "/engine"
        self._connects = 0
        topics = [(t, 1) for t in (self._raw, self._bundle, self._status, *self._more(profile))]

        def subscribe(client) -> None:
            self._connects += 1
            self.stats["reconnects"] = self._connects - 1
            client.on_message = self._on_message  # before SUBSCRIBE: queued frames come at once
            client.subscribe(topics)

        self.client = connect(
            broker,
            client_id or f"edge-{self._engine_id(device_id)}",
            clean_start=False,
            session_expiry_s=session_expiry_s,
            status_topic=self.engine_topic,
            on_connected=subscribe,
        )

    @staticmethod
    def _engine_id(device_id: str) -> str:
        return device_id

    @staticmethod
    def _more(profile: DeviceProfile) -> list[str]:
        """Topics beyond the device's own (a fleet engine also hears gateways)."""
        return []

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == self._status:
            if msg.payload == b"finished" and not msg.retain:
                log.info("device finished: ending after the queue drains")
                self._ended.set()
            elif not msg.retain:
                log.info("device status: %s", msg.payload.decode(errors="replace"))
            return
        self._last_frame = time.monotonic()
        if msg.topic == self._bundle:
            for frame in self._unbundle(msg.payload, msg.topic):
                self._queue.offer(frame)
        elif msg.topic == self._end:
            self._offer_end(msg.payload)
        else:
            self._queue.offer(msg.payload)

    def _offer_end(self, item) -> None:
        """The device's end-of-session message goes to the session in order with its frames;
        counted apart (``end_of_session``), not as a received frame."""
        before = self.stats["received"]
        self._queue.offer(item)
        self.stats["received"] = before
        self.stats["end_of_session"] = self.stats.get("end_of_session", 0) + 1

    def _unbundle(self, payload: bytes, where: str) -> list[bytes]:
        """A bundle's whole frames; a defect is counted and logged with where it came from."""
        frames, defect = unbundle(payload)
        if defect:
            self.stats["bad_bundles"] += 1
            log.warning("bad bundle on %s: %s (%d whole frames kept)", where, defect, len(frames))
        return frames

    def _idle(self) -> bool:
        if not self.client.is_connected():  # a broker away is not an idle night
            self._last_frame = time.monotonic()
            return False
        if self.idle_exit_s and self.stats["received"]:
            if time.monotonic() - self._last_frame > self.idle_exit_s:
                log.info("no frame for %.0f s: ending", self.idle_exit_s)
                return True
        return False

    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self._queue.get(timeout=self._quiet_s if self._ended.is_set() else 0.2)
            if data is not None:
                self._last_frame = time.monotonic()  # idle counts from the last frame handled
                yield data
            elif self._ended.is_set() or self._idle():
                return

    def stop(self) -> None:
        self._ended.set()

    def close(self) -> None:
        self.client.publish(self.engine_topic, b"offline", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


FLEET_ENGINE_ID = "_fleet"


class MqttFleetSource(MqttSource):
    """Every device on the broker (``sleepedge/v1/+/raw/+``) for one engine: yields batches of
    ``(device_id, frame bytes)``, with ``(device_id, None)`` when a device says ``finished``.

    A batch is everything queued when the engine asks (at most ``max_batch``), so all the
    devices whose seconds completed meanwhile are stepped in one model call. The engine's own
    availability is ``sleepedge/v1/_fleet/status/engine``. It runs until ``stop()`` (Ctrl-C /
    SIGTERM) or ``idle_exit_s`` without frames from any device.
    """

    def __init__(
        self, profile: DeviceProfile, broker: BrokerAddress, max_batch: int = 20_000, **kw
    ) -> None:
        template = profile.mqtt.raw.split("/") if profile.mqtt else []
        self._id_at = template.index("{device_id}") if "{device_id}" in template else -1
        self._kinds = (
            {  # a topic with its device id put back as the placeholder → its kind
                getattr(profile.mqtt, kind): kind for kind in ("bundle", "gateway", "status")
            }
            if profile.mqtt
            else {}
        )
        self.max_batch = max_batch
        self._profile_mqtt = profile.mqtt
        super().__init__(profile, broker, "+", **kw)
        self.description = f"MQTT {broker.host}:{broker.port} every device"

    @staticmethod
    def _engine_id(device_id: str) -> str:
        return FLEET_ENGINE_ID

    @staticmethod
    def _more(profile: DeviceProfile) -> list[str]:
        return [profile.mqtt.topic("gateway", "+")]

    def _on_message(self, client, userdata, msg) -> None:
        parts = msg.topic.split("/")
        if len(parts) <= self._id_at:
            return
        device_id = parts[self._id_at]
        parts[self._id_at] = "{device_id}"
        kind = self._kinds.get("/".join(parts), "raw")
        if kind == "status":
            if msg.payload == b"finished" and not msg.retain:
                log.info("device %s finished", device_id)
                self._queue.offer((device_id, None))
            return
        self._last_frame = time.monotonic()
        if kind == "bundle":
            self._offer_bundle(device_id, msg.payload, msg.topic)
        elif kind == "gateway":
            entries, defect = ungateway(msg.payload)
            if defect:
                self.stats["bad_bundles"] += 1
                log.warning("bad gateway message on %s: %s (%d devices kept)", msg.topic, defect,
                            len(entries))  # fmt: skip
            for device, payload in entries:
                self._offer_bundle(device, payload, f"{msg.topic} for {device}")
        elif msg.topic == self._profile_mqtt.topic("raw", device_id, "end"):
            self._offer_end((device_id, msg.payload))
        else:
            self._queue.offer((device_id, msg.payload))

    def _offer_bundle(self, device_id: str, payload: bytes, where: str) -> None:
        frames = self._unbundle(payload, where)
        if frames:
            self._queue.offer((device_id, frames))  # one queue item; batches() unpacks it

    def batches(self) -> Iterator[list[tuple[str, bytes | None]]]:
        while not self._ended.is_set():
            first = self._queue.get(timeout=0.2)
            if first is None:
                if self._idle():
                    return
                continue
            # idle counts from the last frame handled, not received: a backlog worked off
            # for longer than idle_exit_s (a broker restart pausing it) is not an idle night
            self._last_frame = time.monotonic()
            items = [first, *self._queue.get_nowait_many(self.max_batch - 1)]
            batch: list[tuple[str, bytes | None]] = []
            for device_id, data in items:
                if isinstance(data, list):  # a bundle's frames
                    batch += [(device_id, frame) for frame in data]
                else:
                    batch.append((device_id, data))
            yield batch

    def __iter__(self):
        raise TypeError("MqttFleetSource yields batches: iterate over .batches()")
