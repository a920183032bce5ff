"""Bumble devices for the simulator and the tests: two controllers on an in-process link, or a
device on any Bumble transport (``transport_device``, shared with edge-run's BLE source)."""

from __future__ import annotations

from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from edge.net.bumble import transport_device

__all__ = ["local_pair", "transport_device"]

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
