"""Bumble devices for the simulator and the tests: two controllers on an in-process link, or a
device on any Bumble transport (``tcp-client:HOST:PORT`` to a virtual controller, or a real
radio such as ``usb:0``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport import open_transport
from bumble.transport.common import AsyncPipeSink

LE_ACL_LENGTH = 251  # a controller with Data Length Extension: one 244-byte frame per packet


def local_pair() -> tuple[Device, Device]:
    """(peripheral, central) on one in-process link, DLE-sized ACL packets."""
    link = LocalLink()
    devices = []
    for i in range(2):
        address = ":".join([f"F{i}"] * 6)
        controller = Controller(f"C{i}", link=link, public_address=address)
        controller.le_acl_data_packet_length = LE_ACL_LENGTH
        devices.append(
            Device(address=Address(address), host=Host(controller, AsyncPipeSink(controller)))
        )
    return devices[0], devices[1]


@contextlib.asynccontextmanager
async def transport_device(spec: str, name: str, address: str) -> AsyncIterator[Device]:
    """A Bumble device on the transport ``spec``; the transport closes on exit."""
    async with await open_transport(spec) as (source, sink):
        yield Device.with_hci(name, Address(address), source, sink)
