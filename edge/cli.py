"""``edge-run``: stage sleep live from a wearable stream.

Built so far: ``--source sim`` plays a bundled real-data night through a virtual device, the
open wire format, the receiver and the streaming feature chains. BLE, MQTT and file replay
sources and the staging models arrive with their issues; asking for them now prints a clear
one-line message and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

import numpy as np

from edge.devices import DeviceError, available_devices, load_device

NOT_YET = {
    "ble": "the BLE source is not yet available (edge-run issue #4); use --source sim",
    "mqtt": "the MQTT source is not yet available (edge-run issue #4); use --source sim",
    "replay": "file replay into edge-run is not yet available (issue #4); use --source sim",
}
DEFAULT_INPUT = {"anne": "mamba", "psg": "ulw_sleepnet"}
BUNDLED_NIGHT = {"anne": "walch/46343", "psg": "sleep-edf/SC4001"}
STAGE_NAMES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "REM", -1: "unscored"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-run", description=__doc__.splitlines()[0])
    p.add_argument("--source", choices=["ble", "mqtt", "replay", "sim"], default="sim")
    p.add_argument("--device", default="anne", help=f"device profile: {available_devices()}")
    p.add_argument(
        "--night",
        help="sim night: walch/SUBJECT or sleep-edf/NIGHT "
        "(default: the bundled night of the device)",
    )
    p.add_argument(
        "--duration",
        type=float,
        help="play only the first N seconds (rounded up to whole 30-s epochs)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p


def _run_sim(device: str, night: str | None, duration: float | None, seed: int) -> int:
    from edge.devices.profile import FrameInputSpec
    from edge.devices.receiver import Receiver
    from edge.devices.samples import SampleAssembler
    from edge.features import EpochPipeline, FramePipeline
    from firmware_sim.device import VirtualDevice
    from firmware_sim.sources import SourceError, synth_night

    profile = load_device(device)
    spec = profile.input(DEFAULT_INPUT.get(device, next(iter(profile.inputs))))
    try:
        synth = synth_night(night or BUNDLED_NIGHT[device], profile, seed, duration)
    except SourceError as exc:
        print(f"edge-run: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    frames = list(VirtualDevice.from_recording(profile, synth.recording).frames())
    rx, asm = Receiver(profile), SampleAssembler(profile)
    pipe = FramePipeline(spec) if isinstance(spec, FrameInputSpec) else EpochPipeline(spec)
    produced = 0
    pending: dict[str, list] = {}  # per stream: chunks waiting to make ~1 s
    waiting: Counter = Counter()  # per stream: samples in ``pending``

    def push(name: str) -> None:
        nonlocal produced
        chunks = pending.pop(name, [])
        waiting[name] = 0
        if not chunks:
            return
        x = np.concatenate([c.samples for c in chunks], axis=1)
        if chunks[0].times is None:
            out = pipe.push(name, x[None])
        else:
            out = pipe.push(name, x[None], np.concatenate([c.times for c in chunks]))
        produced += len(out) if hasattr(out, "index") else out.shape[-1]

    def consume(released) -> None:
        for r in released:
            c = asm.add(r)
            pending.setdefault(c.stream, []).append(c)
            waiting[c.stream] += c.samples.shape[1]
            if waiting[c.stream] >= profile.streams[c.stream].rate_hz:
                push(c.stream)

    for f in frames:
        consume(rx.feed(f.data))
    consume(rx.flush())
    for name in list(pending):
        push(name)
    tail = pipe.flush()
    produced += len(tail) if hasattr(tail, "index") else tail.shape[-1]
    elapsed = time.perf_counter() - t0
    seconds = synth.recording.duration_s
    counts = rx.counts()
    unit = "epochs" if hasattr(tail, "index") else "feature frames"
    print(
        f"edge-run: {profile.title}, night {synth.recording.source} ({seconds / 3600:.1f} h), "
        f"{len(frames):,} frames over the open wire format"
    )
    print(
        f"edge-run: received {counts.get('frames', 0):,} frames, lost {counts.get('lost', 0)}, "
        f"rejected {sum(rx.rejected.values())}; {produced:,} {unit} of input '{spec.name}' in "
        f"{elapsed:.1f} s ({seconds / elapsed:,.0f}x real time)"
    )
    if synth.stages is not None:
        c = Counter(int(s) for s in synth.stages)
        print(
            "edge-run: real hypnogram of this night: "
            + ", ".join(f"{STAGE_NAMES[k]} {c[k]}" for k in sorted(c))
        )
    print(
        "edge-run: no staging model is bundled yet (ULW-SleepNet and Mamba issues #5, #6); "
        "features only"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.source in NOT_YET:
        print(f"edge-run: {NOT_YET[args.source]}", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("edge-run: --duration must be positive", file=sys.stderr)
        return 2
    try:
        return _run_sim(args.device, args.night, args.duration, args.seed)
    except DeviceError as exc:
        print(f"edge-run: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
