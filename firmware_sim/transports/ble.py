"""A virtual device as a BLE peripheral: a GATT server on a Bumble device.

GATT (UUIDs from the descriptor's ``[ble]`` table): the SleepEdge service with a control point
(write: [START|STOP][stream code or 0xFF]) and a data characteristic that notifies one frame per
notification (≤ 244 bytes: needs an ATT MTU of 247, i.e. Data Length Extension on real radios),
plus the standard Battery (0x180F) and Device Information (0x180A) services. Streaming starts
when a central writes START and runs at the replay speed on the device's schedule. At each of
``link_drops`` (device seconds; the simulator's ``--disconnect`` windows) the peripheral tears
the connection down; advertising restarts and streaming resumes after the central reconnects
and writes START again (the frames of the down window were never sent).

Backpressure: a notification waits while the host holds more than ``MAX_QUEUED`` ACL packets
for the link (Bumble's flow-control queue, drained by the controller's completed-packets
events), so at any ``speed`` the frames counted in ``sent`` are frames the link carried. After
the last frame the peripheral notifies the end-of-session message (``codec.encode_end``: the
last sequence number of each stream), waits for the queue to drain and sets ``done``; a link
torn down after the last frame is restored first (the central reconnects and writes START),
so the message also comes after a lost tail.

Bumble runs a real host stack over a virtual controller: in-process on a ``LocalLink``, or in
another process over TCP (``python -m bumble.apps.controllers tcp-server:H:P1 tcp-server:H:P2``
links two ``tcp-client:H:P`` transports).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Attribute, Characteristic, CharacteristicValue, Service
from bumble.profiles.battery_service import BatteryService
from bumble.profiles.device_information_service import DeviceInformationService

from edge.devices.codec import encode_end
from firmware_sim.device import START, STOP, VirtualDevice
from firmware_sim.faults import Delivery

log = logging.getLogger("sleepedge.sim.ble")
ATT_MTU = 247
MAX_QUEUED = 64  # ACL packets the host may hold for the link before a notification waits


def advertising_data(name: str, service_uuid: str) -> bytes:
    return bytes(
        AdvertisingData(
            [
                (AdvertisingData.FLAGS, bytes([0x06])),
                (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
                (
                    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
                    UUID(service_uuid).to_bytes(force_128=True),
                ),
            ]
        )
    )


class BlePeripheral:
    """Serves ``deliveries`` (a device's frames, faults applied) to a subscribing central."""

    def __init__(
        self,
        device: VirtualDevice,
        bumble_device: Device,
        device_id: str,
        deliveries: Iterable[Delivery],
        speed: float | None = None,
        link_drops: Iterable[float] = (),
    ) -> None:
        ble = device.profile.ble
        if ble is None:
            raise ValueError(f"device {device.profile.name!r} has no [ble] table in its descriptor")
        self.device, self.bumble, self.speed = device, bumble_device, speed
        self.name = f"{ble.name_prefix}-{device_id}"
        self._deliveries = list(deliveries)
        self._next = 0  # index of the next delivery: streaming resumes where it stopped
        self._drops = sorted(link_drops)  # device times (s) at which the link is torn down
        self.link_drops = 0
        self._task: asyncio.Task | None = None
        self.sent = 0
        self.done = asyncio.Event()
        self.data = Characteristic(
            ble.data, Characteristic.Properties.NOTIFY, Attribute.Permissions.READABLE, b""
        )
        self.control = Characteristic(
            ble.control,
            Characteristic.Properties.WRITE,
            Attribute.Permissions.WRITEABLE,
            CharacteristicValue(write=self._on_control),
        )
        bumble_device.add_services(
            [
                Service(ble.service, [self.control, self.data]),
                BatteryService(lambda _conn: device.battery_percent),
                DeviceInformationService(
                    manufacturer_name="SleepEdge (virtual device)",
                    model_number=device.profile.title,
                    firmware_revision="sim-1",
                ),
            ]
        )
        bumble_device.advertising_data = advertising_data(self.name, ble.service)
        bumble_device.name = self.name

    def _on_control(self, connection: Connection, value: bytes) -> None:
        try:
            self.device.control(bytes(value))
        except ValueError as exc:
            log.warning("control point: %s", exc)
            return
        if value[0] == START and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._stream())
        elif value[0] == STOP and not self.device.streaming and self._task:
            self._task.cancel()

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time() - (
            self._deliveries[self._next].t_deliver_s / self.speed
            if self.speed and self._next < len(self._deliveries)
            else 0.0
        )
        while self._next < len(self._deliveries):
            d = self._deliveries[self._next]
            if self.speed:
                wait = start + d.t_deliver_s / self.speed - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            if self._drops and d.t_deliver_s >= self._drops[0]:
                await self._drop_link()
                return
            self._next += 1
            if d.frame.stream in self.device.streaming:
                await self._notify(d.frame.data)
                self.sent += 1
        if self._drops:  # a drop scheduled after the last frame: the session's end is lost
            await self._drop_link()
            return
        await self._notify(encode_end(self.device.session_end()))
        await self._flow(0)  # everything notified has left the host
        self.done.set()

    async def _notify(self, data: bytes) -> None:
        """Notify ``data`` once the host holds at most ``MAX_QUEUED`` packets for the link: a
        replay at any speed goes at the pace of the controller's flow control, and what is
        counted as sent is what the link carries, never a queue dropped at exit."""
        await self._flow(MAX_QUEUED)
        await self.bumble.notify_subscribers(self.data, data)

    async def _flow(self, limit: int) -> None:
        """Wait until each connection's host queue holds at most ``limit`` ACL packets (the
        controller's completed-packets events drain it); returns when the link is gone."""
        for conn in list(self.bumble.connections.values()):
            while True:
                queue = self.bumble.host.get_data_packet_queue(conn.handle)
                if queue is None or queue.pending <= limit:
                    break
                flowed = asyncio.Event()
                queue.once("flow", flowed.set)
                try:  # a disconnection flushes the queue without a 'flow' event: look again
                    await asyncio.wait_for(flowed.wait(), 0.5)
                except TimeoutError:
                    queue.remove_listener("flow", flowed.set)

    async def _drop_link(self) -> None:
        self._drops.pop(0)
        self.link_drops += 1
        # frames already notified leave first: the window's loss is the injected one, not
        # whatever sat in the host's and controller's buffers at the drop
        await self._flow(0)
        await asyncio.sleep(0.2)  # the peer host processes what its controller got
        for conn in list(self.bumble.connections.values()):
            await conn.disconnect()  # the central must reconnect and START again

    async def start(self) -> None:
        await self.bumble.power_on()
        await self.bumble.start_advertising(auto_restart=True, advertising_interval_min=20.0)
