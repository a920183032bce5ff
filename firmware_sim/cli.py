"""``firmware-sim``: a virtual ANNE One or PSG device streaming over BLE or MQTT.

    firmware-sim --device anne --source synth:walch/46343 --transport mqtt --broker HOST:PORT
    firmware-sim --device psg --source night.edf --transport ble \\
        --ble-transport tcp-client:127.0.0.1:6402 --speed 10

Sources: a recorded file (EDF/EDF+, a CSV export directory, NPZ) or a night resynthesised from
a real record (synth:walch/SUBJECT, synth:sleep-edf/NIGHT, synth:mmash/USER). Faults are seeded
and reproducible. BLE needs a Bumble transport: start virtual controllers with
``python -m bumble.apps.controllers tcp-server:127.0.0.1:6402 tcp-server:127.0.0.1:6403`` and
connect a central to the second, or give a real radio (``usb:0``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from edge.devices import DeviceError, available_devices, load_device
from edge.net.mqtt import BrokerAddress, MqttError
from firmware_sim.device import VirtualDevice
from firmware_sim.faults import FaultPlan, apply_faults
from firmware_sim.player import play
from firmware_sim.sources import SourceError, open_source

DEFAULT_SOURCE = {"anne": "synth:walch/46343", "psg": "synth:sleep-edf/SC4001"}


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("speed must be positive or 'max'")
    return value


def _disconnect(text: str) -> tuple[float, float]:
    try:
        down, every = (float(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("use N/M: down N seconds every M seconds") from None
    return down, every


def _leads_off(text: str) -> tuple[str, float, float]:
    try:
        stream, span = text.split(":")
        a, b = (float(v) for v in span.split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError("use STREAM:START-STOP in seconds") from None
    return stream, a, b


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="firmware-sim", description=__doc__.splitlines()[0])
    p.add_argument("--device", default="anne", help=f"device profile: {available_devices()}")
    p.add_argument("--source", help="FILE or synth:… (default: the bundled night)")
    p.add_argument("--transport", choices=["ble", "mqtt"], default="mqtt")
    p.add_argument(
        "--broker",
        default="127.0.0.1:1883",
        help="MQTT broker [mqtt://|mqtts://][user[:pw]@]HOST[:PORT] (a user without :pw reads "
        "$SLEEPEDGE_MQTT_PASSWORD)",
    )
    p.add_argument(
        "--ca-file", help="mqtts: PEM file of the CA that signed the broker (default: the system's)"
    )
    p.add_argument(
        "--ble-transport",
        default="tcp-client:127.0.0.1:6402",
        help="Bumble transport for the peripheral",
    )
    p.add_argument("--device-id", default="sim0001")
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        help="mqtt: a gateway playing the night on N device ids <device-id>-0001 … at once",
    )
    p.add_argument(
        "--stagger", type=float, default=1.0, help="--devices: spread the N starts over S seconds"
    )
    p.add_argument(
        "--bundle",
        type=float,
        default=0.0,
        help="--devices: batch each device's frames of every S seconds into one MQTT message "
        "on its bundle topic, as a gateway does (default 0: a message per frame)",
    )
    p.add_argument(
        "--one-message",
        action="store_true",
        help="--devices with --bundle: every S seconds, all devices' frames in one message on "
        "the gateway's topic (sleepedge/v1/<device-id>/gateway), for a fleet engine",
    )
    p.add_argument("--speed", type=_speed, default=1.0, help="N × real time, or 'max'")
    p.add_argument("--duration", type=float, help="play only the first N seconds")
    p.add_argument(
        "--channels",
        help="file sources: STREAM=LABEL[,STREAM=LABEL...], which file channel feeds which stream",
    )
    p.add_argument(
        "--montage", help="file sources: a channel preset (psg: aasm, sleep-edf, dreams)"
    )
    p.add_argument("--seed", type=int, default=0)
    add_fault_arguments(p)
    return p


def add_fault_arguments(p: argparse.ArgumentParser) -> None:
    """The seeded fault flags, shared with ``edge-run --source sim``."""
    f = p.add_argument_group("faults (seeded)")
    f.add_argument("--loss", type=float, default=0.0, help="frame loss probability")
    f.add_argument("--duplicate", type=float, default=0.0, help="duplicate probability")
    f.add_argument("--reorder", type=float, default=0.0, help="reorder probability")
    f.add_argument("--disconnect", type=_disconnect, help="N/M: link down N s every M s")
    f.add_argument("--burst", type=float, default=0.0, help="deliver in bursts every S s")
    f.add_argument("--drift-ppm", type=float, default=0.0, help="device clock drift")
    f.add_argument(
        "--leads-off",
        type=_leads_off,
        action="append",
        default=[],
        help="STREAM:START-STOP sensor off (repeatable)",
    )


def _prepare(args):
    profile = load_device(args.device)
    recording, _ = open_source(
        args.source or DEFAULT_SOURCE.get(args.device, ""),
        profile,
        args.seed,
        args.duration,
        args.channels,
        args.montage,
    )
    for line in getattr(recording, "warnings", []):
        print(f"firmware-sim: warning: {line}", file=sys.stderr)
    device, deliveries, log = faulted_deliveries(profile, recording, args)
    return profile, device, deliveries, log


def faulted_deliveries(profile, recording, args):
    """A virtual device playing ``recording`` and its frames after the faults in ``args``."""
    off: dict[str, list[tuple[float, float]]] = {}
    for stream, a, b in args.leads_off:
        if stream not in profile.streams:
            raise SourceError(f"--leads-off: device {profile.name!r} has no stream {stream!r}")
        off.setdefault(stream, []).append((a, b))
    device = VirtualDevice.from_recording(
        profile, recording, drift_ppm=args.drift_ppm, sensor_off=off
    )
    down, every = args.disconnect or (0.0, 0.0)
    plan = FaultPlan(args.seed, args.loss, args.duplicate, args.reorder, 3, down, every, args.burst)
    deliveries, log = apply_faults(device.frames(), plan)
    return device, deliveries, log


def _run_gateway(args) -> int:
    from firmware_sim.gateway import Gateway, device_ids

    profile = load_device(args.device)
    ids = device_ids(args.device_id, args.devices)
    gateway = Gateway(
        profile,
        BrokerAddress.parse(args.broker, args.ca_file),
        ids,
        args.stagger,
        bundle_s=args.bundle,
        one_message=args.device_id if args.one_message else None,
    )
    try:
        _, device, deliveries, _ = _prepare(args)
        if args.speed is None:
            _warn_max_speed(len(deliveries) * len(ids))
        sent = gateway.play(
            deliveries,
            args.speed,
            on_start=lambda t: print(f"firmware-sim: gateway started at {t:.6f}", flush=True),
            session_end=device.session_end(),
        )
    finally:
        acked = gateway.close()
    print(
        f"firmware-sim: gateway published {sent:,} frames of {len(ids)} devices in "
        f"{gateway.messages_sent:,} messages ({'all' if acked else 'NOT all'} acknowledged), "
        f"at most {gateway.late_s:.3f} s late"
    )
    return 0 if acked else 1


def _warn_max_speed(frames: int) -> None:
    """--speed max over MQTT: the broker acknowledges faster than an engine consumes, and
    drops what exceeds the engine's queue limit (mosquitto: max_queued_messages)."""
    print(
        f"firmware-sim: --speed max: {frames:,} frames go out as fast as the broker takes them; "
        "a broker whose per-client queue (mosquitto max_queued_messages, 1000 by default) is "
        "smaller than the engine's backlog drops frames it acknowledged (the engine counts them "
        "lost): size it for the night (README: Securing the MQTT broker)",
        file=sys.stderr,
    )


def _run_mqtt(args) -> int:
    from firmware_sim.transports.mqtt import MqttPublisher

    if args.devices > 1:
        return _run_gateway(args)

    profile = load_device(args.device)  # the broker first: fail fast, before a night is built
    pub = MqttPublisher(profile, BrokerAddress.parse(args.broker, args.ca_file), args.device_id)
    try:
        _, device, deliveries, _ = _prepare(args)
    except Exception:
        pub.close()
        raise
    if args.speed is None:
        _warn_max_speed(len(deliveries))
    sent = play(deliveries, pub.send, args.speed)
    pub.close(end=device.session_end())
    print(
        f"firmware-sim: published {sent:,} frames ({pub.acks.acked - 1:,} acknowledged) to "
        f"{profile.mqtt.topic('raw', args.device_id, '<stream>')}, then the end of session"
    )
    return 0


async def _run_ble(args) -> int:
    from firmware_sim.transports.ble import BlePeripheral
    from firmware_sim.transports.bumble_link import transport_device

    async with transport_device(
        args.ble_transport, f"sim-{args.device_id}", "C0:98:E5:49:00:01"
    ) as bumble_device:
        _, device, deliveries, _ = _prepare(args)  # after the transport opened: fail fast
        drops = []
        if args.disconnect:  # tear the link down at the start of every down window
            down, every = args.disconnect
            end = device.end_true_s()  # a window that covers the night's end drops it too
            drops = [k * every - down for k in range(1, int(end // every) + 2)]
            drops = [t for t in drops if t < end]
        peripheral = BlePeripheral(
            device, bumble_device, args.device_id, deliveries, args.speed, drops
        )
        await peripheral.start()
        print(f"firmware-sim: advertising as {peripheral.name} on {args.ble_transport}", flush=True)
        await peripheral.done.wait()  # every frame and the end of session left the host
    print(
        f"firmware-sim: notified {peripheral.sent:,} frames and the end of session, "
        f"{peripheral.link_drops} link drop(s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.devices < 1 or (args.devices > 1 and args.transport != "mqtt"):
        print(
            "firmware-sim: --devices N needs N >= 1 and, above 1, --transport mqtt", file=sys.stderr
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="firmware-sim: %(message)s")
    try:
        load_device(args.device)
        if args.transport == "mqtt":
            return _run_mqtt(args)
        return asyncio.run(_run_ble(args))
    except (DeviceError, SourceError, MqttError, ValueError) as exc:
        print(f"firmware-sim: {exc}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as exc:
        print(f"firmware-sim: cannot open {args.ble_transport}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
