"""The benchmark scripts keep working (tiny sizes; no timing is asserted)."""

import json
import subprocess
import sys


def test_dsp_benchmark_quick_json():
    out = subprocess.run(
        [sys.executable, "benchmarks/dsp.py", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert {c["streams"] for c in r["per_device_second"]} == {1, 1000}
    assert all(c["median_us"] > 0 for c in r["per_device_second"])
    assert r["flatness"]["ratio"] > 0 and "resample_512_100_ours_1stream_us" in r["kernels"]
    assert r["machine"]["threads"] == "1"


def test_latency_benchmark_quick_json():
    out = subprocess.run(
        [sys.executable, "benchmarks/latency.py", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    keys = {"model", "backend", "precision", "batch", "p50_us", "p99_us", "min_us"}
    assert records and all(keys <= set(r) for r in records)
    assert {(r["backend"], r["precision"]) for r in records} == {
        ("onnxruntime", "fp32"),
        ("onnxruntime", "int8"),
        ("torch-eager", "fp32"),
    }
