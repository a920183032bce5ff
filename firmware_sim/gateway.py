"""A gateway for many virtual devices: one MQTT connection publishing every device's frames.

``firmware-sim --transport mqtt --devices N`` plays the same night on N device ids
(``<device-id>-0001`` …), device k starting ``k / N × stagger_s`` after the first so that their
epochs do not all end in the same instant, as with real wearables switched on at different
times. All frames go out at QoS 1 through one paho client on one absolute schedule (no drift
from sleeping late); each device says ``online`` at its start and ``finished`` at its end on its
own status topic. Payloads are the night's frames re-used for every id: the load is real, the
content the same. With ``bundle_s`` the gateway batches, as real ones do: each device's frames
of every ``bundle_s`` window of its night go out as one message on its bundle topic when the
window closes (``codec.bundle``), cutting the message rate ~18 × ``bundle_s``-fold for ANNE;
with ``one_message`` too, every ``bundle_s`` of the gateway's clock all its devices' frames go
out as one message on the gateway's own topic (``codec.gateway``), as a hub serving a ward does.
Before its ``finished``, each device's end-of-session message goes to its ``raw/end`` topic.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edge.devices import DeviceProfile
from edge.devices.codec import SessionEnd, bundle, encode_end, gateway
from edge.net.mqtt import AckTracker, BrokerAddress, connect
from firmware_sim.faults import Delivery

MAX_MESSAGE = 4 << 20  # bytes of frames per gateway message (an unpaced replay sends nights)


def device_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{k + 1:04d}" for k in range(n)]


def start_offsets(n: int, stagger_s: float) -> np.ndarray:
    """Device k's start, in seconds after device 1's."""
    return np.arange(n) * (stagger_s / max(n, 1))


class Gateway:
    def __init__(
        self,
        profile: DeviceProfile,
        broker: BrokerAddress,
        ids: list[str],
        stagger_s: float = 1.0,
        client_id: str = "sim-gateway",
        bundle_s: float = 0.0,
        one_message: str | None = None,
    ) -> None:
        """``one_message``: the gateway's id, to send all devices' bundles as one message."""
        if profile.mqtt is None:
            raise ValueError(f"device {profile.name!r} has no [mqtt] topics in its descriptor")
        self.profile, self.ids, self.bundle_s = profile, ids, bundle_s
        if one_message and bundle_s <= 0:
            raise ValueError("one message for all devices needs a bundle window (bundle_s > 0)")
        self.gateway_topic = profile.mqtt.topic("gateway", one_message) if one_message else None
        self.messages_sent = 0
        self.offsets = start_offsets(len(ids), stagger_s)
        self.client = connect(broker, client_id)
        self.acks = AckTracker(self.client)
        self.frames_sent = 0
        self.late_s = 0.0  # worst lateness of a publish against its schedule

    def play(
        self,
        deliveries: list[Delivery],
        speed: float | None = 1.0,
        tick_s: float = 0.02,
        on_start: Callable[[float], None] | None = None,
        session_end: SessionEnd | None = None,
    ) -> int:
        """Every device's frames on the schedule (``speed`` × real time, None: at once);
        ``on_start(unix_time)`` is called when device 1's time 0 is; ``session_end``: each device's
        end-of-session message, sent on its ``raw/end`` topic before its ``finished``."""
        mqtt = self.profile.mqtt
        raw = [[mqtt.topic("raw", d, s) for s in self.profile.streams] for d in self.ids]
        bundles = [mqtt.topic("bundle", d) for d in self.ids]
        streams = list(self.profile.streams)
        column = np.array([streams.index(d.frame.stream) for d in deliveries])
        payload = [d.frame.data for d in deliveries]
        times = np.array([d.t_deliver_s for d in deliveries])
        window = np.floor(times / self.bundle_s) if self.bundle_s > 0 else times
        end = (times[-1] if len(times) else 0.0) + self.offsets[-1]
        status = [mqtt.topic("status", d) for d in self.ids]
        started = np.zeros(len(self.ids), bool)
        done = np.zeros(len(self.ids), np.int64)  # next delivery index of each device
        publish, client = self.acks.publish, self.client
        t0 = time.monotonic()
        if on_start is not None:
            on_start(time.time())
        now_s = 0.0
        while True:
            if speed is not None:
                now_s = (time.monotonic() - t0) * speed
            else:
                now_s = end + 1.0
            device_s = now_s - self.offsets
            if self.gateway_topic and now_s <= end:  # the gateway's own windows
                device_s = np.floor(now_s / self.bundle_s) * self.bundle_s - self.offsets
            elif self.bundle_s > 0 and now_s <= end:  # each device's windows that have closed
                device_s = np.floor(device_s / self.bundle_s) * self.bundle_s
            upto = np.searchsorted(times, device_s, side="right")
            for k in np.flatnonzero(~started & (self.offsets <= now_s)):
                publish(client, status[k], b"online")
                started[k] = True
            entries: list[tuple[str, list[bytes]]] = []
            for k in np.flatnonzero(upto > done):
                if self.gateway_topic:
                    entries.append((self.ids[k], payload[done[k] : upto[k]]))
                elif self.bundle_s > 0:  # one message per window of the device's night
                    cuts = np.flatnonzero(np.diff(window[done[k] : upto[k]])) + 1 + done[k]
                    for a, b in zip([done[k], *cuts], [*cuts, upto[k]], strict=True):
                        publish(client, bundles[k], bundle(payload[a:b]))
                    self.messages_sent += len(cuts) + 1
                else:
                    topics = raw[k]
                    for j in range(done[k], upto[k]):
                        publish(client, topics[column[j]], payload[j])
                    self.messages_sent += int(upto[k] - done[k])
                self.frames_sent += int(upto[k] - done[k])
                if speed is not None:
                    late = now_s - (times[upto[k] - 1] + self.offsets[k])
                    self.late_s = max(self.late_s, late / speed)
                done[k] = upto[k]
            for group in _groups(entries):
                publish(client, self.gateway_topic, gateway(group))
                self.messages_sent += 1
            if now_s > end:
                break
            if speed is not None:
                time.sleep(max(0.0, tick_s - ((time.monotonic() - t0) * speed - now_s) / speed))
        for k in range(len(self.ids)):
            if session_end is not None:
                message = encode_end(session_end)
                publish(client, mqtt.topic("raw", self.ids[k], "end"), message)
            publish(client, status[k], b"finished")
        return self.frames_sent

    def close(self, timeout_s: float = 120.0) -> bool:
        """Wait for every acknowledgement, then disconnect; False if some never came."""
        ok = self.acks.wait(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()
        return ok


def _groups(entries: list[tuple[str, list[bytes]]]) -> list[list[tuple[str, list[bytes]]]]:
    """Entries in runs of at most ``MAX_MESSAGE`` bytes of frames (at least one entry each)."""
    groups: list[list[tuple[str, list[bytes]]]] = []
    size = MAX_MESSAGE
    for entry in entries:
        n = sum(map(len, entry[1]))
        if size + n > MAX_MESSAGE:
            groups.append([])
            size = 0
        groups[-1].append(entry)
        size += n
    return groups
