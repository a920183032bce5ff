"""A bleak backend on Bumble: bleak's API over a real BLE host stack with no Bluetooth radio.

``BleakScanner(backend=BumbleScanner, bumble_device=dev)`` and
``BleakClient(device, backend=BumbleClient, bumble_device=dev)`` drive a Bumble ``Device`` (a
virtual controller over TCP, an in-process link, or a real HCI radio such as ``usb:0``) exactly
as bleak drives BlueZ, CoreBluetooth or WinRT, so the code above bleak is the code that talks
to a real wearable. Only what SleepEdge uses is implemented: scanning with advertisement data,
connect with an ATT MTU exchange, service discovery, notifications, reads and writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bumble.core import AdvertisingData
from bumble.device import Device, Peer
from bumble.gatt import Characteristic
from bumble.hci import Address

ATT_MTU = 247  # one ≤ 244-byte frame per notification
_PROPS = {
    Characteristic.Properties.READ: "read",
    Characteristic.Properties.WRITE: "write",
    Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
    Characteristic.Properties.NOTIFY: "notify",
    Characteristic.Properties.INDICATE: "indicate",
}
_UUID_LISTS = (
    AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS,
    AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
)


def _uuid(u) -> str:
    return str(u.to_hex_str("-") if hasattr(u, "to_hex_str") else u).lower()


class BumbleScanner(BaseBleakScanner):
    def __init__(
        self,
        detection_callback,
        service_uuids,
        scanning_mode="active",
        *,
        bumble_device: Device,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._dev = bumble_device

    async def start(self) -> None:
        self.seen_devices = {}
        self._dev.on("advertisement", self._on_advertisement)
        await self._dev.start_scanning(filter_duplicates=False)

    async def stop(self) -> None:
        await self._dev.stop_scanning()
        self._dev.remove_listener("advertisement", self._on_advertisement)

    def _on_advertisement(self, adv) -> None:
        name = adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME)
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        uuids = [_uuid(u) for kind in _UUID_LISTS for u in (adv.data.get(kind) or [])]
        if not self.is_allowed_uuid(uuids):
            return
        data = AdvertisementData(name, {}, {}, uuids, None, adv.rssi, (adv,))
        key = str(adv.address)
        device = self.create_or_update_device(key, key, name, adv.address, data)
        self.call_detection_callbacks(device, data)


class BumbleClient(BaseBleakClient):
    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        bumble_device: Device,
        disconnected_callback=None,
        timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout
        )
        self._dev = bumble_device
        details = getattr(address_or_ble_device, "details", None)
        self._address = details if isinstance(details, Address) else Address(self.address)
        self._conn = None
        self._peer: Peer | None = None
        self._mtu = 23

    @property
    def mtu_size(self) -> int:
        return self._mtu

    @property
    def name(self) -> str:
        return str(self._address)

    @property
    def is_connected(self) -> bool:
        return self._conn is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        try:
            self._conn = await asyncio.wait_for(self._dev.connect(self._address), self._timeout)
        except TimeoutError:
            raise BleakError(f"no connection to {self._address} in {self._timeout:g} s") from None
        self._conn.on("disconnection", self._on_disconnection)
        self._peer = Peer(self._conn)
        self._mtu = await self._peer.request_mtu(ATT_MTU)
        await self._peer.discover_services()
        services = BleakGATTServiceCollection()
        for s in self._peer.services:
            await s.discover_characteristics()
            service = BleakGATTService(s, s.handle, _uuid(s.uuid))
            services.add_service(service)
            for c in s.characteristics:
                props = [name for bit, name in _PROPS.items() if c.properties & bit]
                char = BleakGATTCharacteristic(
                    c, c.handle, _uuid(c.uuid), props, lambda: self._mtu - 3, service
                )
                services.add_characteristic(char)
        self.services = services

    def _on_disconnection(self, reason) -> None:
        self._conn = self._peer = None
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the SleepEdge profile needs no pairing")

    async def unpair(self) -> None:
        raise NotImplementedError("the SleepEdge profile needs no pairing")

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kw) -> bytearray:
        return bytearray(await characteristic.obj.read_value())

    async def read_gatt_descriptor(self, descriptor, **kwargs: Any) -> bytearray:
        return bytearray(await descriptor.obj.read_value())

    async def write_gatt_char(
        self, characteristic: BleakGATTCharacteristic, data, response: bool
    ) -> None:
        await characteristic.obj.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor, data) -> None:
        await descriptor.obj.write_value(bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback, **kw) -> None:
        await characteristic.obj.subscribe(lambda value: callback(bytearray(value)))

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        await characteristic.obj.unsubscribe()
