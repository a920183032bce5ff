"""``edge-run``: stage sleep live from a wearable stream.

Built so far: the streaming feature chains, driven by an in-process simulated device
(``--source sim``). BLE, MQTT and file replay sources and the staging models arrive with their
issues; asking for them now prints a clear one-line message and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from edge.devices import DeviceError, available_devices, load_device

NOT_YET = {
    "ble": "the BLE source is not yet available (edge-run issue #4); use --source sim",
    "mqtt": "the MQTT source is not yet available (edge-run issue #4); use --source sim",
    "replay": "file replay is not yet available (simulator issue #3); use --source sim",
}
DEFAULT_INPUT = {"anne": "mamba", "psg": "ulw_sleepnet"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-run", description=__doc__.splitlines()[0])
    p.add_argument("--source", choices=["ble", "mqtt", "replay", "sim"], default="sim")
    p.add_argument("--device", default="anne", help=f"device profile: {available_devices()}")
    p.add_argument(
        "--duration", type=float, default=600.0, help="seconds of simulated recording (sim source)"
    )
    p.add_argument("--chunk", type=float, default=1.0, help="seconds per pushed chunk")
    p.add_argument("--seed", type=int, default=0)
    return p


def _run_sim(device: str, duration: float, chunk_s: float, seed: int) -> int:
    from edge.features import EpochPipeline, FramePipeline
    from firmware_sim.synth import anne_session, psg_session

    profile = load_device(device)
    spec = profile.input(DEFAULT_INPUT.get(device, next(iter(profile.inputs))))
    if spec.__class__.__name__ == "FrameInputSpec":
        data, times = anne_session(profile, duration, seed)
        pipe = FramePipeline(spec)
    else:
        data, times = psg_session(profile, duration, seed), {}
        pipe = EpochPipeline(spec)
    n_chunks = int(np.ceil(duration / chunk_s))
    produced = 0
    t0 = time.perf_counter()
    for c in range(n_chunks):
        for name, x in data.items():
            rate = profile.streams[name].rate_hz
            if name in times:
                t = times[name]
                sel = (t >= c * chunk_s) & (t < (c + 1) * chunk_s)
                out = pipe.push(name, x[..., sel], t[sel])
            else:
                a, b = int(round(c * chunk_s * rate)), int(round((c + 1) * chunk_s * rate))
                out = pipe.push(name, x[..., a:b])
            produced += len(out) if hasattr(out, "index") else out.shape[-1]
    tail = pipe.flush()
    produced += len(tail) if hasattr(tail, "index") else tail.shape[-1]
    elapsed = time.perf_counter() - t0
    unit = "epochs" if hasattr(tail, "index") else "feature frames"
    print(f"edge-run: simulated {profile.title} for {duration:.0f} s in {chunk_s:g}-s chunks")
    print(
        f"edge-run: {produced} {unit} of input '{spec.name}' computed in {elapsed:.2f} s "
        f"({duration / elapsed:,.0f}x real time)"
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
    if args.duration <= 0 or args.chunk <= 0:
        print("edge-run: --duration and --chunk must be positive", file=sys.stderr)
        return 2
    try:
        return _run_sim(args.device, args.duration, args.chunk, args.seed)
    except DeviceError as exc:
        print(f"edge-run: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
