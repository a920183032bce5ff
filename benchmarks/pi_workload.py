"""The runtime work that ``benchmarks/pi.py`` counts, run natively and under qemu-aarch64.

``python benchmarks/pi_workload.py --frames FRAMES.npz [--marks] [--only NAME,...]`` prints one
JSON object: for each workload its ``units`` (steps, epochs or device-seconds), the native wall
time per unit, and its ``output`` (rows of logits, of stage probabilities or of features), which
pi.py compares between the x86 run and the emulated ones. With ``--marks`` every timed loop is
bracketed by two marker system calls that the qemu plugin
``benchmarks/qemu_plugin/insn_marks.c`` turns into instruction counts, so interpreter start-up,
imports, model loading and warm-up are excluded.

Workloads (one thread everywhere, as edge-run runs):

- ``mamba_step/<backend>/<precision>``: one single-stream step of the bundled causal Mamba with
  its state carried (the raw step, as ``benchmarks/latency.py`` times it);
- ``ulw_epoch/<backend>/<precision>``: one 30-s PSG epoch (4 × 3,000 samples, after edge's
  operators) through ULW-SleepNet;
- ``anne_dsp``: one device-second of ANNE wire frames through the session's receiver, sample
  assembler and feature operators (decode → resample → filters → STFT → 140 features), the
  frames queued for a batched step as in a fleet engine (the model is not run);
- ``anne_pipeline/<backend>``: the same device-second end to end, the Mamba stepped and 30-s
  epochs staged (edge-run ``--device anne`` with one device).

The inputs file (ANNE frames, PSG epochs) is written by pi.py on the host (the simulator's work
is not counted).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MARK_SYSCALL = 0x5E5E  # benchmarks/qemu_plugin/insn_marks.c
MODELS = Path(__file__).resolve().parents[1] / "edge" / "models"
WARMUP_FRACTION = 0.25  # of the frames file's seconds, fed before the ANNE marks

_libc = ctypes.CDLL(None, use_errno=True)


class Marker:
    """Numbered marker system calls around each timed loop (no-ops unless ``enabled``)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.next = 1

    def __call__(self) -> int:
        label, self.next = self.next, self.next + 1
        if self.enabled:
            _libc.syscall(MARK_SYSCALL, label)
        return label


def _timed(mark: Marker, fn, units: float) -> dict:
    start = mark()
    t0 = time.perf_counter()
    output = fn()
    seconds = time.perf_counter() - t0
    end = mark()
    return {"marks": [start, end], "units": units, "native_us_per_unit": seconds / units * 1e6,
            "output": output}  # fmt: skip


def mamba_step(mark: Marker, backend: str, precision: str, steps: int) -> dict:
    from edge.models.step_runner import load_step_model

    model = load_step_model(MODELS / "mamba_anne" / "mamba_anne.json", backend, precision, 1)
    raw = model.model
    x = np.random.default_rng(0).standard_normal((steps + 20, 1, 140)).astype(np.float32)
    conv, h = raw.initial_state(1)
    for i in range(20):
        _, conv, h = raw.step(x[i], conv, h)

    def run():
        nonlocal conv, h
        logits = None
        for i in range(20, steps + 20):
            logits, conv, h = raw.step(x[i], conv, h)
        return np.asarray(logits, np.float64).reshape(1, -1).tolist()

    return _timed(mark, run, steps)


def ulw_epoch(mark: Marker, inputs: Path, backend: str, precision: str) -> dict:
    from edge.models import load_epoch_model

    # research=True: LiteRT int8 is a research export edge-run does not serve; its cost is still
    # measured here beside the served variants
    manifest = MODELS / "ulw_sleepnet" / "ulw_sleepnet.json"
    model = load_epoch_model(manifest, backend, precision, 1, research=True)
    with np.load(inputs) as z:
        x = z["psg_epochs"][:, None]  # (epochs, 1, 4, 3000), as edge-run calls predict
    epochs = len(x)
    model.predict(x[0])

    def run():
        out = [model.predict(x[i]) for i in range(epochs)]
        return np.asarray(out, np.float64).reshape(epochs, -1).tolist()

    return _timed(mark, run, epochs)


def _frames(path: Path) -> tuple[list[bytes], float]:
    with np.load(path) as z:
        blob, ends = z["blob"].tobytes(), z["ends"]
        seconds = float(z["seconds"])
    starts = np.concatenate([[0], ends[:-1]])
    return [blob[a:b] for a, b in zip(starts, ends, strict=True)], seconds


def _anne_session(backend: str, shared_bank: bool):
    from types import SimpleNamespace

    from edge.cli import _stager_factory
    from edge.devices import load_device
    from edge.models.streams import StreamBank
    from edge.session import Session

    profile = load_device("anne")
    args = SimpleNamespace(backend=backend, precision="fp32", threads=1)
    make, spec, model = _stager_factory(MODELS / "mamba_anne" / "mamba_anne.json", profile, args)
    stager = make(StreamBank(model) if shared_bank else None, "pi")
    return Session(profile, spec, stager)


def anne(mark: Marker, frames_path: Path, backend: str | None) -> dict:
    """``backend`` None: the DSP only (frames queued on a shared bank that nobody steps)."""
    frames, seconds = _frames(frames_path)
    session = _anne_session(backend or "numpy", shared_bank=backend is None)
    warm = int(len(frames) * WARMUP_FRACTION)
    for data in frames[:warm]:
        session.feed(data)

    def run():
        records = []
        for data in frames[warm:]:
            records += session.feed(data)
        if backend is None:
            rows = session.stager.pending_inputs()
            return np.nan_to_num(rows[-30:].astype(np.float64)).tolist()
        return [list((r.probabilities or {}).values()) for r in records]

    return _timed(mark, run, seconds * (1 - WARMUP_FRACTION))


def workloads(frames: Path, steps: int) -> dict:
    """Name → a function of the marker running that workload."""
    table = {}
    for backend, precision in [("numpy", "fp32"), ("onnxruntime", "fp32"),
                               ("onnxruntime", "int8"), ("litert", "fp32")]:  # fmt: skip
        table[f"mamba_step/{backend}/{precision}"] = lambda m, b=backend, p=precision: mamba_step(
            m, b, p, steps
        )
    for backend in ("onnxruntime", "litert"):
        for precision in ("fp32", "int8"):
            table[f"ulw_epoch/{backend}/{precision}"] = lambda m, b=backend, p=precision: ulw_epoch(
                m, frames, b, p
            )
    table["anne_dsp"] = lambda m: anne(m, frames, None)
    for backend in ("onnxruntime", "litert", "numpy"):
        table[f"anne_pipeline/{backend}"] = lambda m, b=backend: anne(m, frames, b)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--frames",
        type=Path,
        required=True,
        help="recorded inputs: ANNE wire frames and PSG epochs (from pi.py)",
    )
    ap.add_argument("--marks", action="store_true", help="make the marker system calls")
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--steps", type=int, default=200, help="Mamba steps per timed loop")
    args = ap.parse_args(argv)
    table = workloads(args.frames, args.steps)
    names = [n for n in args.only.split(",") if n] or list(table)
    unknown = sorted(set(names) - set(table))
    if unknown:
        ap.error(f"unknown workloads {unknown}; choose from {sorted(table)}")
    mark = Marker(args.marks)
    result = {name: table[name](mark) for name in names}
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
