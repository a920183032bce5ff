"""Latency per model call, one thread: ``python benchmarks/latency.py [--json] [--quick]``.

For every model variant available here: backend × precision, p50/p90/p99/min µs per call with
warm-up, against torch eager on the same weights and input (the baseline a user would write).
The bundled ULW-SleepNet is timed through the edge runtime exactly as edge-run calls it (the
``predict`` of the onnxruntime, LiteRT and native runners, int8 input scaling included).
``--json`` prints a list of records with ``model``, ``backend``, ``precision``, ``batch``,
``p50_us``, ``p90_us``, ``p99_us``, ``min_us``, plus ``params``, ``macs`` and the model file's
``bytes``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402  (pins threads before numpy loads)


def timings(fn, n: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    ts = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        ts[i] = time.perf_counter() - t0
    q = np.percentile(ts, [50, 90, 99]) * 1e6
    return {"p50_us": q[0], "p90_us": q[1], "p99_us": q[2], "min_us": ts.min() * 1e6}


MANIFEST = Path(__file__).resolve().parents[1] / "edge" / "models" / "ulw_sleepnet"


def ulw_records(n: int, batches: tuple[int, ...]) -> list[dict]:
    """The bundled ULW-SleepNet through the edge runtime (every backend × precision the
    manifest lists), and torch eager on the same weights and input as the baseline."""
    import torch

    from edge.models import load_epoch_model
    from edge.models.manifest import Manifest
    from edge.models.runner import BACKENDS, PRECISIONS
    from training.models.ulw_sleepnet import ULWSleepNet

    torch.set_num_threads(1)
    manifest = Manifest.load(MANIFEST / "ulw_sleepnet.json")
    files = manifest.data["files"]
    model = ULWSleepNet.from_checkpoint(manifest.file("torch_checkpoint")).eval()
    data = (np.random.default_rng(0).standard_normal((64, 4, 3000)) * 30).astype(np.float32)
    common = {"model": "ulw_sleepnet", "params": manifest.data["params"]}
    common["macs"] = manifest.data["macs"]
    runners = {}
    for backend, precision in itertools.product(("onnxruntime", "litert", "native"), PRECISIONS):
        key = f"{BACKENDS[backend]}_{precision}"  # the manifest's file for this variant
        if key in files:
            runners[(backend, precision, files[key]["bytes"])] = load_epoch_model(
                manifest.path, backend, precision, threads=1
            )
    out = []
    for b in batches:
        x = data[:b]
        xt = torch.from_numpy(x)
        for (backend, precision, size), m in runners.items():
            r = timings(lambda m=m, x=x: m.predict(x), n)
            out.append(common | {"backend": backend, "precision": precision, "batch": b,
                                 "bytes": size} | r)  # fmt: skip
        with torch.no_grad():
            r = timings(lambda xt=xt: model(xt), max(20, n // 5))
        out.append(common | {"backend": "torch-eager", "precision": "fp32", "batch": b} | r)
    return out


MAMBA = Path(__file__).resolve().parents[1] / "edge" / "models" / "mamba_anne"


def mamba_records(n: int, batches: tuple[int, ...]) -> list[dict]:
    """The bundled causal Mamba step through the edge runtime — onnxruntime fp32/int8, LiteRT
    fp32 (one invocation per stream), native (the C kernel), numpy — and torch eager's
    ``step`` on the same weights, B streams per call with their state carried;
    ``per_stream_us`` = p50 / B. LiteRT runs a batch in blocks of the manifest's block file (64
    streams, the last block padded)."""
    import torch

    from edge.models.manifest import Manifest
    from edge.models.step_runner import load_step_model
    from training.evaluate_mamba import load_weights

    torch.set_num_threads(1)
    manifest = Manifest.load(MAMBA / "mamba_anne.json")
    data = manifest.data
    model, _ = load_weights(manifest.file("torch_checkpoint"))
    common = {"model": "mamba_anne", "params": data["params"], "macs": data["linear_macs"]}
    common["flops"] = data["flops"]
    runners = {}
    variants = {"onnx_fp32": ("onnxruntime", "fp32"), "onnx_int8": ("onnxruntime", "int8"),
                "tflite_fp32": ("litert", "fp32"), "numpy_weights": ("native", "fp32")}  # fmt: skip
    for key, (backend, precision) in [*variants.items(), ("numpy_weights", ("numpy", "fp32"))]:
        if key in data["files"]:
            # the backend's step under the normalisation wrapper: the inputs here are already
            # normalised features
            runner = load_step_model(manifest.path, backend, precision, threads=1).model
            runners[(backend, precision, data["files"][key]["bytes"])] = runner
    out = []
    for b in batches:
        x = np.random.default_rng(0).standard_normal((b, 140)).astype(np.float32)
        for (backend, precision, size), m in runners.items():
            conv, h = m.initial_state(b)
            r = timings(lambda m=m, x=x, c=conv, hh=h: m.step(x, c, hh), n)
            row = {"backend": backend, "precision": precision, "batch": b, "bytes": size}
            out.append(common | row | {"per_stream_us": r["p50_us"] / b} | r)
        xt, (ct, ht) = torch.from_numpy(x), model.initial_state(b)
        with torch.no_grad():
            r = timings(lambda x=xt, c=ct, hh=ht: model.step(x, c, hh), max(20, n // 5))
        eager = {"backend": "torch-eager", "precision": "fp32", "batch": b}
        out.append(common | eager | {"per_stream_us": r["p50_us"] / b} | r)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="few calls (CI smoke run)")
    args = ap.parse_args(argv)
    records = ulw_records(30 if args.quick else 2000, (1,) if args.quick else (1, 32))
    records += mamba_records(
        30 if args.quick else 2000, (1, 16) if args.quick else (1, 16, 256, 1024)
    )
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"machine: {machine_info()}")
    print(
        f"{'model':14s} {'backend':12s} {'prec':5s} {'batch':>5s} {'p50 µs':>9s} {'p90 µs':>9s}"
        f" {'p99 µs':>9s} {'min µs':>9s} {'µs/stream':>10s}"
    )
    for r in records:
        per = f"{r['per_stream_us']:10.2f}" if "per_stream_us" in r else ""
        print(
            f"{r['model']:14s} {r['backend']:12s} {r['precision']:5s} {r['batch']:5d} "
            f"{r['p50_us']:9.1f} {r['p90_us']:9.1f} {r['p99_us']:9.1f} {r['min_us']:9.1f} {per}"
        )
    for name in sorted({r["model"] for r in records}):
        rows = [r for r in records if r["model"] == name]
        p = rows[0]
        extra = (
            f", FLOPs/step {p['flops']:,} (SSM element-wise work counted by hand)"
            if "flops" in p
            else ""
        )
        print(f"{name}: params {p['params']:,}, MACs {p['macs']:,}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
