"""``edge-run``: stage sleep live from a wearable stream and write the night's files.

Sources: ``sim`` (a virtual device replaying a real-data night in-process, with the
simulator's seeded faults; the default replays the bundled night), ``replay --file F`` (a
recorded EDF/CSV/NPZ file through the device's wire format), ``mqtt`` (frames from a gateway),
``ble`` (a wearable over bleak; ``--ble-backend bumble`` runs a real BLE stack with no radio).
Expected failures (unknown device, bad file, unreachable broker, no model) print one line and
exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections import Counter
from pathlib import Path

from edge.checkpoint import CheckpointError
from edge.devices import DeviceError, available_devices, load_device
from edge.fleet_hold import DEFAULT_HOLD_S
from edge.models import Manifest, ModelIntegrityError, load_epoch_model
from edge.net.mqtt import BrokerAddress, MqttError

BUNDLED_NIGHT = {"anne": "walch/46343", "psg": "sleep-edf/SC4001"}
DEFAULT_MODEL = {"psg": "ulw_sleepnet", "anne": "mamba_anne"}
MODELS_DIR = Path(__file__).parent / "models"


class UsageError(RuntimeError):
    """An expected failure: one line, exit status 2."""


EXPECTED = (UsageError, DeviceError, ModelIntegrityError, MqttError, CheckpointError, ValueError)


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--speed must be a number or 'max', got {text!r}"
        ) from None
    if v <= 0:
        raise argparse.ArgumentTypeError("--speed must be positive")
    return v


def build_parser() -> argparse.ArgumentParser:
    from firmware_sim.cli import add_fault_arguments

    p = argparse.ArgumentParser(prog="edge-run", description=__doc__.splitlines()[0])
    p.add_argument("--source", choices=["ble", "mqtt", "replay", "sim"], default="sim")
    p.add_argument("--device", default="psg", help=f"device profile: {available_devices()}")
    p.add_argument("--file", type=Path, help="recording for --source replay (EDF, CSV dir, NPZ)")
    p.add_argument(
        "--channels",
        help="replay: which file channel feeds which stream, STREAM=LABEL[,STREAM=LABEL...] "
        "(e.g. eeg_fpz_cz=C4-M1,eog=E1-M2); streams not named and not found are absent",
    )
    p.add_argument(
        "--montage",
        help="replay: a channel preset (psg: aasm, sleep-edf, dreams); --channels overrides it",
    )
    p.add_argument(
        "--hypnogram",
        type=Path,
        help="replay: the recording's own scoring (EDF+ annotations, CSV/TSV, NSRR XML, DREAMS "
        "text) to compare with; default: a sibling file named like the recording",
    )
    p.add_argument("--night", help="sim night: sleep-edf/NIGHT or walch/SUBJECT")
    p.add_argument("--duration", type=float, help="sim/replay: only the first N seconds")
    p.add_argument(
        "--broker",
        default="127.0.0.1:1883",
        help="MQTT broker [mqtt://|mqtts://][user[:pw]@]HOST[:PORT] (mqtts: TLS, certificate and "
        "host name verified; a user without :pw reads $SLEEPEDGE_MQTT_PASSWORD)",
    )
    p.add_argument(
        "--ca-file", help="mqtts: PEM file of the CA that signed the broker (default: the system's)"
    )
    p.add_argument(
        "--device-id",
        default="sim0001",
        help="MQTT device id / BLE name suffix; '+' (with --source mqtt): every device on the "
        "broker in one engine, each night in OUT/<device-id>/",
    )
    p.add_argument("--ble-backend", choices=["bleak", "bumble"], default="bleak")
    p.add_argument("--ble-address", help="BLE address or name to connect to (default: scan)")
    p.add_argument(
        "--ble-allow",
        action="append",
        default=[],
        metavar="ADDR|NAME",
        help="connect only to a device with this address or name (repeatable)",
    )
    p.add_argument(
        "--ble-transport",
        help="Bumble transport for --ble-backend bumble: tcp-client:HOST:PORT (a virtual "
        "controller) or a radio such as usb:0",
    )
    p.add_argument(
        "--idle-exit",
        type=float,
        help="ble/mqtt: end the night after N s without frames (once frames have arrived)",
    )
    p.add_argument("--model", help="bundled model name or a manifest .json (default per device)")
    p.add_argument(
        "--backend",
        choices=["onnxruntime", "litert", "native", "numpy"],
        default="onnxruntime",
        help="model runtime (native: C kernels built at install, the fastest; int8 for "
        "ULW-SleepNet only; numpy: the reference, no compiled code)",
    )
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32")
    p.add_argument("--threads", type=int, default=1, help="model intra-op threads")
    p.add_argument(
        "--push-every",
        type=float,
        help="seconds of samples gathered per stream before the operators run (default: 0.25 for"
        " live mqtt/ble sources, for low delay; 1 for sim/replay, for throughput); the output"
        " is the same",
    )
    p.add_argument(
        "--hold",
        type=float,
        default=DEFAULT_HOLD_S,
        help="with --device-id +: at most N s of a device's frames held and then decoded and "
        "pushed in one batch; each epoch's frames are handed over as soon as it can be staged, "
        "so this bounds memory, not delay (0: each frame as it comes); the output is the same",
    )
    p.add_argument("--out", type=Path, default=Path("edge-out"), help="output directory")
    p.add_argument(
        "--speed",
        type=_speed,
        default=None,
        help="sim/replay pace: N × real time or 'max' (default)",
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=20, help="epochs between checkpoints (0: none)"
    )
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    p.add_argument("--publish", action="store_true", help="publish each epoch to the stage topic")
    p.add_argument("--plain", action="store_true", help="log lines instead of the live panel")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true")
    add_fault_arguments(p)
    return p


def _manifest(name: str | None, device: str) -> Path:
    name = name or DEFAULT_MODEL.get(device)
    if name is None:
        raise UsageError(
            f"no staging model is bundled for device {device!r} yet (its model issue is open); "
            "use --device psg, or --model MANIFEST.json"
        )
    path = Path(name) if name.endswith(".json") else MODELS_DIR / name / f"{name}.json"
    if not path.exists():
        raise UsageError(f"model {name!r} not found ({path})")
    return path


def _frame_list(args, profile):
    from edge.sources import FrameList
    from firmware_sim.cli import faulted_deliveries
    from firmware_sim.recordings import RecordingError, first_seconds, open_recording
    from firmware_sim.sources import SourceError, synth_night

    try:
        if args.source == "replay":
            if args.file is None:
                raise UsageError("--source replay needs --file FILE")
            recording = open_recording(
                args.file, profile, args.channels, args.montage, args.hypnogram
            )
            for line in recording.warnings:
                print(f"edge-run: warning: {line}", file=sys.stderr)
            if args.duration:
                recording = first_seconds(recording, args.duration, profile)
            what = f"file {args.file}"
            lacking = [s for s in profile.streams if s not in recording.signals]
            print(
                "edge-run: channels "
                + ", ".join(
                    f"{k}={v}"
                    for k, v in (recording.channels or {k: k for k in recording.signals}).items()
                )
                + (f"; absent: {', '.join(lacking)}" if lacking else "")
                + (f"; scoring from {recording.hypnogram.name}" if recording.hypnogram else ""),
                flush=True,
            )
        else:
            night = args.night or BUNDLED_NIGHT[profile.name]
            synth = synth_night(night, profile, args.seed, args.duration)
            recording = synth.recording
            what = f"simulated {profile.name} replaying {recording.source}"
        scored = synth.stages if args.source == "sim" else recording.stages  # scorer's, if any
        _, deliveries, faults = faulted_deliveries(profile, recording, args)
    except (RecordingError, SourceError) as exc:
        raise UsageError(str(exc)) from None
    src = FrameList(
        [d.frame.data for d in deliveries],
        what,
        [d.t_deliver_s for d in deliveries],
        args.speed,
        reference_stages=scored,
    )
    src.stats = {
        "injected_lost": sum(faults.lost.values()),
        "injected_duplicated": sum(faults.duplicated.values()),
        "injected_reordered": sum(faults.reordered.values()),
        "duration_s": recording.duration_s,
    }
    return src


def _source(args, profile):
    if args.source in ("sim", "replay"):
        return _frame_list(args, profile)
    if args.source == "mqtt":
        from edge.sources.mqtt import MqttSource

        return MqttSource(
            profile,
            BrokerAddress.parse(args.broker, args.ca_file),
            args.device_id,
            idle_exit_s=args.idle_exit,
        )
    from edge.sources.ble import BleSource

    return BleSource(
        profile,
        args.ble_backend,
        args.ble_address,
        args.device_id,
        args.ble_transport,
        args.idle_exit,
        allow=args.ble_allow,
    )


def _push_every(args) -> float:
    if args.push_every is not None:
        return args.push_every
    return 0.25 if args.source in ("mqtt", "ble") else 1.0


def _config(args) -> dict:
    """The options that shape the night, as JSON values (paths as strings, None as null)."""
    keys = ("source", "device", "file", "night", "duration", "model", "backend", "precision")
    keys += ("seed", "loss", "duplicate", "reorder", "disconnect", "burst", "drift_ppm")
    keys += ("channels", "montage", "hypnogram")

    def value(v):
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, list | tuple):
            return [value(x) for x in v]
        return str(v)

    return {k: value(getattr(args, k, None)) for k in keys}


def run(args) -> int:
    from edge.run import run_night
    from edge.session import Session

    profile = load_device(args.device)
    manifest = _manifest(args.model, profile.name)
    if args.device_id == "+":
        return run_fleet_cli(args, profile, manifest)
    stager, spec = _stager(manifest, profile, args)
    model_input = spec.name
    publisher = None
    source = _source(args, profile)
    try:
        if args.publish:
            from edge.sinks.publish import StagePublisher

            publisher = StagePublisher(
                profile, BrokerAddress.parse(args.broker, args.ca_file), args.device_id
            )
    except Exception:
        source.close()
        raise
    from edge.live import LiveView

    view = LiveView(
        f"SleepEdge · {profile.title} · {source.description}", True if args.plain else None
    )
    result = run_night(
        source,
        Session(profile, spec, stager, _push_every(args)),
        args.out,
        _config(args),
        args.checkpoint_every,
        args.resume,
        publisher,
        view,
        live=args.source in ("mqtt", "ble"),
    )
    stages = Counter(r.stage_name for r in result.records)
    c = result.counts
    rejected = sum(v for k, v in c.items() if k.startswith("rejected:"))
    print(
        f"edge-run: {result.epochs} epochs ({model_input}) in {result.seconds:.1f} s from "
        f"{source.description}"
        + (f", resumed at epoch {result.resumed_at}" if result.resumed_at is not None else "")
    )
    print(
        f"edge-run: frames {c.get('frames', 0):,}, lost {c.get('lost', 0)}, duplicates "
        f"{c.get('duplicates', 0)}, reordered {c.get('reordered', 0)}, rejected {rejected}, "
        f"gap samples {c.get('gap_samples', 0):,}"
    )
    s = result.stats
    files = "epochs.jsonl hypnogram.csv hypnogram.edf hypnogram.png stats.json run.json"
    print(
        "edge-run: "
        + ", ".join(f"{k} {v}" for k, v in sorted(stages.items()))
        + f"; TST {s['TST']:.0f} min, SE {s['SE'] or 0:.1f} %, WASO {s['WASO']:.0f} min"
    )
    reduced = sum("reduced" in r.flags for r in result.records)
    if reduced:
        print(
            f"edge-run: {reduced} epochs staged with reduced input (a channel absent or off, "
            "filled by the model's rule; flag 'reduced' in epochs.jsonl)"
        )
    reference = getattr(source, "reference_stages", None)
    if reference is not None:
        print(f"edge-run: {_agreement(result.records, reference)}")
        _add_reference(args.out / "run.json", agreement(result.records, reference))
    print(f"edge-run: wrote {args.out}/ {files}")
    return 0


def _stager(manifest: Path, profile, args):
    """The model of ``manifest`` behind the stager its kind needs (see ``_stager_factory``)."""
    make, spec, _ = _stager_factory(manifest, profile, args)
    return make(None, 0), spec


def _stager_factory(manifest: Path, profile, args):
    """``(make(bank, stream_id), spec, step_model)``: per-epoch models get an ``EpochStager``,
    step models with carried state a ``FrameStager`` (on ``bank`` when one is shared, in a
    fleet); ``step_model`` is None for per-epoch models. The model is loaded once."""
    from edge.staging import EpochStager, FrameStager

    data = Manifest.load(manifest).data
    if data.get("device", profile.name) != profile.name:
        raise UsageError(
            f"model {manifest.stem!r} is for device {data['device']!r}, not {profile.name!r}"
        )
    spec = profile.input(data["input_spec"])
    name = f"{manifest.stem}/{args.backend}/{args.precision}"
    if data.get("kind") == "step":
        from edge.models.step_runner import load_step_model

        model = load_step_model(manifest, args.backend, args.precision, args.threads)
        columns = spec.stream_columns()
        steps = int(round(30.0 * spec.frame_hz))
        # a second is stepped when any of these is valid (older manifests: required_streams)
        staging = tuple(data.get("staging_streams", data.get("required_streams", ())))

        def make_frame(bank, stream_id):
            return FrameStager(
                model, columns, staging, steps, 1.0 / spec.frame_hz, name, bank=bank,
                stream_id=stream_id,
            )  # fmt: skip

        return make_frame, spec, model
    model = load_epoch_model(manifest, args.backend, args.precision, args.threads)
    channels = [c.stream.name for c in spec.channels]
    absent = {c.stream.name: c.absent for c in spec.channels if c.absent}

    def make_epoch(bank, stream_id):
        return EpochStager(model, channels, spec.epoch_s, name, absent=absent)

    return make_epoch, spec, None


def run_fleet_cli(args, profile, manifest: Path) -> int:
    """``--source mqtt --device-id +``: every device on the broker, one engine."""
    from edge.fleet import Fleet, run_fleet
    from edge.models.streams import StreamBank
    from edge.session import Session
    from edge.sources.mqtt import MqttFleetSource

    make_stager, spec, step_model = _stager_factory(manifest, profile, args)
    bank = StreamBank(step_model) if step_model is not None else None

    def make_session(bank, device_id):
        return Session(profile, spec, make_stager(bank, device_id), _push_every(args))

    broker = BrokerAddress.parse(args.broker, args.ca_file)
    source = MqttFleetSource(profile, broker, idle_exit_s=args.idle_exit)
    try:
        publisher = None
        if args.publish:
            from edge.sinks.publish import StagePublisher

            publisher = StagePublisher(profile, broker, "fleet")
    except Exception:
        source.close()
        raise
    fleet = Fleet(
        make_session,
        bank,
        args.out,
        _config(args),
        args.checkpoint_every,
        args.resume,
        publisher,
        args.hold,
    )
    print(f"edge-run: staging every {profile.name} device on {source.description}", flush=True)
    stats = run_fleet(source, fleet, echo=lambda line: print(line, flush=True))
    print(
        f"edge-run: {stats.devices_finished} devices, {stats.epochs:,} epochs, "
        f"{stats.frames:,} frames in {stats.batches:,} batches, {stats.handovers:,} hand-overs;"
        f" model {stats.model_seconds:.2f} s"
        + (
            f" in {bank.calls:,} calls of {bank.stream_steps / max(bank.calls, 1):.2f} devices"
            f" ({bank.stream_steps:,} device-seconds)"
            if bank is not None
            else ""
        )
    )
    for device_id, result in sorted(stats.finished.items()):
        c = result.counts
        print(
            f"edge-run: {device_id}: {result.epochs} epochs, frames {c.get('frames', 0):,}, "
            f"lost {c.get('lost', 0)}, gap samples {c.get('gap_samples', 0):,}"
        )
    print(f"edge-run: wrote {args.out}/<device-id>/")
    return 0


def agreement(records, reference) -> dict:
    """``{epochs, agreement, kappa}``: the staged night against the recording's own scoring,
    over the epochs both scored (agreement and kappa null when there are none)."""
    import numpy as np

    got = np.array([r.stage for r in records], dtype=int)
    ref = np.asarray(reference, dtype=int)[: len(got)]
    got = got[: len(ref)]
    both = (ref >= 0) & (got >= 0)
    if not both.any():
        return {"epochs": 0, "agreement": None, "kappa": None}
    a, b = ref[both], got[both]
    po = float((a == b).mean())
    pe = float(sum((a == k).mean() * (b == k).mean() for k in range(5)))
    kappa = (po - pe) / (1 - pe) if pe < 1 else 1.0
    return {"epochs": int(both.sum()), "agreement": round(po, 4), "kappa": round(kappa, 4)}


def _agreement(records, reference) -> str:
    """How the staged night compares with the record's own hypnogram (scored epochs only)."""
    r = agreement(records, reference)
    if not r["epochs"]:
        return "no scored epoch to compare with the record's hypnogram"
    return (
        f"agreement with the record's scored hypnogram: {100 * r['agreement']:.1f} % of "
        f"{r['epochs']} epochs, Cohen's kappa {r['kappa']:.2f}"
    )


def _add_reference(path: Path, reference: dict) -> None:
    """``reference: {epochs, agreement, kappa}`` into the night's run.json."""
    import json

    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["reference"] = reference
    path.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(name)s: %(message)s"
    )
    if args.duration is not None and args.duration <= 0:
        print("edge-run: --duration must be positive", file=sys.stderr)
        return 2
    if args.push_every is not None and args.push_every < 0:
        print("edge-run: --push-every must be >= 0", file=sys.stderr)
        return 2
    if (args.channels or args.montage or args.hypnogram) and args.source != "replay":
        print(
            "edge-run: --channels, --montage and --hypnogram need --source replay", file=sys.stderr
        )
        return 2
    if args.device_id == "+" and args.source != "mqtt":
        print("edge-run: --device-id + (every device) needs --source mqtt", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM ends a live night like Ctrl-C
    try:
        return run(args)
    except Exception as exc:
        if args.verbose or not isinstance(exc, EXPECTED):
            raise
        print(f"edge-run: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-run: interrupted; --resume continues from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
