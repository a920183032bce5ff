"""Throughput, memory and cost growth of a whole night: ``python benchmarks/throughput.py``.

One core (BLAS and the model pinned to one thread). For ``--device psg`` (the device with a
bundled model):

- (a) an 8-hour night (Sleep-EDF SC4762's first 8 h, resynthesised) replayed end to end as fast
  as possible through edge-run's own loop: wire frames → receiver → operators → ULW-SleepNet →
  epochs.jsonl/csv with checkpoints every 20 epochs → reports, as × real time. The frames
  are made beforehand (the simulator's work is not timed).
- (c) memory: bytes of pipeline state per stream (its checkpoint snapshot) and the heap each
  added stream keeps alive (tracemalloc; N sessions sharing one model, each fed a minute of
  frames; RSS is no measure here: the allocator reuses the pages the night before freed).
- (d) cost growth: the streaming cost per epoch (operators in 1-s chunks + model) at hours 1, 4
  and 8 against the naive baseline a user would write, recomputing the batch filter chain over
  the growing buffer and staging the newest epoch every 30 s, as a ratio; plus the end-to-end
  cost per epoch in (a) around those hours (frame decoding included).

For ``--device anne`` (the causal Mamba): (a) per backend (onnxruntime, LiteRT, numpy), and
against the same loop fed frame by frame, and the checkpoint state per stream of (c), on a
resynthesised Walch night; (d) per second, as the issue states it: the streaming cost of a
second (operators in 1-s chunks + one carried Mamba step) at hours 1, 4 and 8 against a naive
recompute each second of the batch filter/resample/STFT chain over the growing buffer and the
torch full-sequence forward (``anne_cost_growth``); and (b): N live ANNE devices published by
the simulator's gateway through a real mosquitto into one ``edge-run --device-id +`` process on
one core, N raised
along ``--live-devices`` until the p99 delay from an epoch's last sample to its stage message
exceeds 1 s (``benchmarks/live_fleet.py`` says how it is measured); ``--live-devices 0`` skips
it. ``--quick``: a one-hour PSG night, 5 sessions, half an hour of ANNE, 2 live devices for a
minute (CI smoke run); ``--json`` prints the results as one object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (pins threads before numpy loads)

NIGHT = "sleep-edf/SC4762"


def wire_frames(profile, recording) -> list[bytes]:
    """The bytes of every frame the simulated device sends for ``recording``, in order."""
    from firmware_sim.device import VirtualDevice

    return [f.data for f in VirtualDevice.from_recording(profile, recording).frames()]


def build(hours: float):
    from edge.devices import load_device
    from firmware_sim.sources import synth_night

    profile = load_device("psg")
    night = synth_night(NIGHT, profile, 0, hours * 3600)
    return profile, night.recording, wire_frames(profile, night.recording)


def new_session(profile, model):
    from edge.session import Session
    from edge.staging import EpochStager

    spec = profile.input("ulw_sleepnet")
    return Session(profile, spec, EpochStager(model, [c.stream.name for c in spec.channels]))


class EpochClock:
    """A live-view stand-in for ``run_night``: the wall time each epoch took to come out."""

    def __init__(self) -> None:
        self.costs: list[float] = []
        self._last = time.perf_counter()

    def update(self, records, counts, model_s) -> None:
        if not records:
            return
        now = time.perf_counter()
        self.costs += [(now - self._last) / len(records)] * len(records)
        self._last = now

    def close(self) -> None:
        pass


def replay(profile, model, frames, out: Path) -> dict:
    """(a) through edge-run's own loop (``run_night``: checkpoints every 20 epochs, outputs,
    reports), and the per-epoch costs for (d)."""
    from edge.run import run_night
    from edge.sources import FrameList

    clock = EpochClock()
    result = run_night(FrameList(frames, "benchmark"), new_session(profile, model), out, {},
                       view=clock)  # fmt: skip
    return {"seconds": result.seconds, "epochs": result.epochs, "costs": clock.costs}


def streaming_epoch_cost(profile, model, recording, hour: float, epochs: int = 10) -> float:
    """Median cost of the operators + model for one epoch ending near ``hour``: the chain is run
    in 1-s chunks up to there first (untimed), then the next ``epochs`` epochs are timed."""
    from edge.features import EpochPipeline

    spec = profile.input("ulw_sleepnet")
    pipe = EpochPipeline(spec)
    names = [c.stream.name for c in spec.channels]
    rates = {n: int(profile.streams[n].rate_hz) for n in names}
    start = int(hour * 3600) - 30 * epochs

    def second(t: int):
        out = None
        for n in names:
            x = recording.signals[n][..., t * rates[n] : (t + 1) * rates[n]]
            e = pipe.push(n, x)
            out = e if len(e) else out
        return out

    for t in range(start):
        second(t)
    costs = []
    for k in range(epochs):
        t0 = time.perf_counter()
        for t in range(start + 30 * k, start + 30 * (k + 1)):
            e = second(t)
        model.predict(np.nan_to_num(e.data.reshape(len(e), 4, -1)).astype(np.float32))
        costs.append(time.perf_counter() - t0)
    return float(np.median(costs))


def naive_epoch_cost(profile, model, recording, hour: float) -> float:
    """Recompute the batch chain over everything up to ``hour`` and stage the newest epoch."""
    from edge.features import reference_epoch_features

    spec = profile.input("ulw_sleepnet")
    upto = {
        name: x[..., : int(hour * 3600 * profile.streams[name].rate_hz)]
        for name, x in recording.signals.items()
    }
    t0 = time.perf_counter()
    epochs = reference_epoch_features(spec, upto)
    model.predict(np.nan_to_num(epochs[-1:]).astype(np.float32))
    return time.perf_counter() - t0


def memory(profile, model, frames, n: int) -> dict:
    minute = frames[: 60 * 4]  # psg sends 4 frames a second
    sessions = [new_session(profile, model)]
    for data in minute:
        sessions[0].feed(data)
    state = sum(v.nbytes for v in sessions[0].snapshot().values())
    import tracemalloc

    tracemalloc.start()
    for _ in range(n):
        s = new_session(profile, model)
        for data in minute:
            s.feed(data)
        sessions.append(s)
    traced, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "state_bytes_per_stream": state,
        "heap_bytes_per_stream": traced / n,  # Python + numpy allocations still alive
    }


def run(hours: float, n_sessions: int) -> dict:
    from edge.cli import MODELS_DIR
    from edge.models import load_epoch_model

    model = load_epoch_model(MODELS_DIR / "ulw_sleepnet" / "ulw_sleepnet.json", threads=1)
    profile, recording, frames = build(hours)
    with tempfile.TemporaryDirectory() as tmp:
        a = replay(profile, model, frames, Path(tmp))
    costs = np.array(a.pop("costs"))
    growth = {}
    for h in (1, 4, 8):
        if h > hours:
            continue
        k = int(h * 120) - 1  # the epoch ending at hour h
        window = costs[max(0, k - 20) : k + 1]
        stream_us = streaming_epoch_cost(profile, model, recording, h) * 1e6
        naive_us = naive_epoch_cost(profile, model, recording, h) * 1e6
        growth[f"hour_{h}"] = {
            "end_to_end_us_per_epoch": float(np.median(window)) * 1e6,
            "streaming_us_per_epoch": stream_us,
            "naive_us_per_epoch": naive_us,
            "naive_over_streaming": naive_us / stream_us,
        }
    return {
        "machine": machine_info(),
        "device": "psg",
        "night": f"{NIGHT}, first {hours:g} h, resynthesised",
        "frames": len(frames),
        "epochs": a["epochs"],
        "seconds": a["seconds"],
        "x_real_time": hours * 3600 / a["seconds"],
        "us_per_epoch": a["seconds"] / a["epochs"] * 1e6,
        "memory": memory(profile, model, frames, n_sessions),
        "cost_growth": growth,
    }


ANNE_NIGHT = "walch/8258170"  # a held-out subject with an 8-h recording


def _anne_seconds(recording, spec, upto_s: float | None = None):
    """Per stream: (samples, times or None) of the recording, cut at ``upto_s``."""
    out = {}
    for f in spec.features:
        name = f.stream.name
        x, t = recording.signals[name], recording.times.get(name)
        if upto_s is not None:
            n = int(np.searchsorted(t, upto_s)) if t is not None else int(upto_s * f.stream.rate_hz)
            x, t = x[..., :n], (None if t is None else t[:n])
        out[name] = (x, t)
    return out


def anne_cost_growth(recording, marks: tuple[float, ...], window_s: int = 300) -> dict:
    """(d) for the ANNE chain: the streaming cost of one second (operators on 1-s chunks + one
    Mamba step through onnxruntime, state carried) at each hour mark — the median over the
    ``window_s`` seconds before it, in one pass over the night — against the naive baseline a
    user would write each second: the batch filter/resample/STFT chain over the whole buffer so
    far (``reference_frame_features``) and the torch full-sequence forward of the same model,
    keeping the newest second's logits. The naive cost is the median of 3 recomputes."""
    import torch

    from edge.cli import MODELS_DIR
    from edge.devices import load_device
    from edge.features import FramePipeline, reference_frame_features
    from edge.models.manifest import Manifest
    from edge.models.step_runner import load_step_model
    from training.evaluate_mamba import load_weights

    torch.set_num_threads(1)
    manifest = Manifest.load(MODELS_DIR / "mamba_anne" / "mamba_anne.json")
    spec = load_device("anne").input(manifest.data["input_spec"])
    model = load_step_model(manifest.path, "onnxruntime", "fp32", threads=1)
    torch_model, _ = load_weights(manifest.file("torch_checkpoint"))
    streams = _anne_seconds(recording, spec)
    pipe = FramePipeline(spec)
    conv, h = model.initial_state(1)
    seconds = int(max(marks) * 3600)
    costs = np.empty(seconds)
    cuts = {}
    rates = {f.stream.name: f.stream.rate_hz for f in spec.features}
    edges = np.arange(seconds + 1, dtype=float)
    for name, (_, t) in streams.items():  # sample index bounds of every second
        cuts[name] = (
            np.searchsorted(t, edges) if t is not None else (edges * rates[name]).astype(int)
        )
    for s in range(seconds):
        t0 = time.perf_counter()
        ready = []
        for name, (x, t) in streams.items():
            a, b = cuts[name][s], cuts[name][s + 1]
            if b > a:
                out = pipe.push(name, x[..., a:b], None if t is None else t[a:b])
                if out.shape[-1]:
                    ready.append(out)
        for frames in ready:
            for col in frames.T:
                _, conv, h = model.step(col[None].astype(np.float32), conv, h)
        costs[s] = time.perf_counter() - t0

    def naive(upto_s: float) -> float:
        cut = _anne_seconds(recording, spec, upto_s)
        t0 = time.perf_counter()
        feats = reference_frame_features(
            spec, {n: x for n, (x, _) in cut.items()},
            {n: t for n, (_, t) in cut.items() if t is not None},
        )  # fmt: skip
        x = torch.from_numpy(model.normalise(feats.T))
        with torch.no_grad():
            torch_model(x[None])[0, -1]
        return time.perf_counter() - t0

    growth = {}
    for m in marks:
        end = int(m * 3600)
        stream_us = float(np.median(costs[max(0, end - window_s) : end])) * 1e6
        naive_us = float(np.median([naive(end) for _ in range(3)])) * 1e6
        growth[f"hour_{m:g}"] = {
            "streaming_us_per_second": stream_us,
            "naive_us_per_second": naive_us,
            "naive_over_streaming": naive_us / stream_us,
        }
    first, last = growth[f"hour_{marks[0]:g}"], growth[f"hour_{marks[-1]:g}"]
    growth["last_over_first"] = last["streaming_us_per_second"] / first["streaming_us_per_second"]
    return growth


ANNE_BACKENDS = ("onnxruntime", "litert", "native", "numpy")


def run_anne(hours: float, baseline_hours: float = 1.0) -> dict:
    """(a) for ``--device anne``: the causal Mamba stepping every second of a resynthesised
    Walch night through edge-run's own loop (``run_night``: frames decoded in batches, each
    stream's stretch through the operators at once, the queued seconds through the model's
    sequence path), once per backend (one thread); the same loop fed frame by frame (as a
    paced or live source is) on the first ``baseline_hours`` as the baseline; and (c) the
    checkpoint state per stream (operators + recurrent state)."""
    from types import SimpleNamespace

    import matplotlib.pyplot  # noqa: F401  (the reports' one-off import, not the night's work)

    from edge.cli import MODELS_DIR, _stager
    from edge.devices import load_device
    from edge.run import run_night
    from edge.session import Session
    from edge.sources import FrameList
    from firmware_sim.sources import synth_night

    profile = load_device("anne")
    night = synth_night(ANNE_NIGHT, profile, 0, hours * 3600)
    frames = wire_frames(profile, night.recording)
    manifest = MODELS_DIR / "mamba_anne" / "mamba_anne.json"

    def session(backend: str = "onnxruntime") -> Session:
        args = SimpleNamespace(backend=backend, precision="fp32", threads=1)
        stager, spec = _stager(manifest, profile, args)
        return Session(profile, spec, stager)

    seconds = night.recording.duration_s
    backends = {}
    for backend in ANNE_BACKENDS:
        s = session(backend)
        with tempfile.TemporaryDirectory() as tmp:
            result = run_night(FrameList(frames, "benchmark"), s, Path(tmp), {})
        backends[backend] = {
            "epochs": result.epochs,
            "seconds": result.seconds,
            "x_real_time": seconds / result.seconds,
            "us_per_epoch": result.seconds / result.epochs * 1e6,
            "model_seconds": s.model_seconds,
        }
    # baseline: frame by frame, the step graph once a second (what the loop did before)
    cut = int(len(frames) * min(1.0, baseline_hours / hours))
    s = session()
    t0 = time.perf_counter()
    for data in frames[:cut]:
        s.feed(data)
    base_s = time.perf_counter() - t0
    base_x = seconds * cut / len(frames) / base_s
    probe = session()
    for data in frames[: len(frames) // max(1, int(hours * 60))]:  # one minute of frames
        probe.feed(data)
    state = sum(np.asarray(v).nbytes for v in probe.snapshot().values())
    default = backends["onnxruntime"]
    return {
        "night": f"{ANNE_NIGHT}, first {seconds / 3600:.2f} h, resynthesised",
        "frames": len(frames),
        **default,
        "backends": backends,
        "frame_by_frame": {
            "hours": seconds * cut / len(frames) / 3600,
            "x_real_time": base_x,
            "batched_over_frame_by_frame": default["x_real_time"] / base_x,
        },
        "state_bytes_per_stream": state,
        "cost_growth": anne_cost_growth(
            night.recording, tuple(m for m in (1, 4, 8) if m <= hours) or (hours,)
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="one hour, 5 sessions (smoke run)")
    ap.add_argument(
        "--live-devices",
        default="50,100,200,300,400,600,800,1000",
        help="(b): device counts to try in order, comma-separated (0: skip)",
    )
    ap.add_argument("--live-seconds", type=float, default=120.0, help="(b): night length")
    ap.add_argument("--live-only", action="store_true", help="only (b)")
    ap.add_argument(
        "--bundle",
        type=float,
        default=0.25,
        help="(b): the gateway batches the frames of every S seconds (0: a message per frame)",
    )
    ap.add_argument(
        "--per-device",
        action="store_true",
        help="(b): one message per device per window on its bundle topic (default: all "
        "devices' frames of a window in one gateway message)",
    )
    args = ap.parse_args(argv)
    if args.live_only:
        r = {"machine": machine_info()}
    else:
        r = run(1.0 if args.quick else 8.0, 5 if args.quick else 50)
        r["anne"] = run_anne(0.5 if args.quick else 8.0)
    counts = [2] if args.quick else [int(n) for n in args.live_devices.split(",") if int(n)]
    if counts:
        from live_fleet import ladder

        echo = (lambda line: None) if args.json else (lambda line: print(line, flush=True))
        seconds = 60.0 if args.quick else args.live_seconds
        stagger_s = 1.0 if args.quick else 30.0
        r["live"] = ladder(
            counts, seconds, stagger_s=stagger_s, echo=echo, bundle_s=args.bundle,
            one_message=not args.per_device,
        )  # fmt: skip
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"machine: {r['machine']}")
    if args.live_only:
        print(f"(b) largest N of live ANNE devices held (p99 <= 1 s): {r['live']['largest_held']}")
        return 0
    print(
        f"(a) {r['night']}: {r['frames']:,} frames, {r['epochs']} epochs in {r['seconds']:.1f} s "
        f"= {r['x_real_time']:,.0f}x real time ({r['us_per_epoch']:,.0f} us per epoch)"
    )
    m = r["memory"]
    print(
        f"(c) checkpoint state per stream {m['state_bytes_per_stream'] / 1024:.1f} KiB; live "
        f"heap per added stream {m['heap_bytes_per_stream'] / 1024:.1f} KiB"
    )
    an = r["anne"]
    for backend, b in an["backends"].items():
        print(
            f"(a) anne {an['night']}, {backend}: {an['frames']:,} frames, {b['epochs']} epochs "
            f"in {b['seconds']:.2f} s = {b['x_real_time']:,.0f}x real time "
            f"({b['us_per_epoch']:,.0f} us per epoch, of which the model's 30 s: "
            f"{b['model_seconds'] / b['epochs'] * 1e6:,.0f} us)"
        )
    fb = an["frame_by_frame"]
    print(
        f"(a) anne frame by frame (first {fb['hours']:.1f} h, onnxruntime step graph): "
        f"{fb['x_real_time']:,.0f}x real time; batched is {fb['batched_over_frame_by_frame']:.1f}x "
        f"faster; (c) anne checkpoint state per stream "
        f"{an['state_bytes_per_stream'] / 1024:.1f} KiB"
    )
    for h, g in an["cost_growth"].items():
        if h.startswith("hour_"):
            print(
                f"(d) anne {h}: operators + Mamba step {g['streaming_us_per_second']:,.0f} us per "
                f"second, naive recompute {g['naive_us_per_second']:,.0f} us "
                f"({g['naive_over_streaming']:,.0f}x)"
            )
    print(f"(d) anne streaming cost, last mark / first: {an['cost_growth']['last_over_first']:.3f}")
    if "live" in r:
        print(f"(b) largest N of live ANNE devices held (p99 <= 1 s): {r['live']['largest_held']}")
    for h, g in r["cost_growth"].items():
        print(
            f"(d) {h}: operators + model {g['streaming_us_per_epoch']:,.0f} us per epoch "
            f"(end to end with frame decoding {g['end_to_end_us_per_epoch']:,.0f} us), naive "
            f"recompute {g['naive_us_per_epoch']:,.0f} us ({g['naive_over_streaming']:,.1f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
