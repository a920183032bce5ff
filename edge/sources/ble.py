"""Frames from a wearable over BLE, through bleak (any platform backend, or Bumble).

A supervisor task finds the device (by address or name, else by the profile's name prefix and
service UUID), connects with a fresh ``BleakClient`` per attempt, subscribes to the data
characteristic and writes START to the control point; when the link drops it retries with
exponential backoff (0.5 s doubling to 30 s). Notifications go through a bounded queue (drops
counted). The sequence numbers in every frame let the receiver drop duplicates after a
reconnect and report the gap as lost frames.

``backend="bumble"`` runs bleak over Bumble's host stack on ``transport`` (a virtual
controller ``tcp-client:HOST:PORT``, or a radio such as ``usb:0``): no Bluetooth hardware
needed. The night ends when the device sends its end-of-session message (``codec.is_end``;
it goes to the session like a frame, which counts the frames lost after the last one received)
and the queue drains, on Ctrl-C / SIGTERM, or after ``idle_exit_s`` without frames once some
arrived.

``allow`` (``--ble-allow``, addresses or names): the source connects only to a device whose
address or advertised name is on the list, so a bedside unit takes its own patient's wearable
and no other; an explicit ``address`` off the list is refused at once, and with ``idle_exit_s``
a night that found no allowed device within that time ends with an error naming what was seen.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator, Sequence

from edge.devices.codec import Rejected, decode_end, is_end
from edge.devices.profile import DeviceProfile
from edge.sources.frame_queue import FrameQueue

log = logging.getLogger("sleepedge.ble")
START_ALL = bytes([0x01, 0xFF])


class BleSource:
    def __init__(
        self,
        profile: DeviceProfile,
        backend: str = "bleak",
        address: str | None = None,
        device_id: str | None = None,
        transport: str | None = None,
        idle_exit_s: float | None = None,
        max_queue: int = 100_000,
        scan_timeout_s: float = 20.0,
        allow: Sequence[str] = (),
    ) -> None:
        if profile.ble is None:
            raise ValueError(f"device {profile.name!r} has no [ble] table in its descriptor")
        if backend == "bumble" and not transport:
            raise ValueError("--ble-backend bumble needs --ble-transport (e.g. tcp-client:H:P)")
        self.profile, self.backend, self.transport = profile, backend, transport
        self.allow = {a.upper() for a in allow} | set(allow)  # addresses in any case, names as is
        if allow and address and address not in self.allow and address.upper() not in self.allow:
            raise ValueError(f"--ble-address {address} is not on the --ble-allow list")
        self._not_allowed: set[str] = set()  # devices seen that matched but were not allowed
        self.target = address or (f"{profile.ble.name_prefix}-{device_id}" if device_id else None)
        self.description = f"BLE {self.target or profile.ble.name_prefix + '-*'} ({backend})"
        self.idle_exit_s, self.scan_timeout_s = idle_exit_s, scan_timeout_s
        self.stats = {"received": 0, "dropped_queue_full": 0, "connects": 0, "failures": 0}
        self.stats["not_allowed"] = 0  # distinct devices refused by the allow-list
        self._queue = FrameQueue(max_queue, self.stats)
        self._stop = threading.Event()
        self._ended = threading.Event()  # the device said its session is over
        self._error: list[str] = []
        self._last_frame = self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="ble-supervisor", daemon=True)
        self._thread.start()

    # ---- the asyncio side (its own thread and loop) ----
    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # a transport that cannot open: report it to the consumer
            self._error.append(f"BLE: {exc}")
            self._stop.set()

    async def _main(self) -> None:
        if self.backend == "bumble":
            from edge.net.bumble import transport_device

            async with transport_device(self.transport, "edge-run", "C0:98:E5:49:00:0E") as dev:
                await dev.power_on()
                await self._supervise({"bumble_device": dev})
        else:
            await self._supervise({})

    async def _supervise(self, kw: dict) -> None:
        from bleak import BleakClient, BleakScanner
        from bleak.exc import BleakError

        if self.backend == "bumble":
            from edge.sources.bumble_backend import BumbleClient, BumbleScanner

            kw_scan, kw_client = {**kw, "backend": BumbleScanner}, {**kw, "backend": BumbleClient}
        else:
            kw_scan, kw_client = {}, {}
        ble = self.profile.ble
        delay = 0.5
        while not self._stop.is_set():
            try:
                device = await BleakScanner.find_device_by_filter(
                    self._matches, timeout=self.scan_timeout_s, **kw_scan
                )
                if device is None:
                    raise BleakError(f"no {self.description} advertising")
                lost = asyncio.Event()
                async with BleakClient(
                    device, disconnected_callback=lambda _c, ev=lost: ev.set(), **kw_client
                ) as client:
                    self.stats["connects"] += 1
                    await client.start_notify(ble.data, self._on_notify)
                    await client.write_gatt_char(ble.control, START_ALL, response=True)
                    log.info("connected to %s, streaming", device.name or device.address)
                    delay = 0.5
                    while not lost.is_set() and not self._stop.is_set():
                        await asyncio.sleep(0.1)
            except (BleakError, TimeoutError, OSError) as exc:
                self.stats["failures"] += 1
                log.warning("BLE: %s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    def _matches(self, device, adv) -> bool:
        ble = self.profile.ble
        if self.target is not None:
            wanted = self.target in (device.address, adv.local_name)
        else:
            wanted = ble.service.lower() in adv.service_uuids or (
                (adv.local_name or "").startswith(ble.name_prefix)
            )
        if not wanted or not self.allow:
            return wanted
        if device.address.upper() in self.allow or (adv.local_name or "\0") in self.allow:
            return True
        seen = f"{adv.local_name or '?'} ({device.address})"
        if seen not in self._not_allowed:
            self._not_allowed.add(seen)
            self.stats["not_allowed"] = len(self._not_allowed)
            log.warning("BLE: %s is not on the allow-list: not connecting", seen)
        return False

    def _on_notify(self, _characteristic, data: bytearray) -> None:
        self._last_frame = time.monotonic()
        before = self.stats["received"]
        self._queue.offer(bytes(data))
        if is_end(data) and not isinstance(decode_end(bytes(data)), Rejected):  # counted apart
            self.stats["received"] = before
            self.stats["end_of_session"] = self.stats.get("end_of_session", 0) + 1
            log.info("device ended its session: ending after the queue drains")
            self._ended.set()

    # ---- the consumer side ----
    def __iter__(self) -> Iterator[bytes]:
        while True:
            data = self._queue.get(timeout=0.2)
            if data is not None:
                yield data
                continue
            if self._error:
                raise ValueError(self._error[0])
            if self._stop.is_set() or self._ended.is_set():
                return
            idle = time.monotonic() - self._last_frame
            if self.idle_exit_s and self.stats["received"] and idle > self.idle_exit_s:
                return
            waited = time.monotonic() - self._started
            if self.allow and self.idle_exit_s and not self.stats["received"]:
                if waited > self.idle_exit_s:
                    seen = ", ".join(sorted(self._not_allowed)) or "none"
                    raise ValueError(
                        f"BLE: no device on the allow-list found in {self.idle_exit_s:g} s "
                        f"(seen, not allowed: {seen})"
                    )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
