"""Latency per model call, one thread: ``python benchmarks/latency.py [--json] [--quick]``.

For every model variant available here: backend × precision, p50/p90/p99/min µs per call with
warm-up, against torch eager on the same input (the baseline a user would write). Until a
trained model is bundled, the ULW-SleepNet graph is exported on the fly from initialised weights
(latency does not depend on the weights' values). ``--json`` prints a list of records with
``model``, ``backend``, ``precision``, ``batch``, ``p50_us``, ``p90_us``, ``p99_us``, ``min_us``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
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


def ulw_records(n: int, batches: tuple[int, ...]) -> list[dict]:
    import onnxruntime as ort
    import torch

    from export.quantize import quantize_int8, realistic_calibration
    from export.ulw import export_onnx
    from training.models.ulw_sleepnet import ULWSleepNet

    torch.set_num_threads(1)
    model = ULWSleepNet(4).eval()
    model.input_scale.copy_(torch.tensor([1 / 25, 1 / 20, 1 / 40, 1 / 5]))
    tmp = Path(tempfile.mkdtemp())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_onnx(model, tmp / "fp32.onnx")
        data = (np.random.default_rng(0).standard_normal((64, 4, 3000)) * 30).astype(np.float32)
        quantize_int8(tmp / "fp32.onnx", tmp / "int8.onnx", realistic_calibration(data, 32))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sessions = {
        p: ort.InferenceSession(str(tmp / f"{p}.onnx"), opts, providers=["CPUExecutionProvider"])
        for p in ("fp32", "int8")
    }
    out = []
    for b in batches:
        x = data[:b]
        xt = torch.from_numpy(x)
        for precision, s in sessions.items():
            r = timings(lambda s=s, x=x: s.run(None, {"epochs": x}), n)
            out.append(
                {
                    "model": "ulw_sleepnet",
                    "backend": "onnxruntime",
                    "precision": precision,
                    "batch": b,
                    **r,
                }
            )
        with torch.no_grad():
            r = timings(lambda xt=xt: model(xt), max(20, n // 5))
        out.append(
            {
                "model": "ulw_sleepnet",
                "backend": "torch-eager",
                "precision": "fp32",
                "batch": b,
                **r,
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true", help="few calls (CI smoke run)")
    args = ap.parse_args(argv)
    records = ulw_records(30 if args.quick else 2000, (1,) if args.quick else (1, 32))
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    print(f"machine: {machine_info()}")
    print(
        f"{'model':14s} {'backend':12s} {'prec':5s} {'batch':>5s} {'p50 µs':>9s} {'p99 µs':>9s}"
        f" {'min µs':>9s}"
    )
    for r in records:
        print(
            f"{r['model']:14s} {r['backend']:12s} {r['precision']:5s} {r['batch']:5d} "
            f"{r['p50_us']:9.1f} {r['p99_us']:9.1f} {r['min_us']:9.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
