"""Smoke run of benchmarks/reduced_input.py --quick --json (figures live in RESULTS.md)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_json():
    out = subprocess.run(
        [sys.executable, "benchmarks/reduced_input.py", "--quick", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    (night,) = r["nights"]
    assert night["full"]["reduced_epochs"] == 0
    assert night["copy"]["reduced_epochs"] == night["copy"]["epochs"] == 120
    for k in ("full", "copy", "zero"):
        assert -1 <= night[k]["kappa"] <= 1
