"""A Bumble device on any Bumble transport: ``tcp-client:HOST:PORT`` to a virtual controller
(``python -m bumble.apps.controllers``), or a real radio such as ``usb:0``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bumble.device import Device
from bumble.hci import Address
from bumble.transport import open_transport


@contextlib.asynccontextmanager
async def transport_device(spec: str, name: str, address: str) -> AsyncIterator[Device]:
    """A Bumble device on the transport ``spec``; the transport closes on exit."""
    async with await open_transport(spec) as (source, sink):
        yield Device.with_hci(name, Address(address), source, sink)
