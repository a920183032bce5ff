"""Virtual devices over a real BLE host stack (Bumble) with no Bluetooth hardware."""

import asyncio
import subprocess
import sys

import pytest
from bumble.core import UUID
from bumble.device import Peer

from edge.devices import load_device
from edge.devices.codec import decode_end, encode_end, is_end
from edge.devices.receiver import Receiver
from firmware_sim.device import START, STOP, VirtualDevice
from firmware_sim.faults import FaultPlan, apply_faults
from firmware_sim.resynth import walch_night
from firmware_sim.transports.ble import ATT_MTU, BlePeripheral
from firmware_sim.transports.bumble_link import local_pair, transport_device
from tests.commands import spawn

ANNE = load_device("anne")


async def subscribe(central_device, address, got):
    """Connect, raise the MTU, find the SleepEdge service, subscribe; returns the control point."""
    conn = await central_device.connect(address)
    peer = Peer(conn)
    assert await peer.request_mtu(ATT_MTU) == ATT_MTU
    await peer.discover_services()
    svc = peer.get_services_by_uuid(UUID(ANNE.ble.service))[0]
    await svc.discover_characteristics()
    data = svc.get_characteristics_by_uuid(UUID(ANNE.ble.data))[0]
    control = svc.get_characteristics_by_uuid(UUID(ANNE.ble.control))[0]
    await data.subscribe(lambda v: got.append(bytes(v)))
    battery = peer.get_services_by_uuid(UUID.from_16_bits(0x180F))
    assert battery, "the standard Battery service is there"
    return control


async def peripheral_and_central(dev, deliveries, device_id):
    """An in-process peripheral serving ``deliveries`` and a central subscribed to it."""
    periph, central = local_pair()
    p = BlePeripheral(dev, periph, device_id, deliveries)
    await p.start()
    await central.power_on()
    got = []
    control = await subscribe(central, periph.random_address, got)
    return p, got, control


async def wait_for(got, n, timeout):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while len(got) < n and loop.time() < end:
        await asyncio.sleep(0.05)


def test_a_replayed_hour_arrives_complete_and_in_order():
    night = walch_night("46343", max_epochs=120)  # one hour
    dev = VirtualDevice.from_recording(ANNE, night.recording)
    deliveries, _ = apply_faults(dev.frames(), FaultPlan())

    async def run():
        p, got, control = await peripheral_and_central(dev, deliveries, "t1")
        await control.write_value(bytes([START, 0xFF]), with_response=True)
        await asyncio.wait_for(p.done.wait(), 120)
        await wait_for(got, len(deliveries) + 1, 10)
        return got

    got = asyncio.run(run())
    assert len(deliveries) > 60_000
    assert got[-1] == encode_end(dev.session_end())  # the end of session comes last
    got = got[:-1]
    assert got == [d.frame.data for d in deliveries]
    rx = Receiver(ANNE)
    released = [r for b in got for r in rx.feed(b)] + rx.flush()
    assert len(released) == len(got) and rx.counts()["lost"] == 0


def test_control_point_selects_streams_and_faults_are_counted():
    night = walch_night("46343", max_epochs=6)
    dev = VirtualDevice.from_recording(ANNE, night.recording)
    deliveries, truth = apply_faults(dev.frames(), FaultPlan(seed=3, loss=0.05, duplicate=0.05))

    async def run():
        p, got, control = await peripheral_and_central(dev, deliveries, "t2")
        await control.write_value(bytes([START, 1]), with_response=True)  # ECG only
        await asyncio.wait_for(p.done.wait(), 60)
        await wait_for(got, p.sent + 1, 5)
        await control.write_value(bytes([STOP, 0xFF]), with_response=True)
        return got, p.sent

    got, sent = asyncio.run(run())
    ecg = [d.frame.data for d in deliveries if d.frame.stream == "ecg"]
    assert decode_end(got[-1]).last_seq == {1: max(f.seq for f in dev.frames())}  # ECG's only
    got = got[:-1]
    assert got == ecg and sent == len(ecg)
    rx = Receiver(ANNE)
    for b in got:
        rx.feed(b)
    rx.flush()
    stats = rx.trackers["ecg"].stats
    assert stats.duplicates == truth.duplicated["ecg"]
    frames = [f for f in dev.frames() if f.stream == "ecg"]
    arrived = {d.frame.seq for d in deliveries if d.frame.stream == "ecg"}
    unseeable = sum(1 for f in frames if f.seq > max(arrived) or f.seq < min(arrived))
    assert stats.lost == truth.lost["ecg"] - unseeable


def test_firmware_sim_process_over_tcp_linked_controllers(linked_controllers):
    """firmware-sim in its own process on one virtual controller; our central on the other,
    scanning for it by name, as edge-run will find a real ANNE."""
    p1, p2 = linked_controllers
    sim = spawn(
        "firmware_sim.cli", "--device", "anne", "--transport", "ble",
        "--ble-transport", f"tcp-client:127.0.0.1:{p1}", "--duration", "60", "--speed", "max",
        "--device-id", "tcp01",
    )  # fmt: skip
    try:
        expected = [
            d.frame.data
            for d in apply_faults(
                VirtualDevice.from_recording(
                    ANNE, walch_night("46343", max_epochs=2).recording
                ).frames(),
                FaultPlan(),
            )[0]
        ]

        async def central():
            async with transport_device(
                f"tcp-client:127.0.0.1:{p2}", "central", "C0:98:E5:49:00:02"
            ) as dev:
                await dev.power_on()
                found = asyncio.get_running_loop().create_future()

                def on_adv(adv):
                    name = adv.data.get(adv.data.COMPLETE_LOCAL_NAME)
                    if name == "ANNE-SE-tcp01" and not found.done():
                        found.set_result(adv.address)

                dev.on("advertisement", on_adv)
                await dev.start_scanning()
                address = await asyncio.wait_for(found, 30)
                await dev.stop_scanning()
                got = []
                control = await subscribe(dev, address, got)
                await control.write_value(bytes([START, 0xFF]), with_response=True)
                await wait_for(got, len(expected) + 1, 60)
                return got

        got = asyncio.run(central())
        assert got[:-1] == expected and is_end(got[-1])
        out, err = sim.communicate(timeout=30)
        assert sim.returncode == 0, err
        assert "advertising as ANNE-SE-tcp01" in out and f"notified {len(expected):,}" in out
    finally:
        if sim.poll() is None:
            sim.terminate()
            sim.wait(10)


@pytest.mark.parametrize("spec", ["tcp-client:127.0.0.1:1"])
def test_unreachable_ble_transport_is_one_line(spec):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "firmware_sim.cli",
            "--transport",
            "ble",
            "--ble-transport",
            spec,
            "--duration",
            "30",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "cannot open" in out.stderr and "Traceback" not in out.stderr
