"""How to fill the PSG model's missing channels when only one EEG is recorded.

``python benchmarks/reduced_input.py [--nights N ...] [--quick] [--json]`` stages Sleep-EDF
validation nights (resynthesised, ``--source sim``) through ``edge-run`` three ways and reports
each night's kappa against its own hypnogram:

- ``full``: all four channels;
- ``copy``: only ``eeg_fpz_cz`` (the others off all night), filled by the shipped rule
  (``edge/devices/psg.toml``: the other EEG copies it, EOG and EMG zero);
- ``zero``: the same single EEG, every missing channel zero (a copy of the descriptor with
  ``absent = "zero"`` everywhere).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import benchmarks.machine  # noqa: E402, F401, I001  (pins BLAS threads before numpy loads)
from benchmarks.machine import machine_info  # noqa: E402

NIGHTS = ["SC4081", "SC4131", "SC4171"]  # validation split (training/splits/sleep-edf.json)
OFF = ["--leads-off", "eeg_pz_oz:0-200000", "--leads-off", "eog:0-200000"]
OFF += ["--leads-off", "emg:0-200000"]


def all_zero_descriptor(path: Path) -> Path:
    text = (ROOT / "edge/devices/psg.toml").read_text(encoding="utf-8")
    text = text.replace('absent = "copy:eeg_pz_oz"', 'absent = "zero"')
    text = text.replace('absent = "copy:eeg_fpz_cz"', 'absent = "zero"')
    path.write_text(text, encoding="utf-8")
    return path


def stage(night: str, out: Path, device: str, extra: list[str], duration: float | None) -> dict:
    cmd = [sys.executable, "-m", "edge.cli", "--source", "sim", "--night", f"sleep-edf/{night}",
           "--device", device, "--backend", "native", "--plain", "--checkpoint-every", "0",
           "--out", str(out), *extra]  # fmt: skip
    if duration:
        cmd += ["--duration", str(duration)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode:
        raise SystemExit(f"reduced_input: edge-run failed: {done.stderr.strip()}")
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    epochs = [json.loads(x) for x in (out / "epochs.jsonl").read_text().splitlines()]
    reduced = sum("reduced" in e["flags"] for e in epochs)
    return run["reference"] | {"reduced_epochs": reduced}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nights", nargs="+", default=NIGHTS)
    p.add_argument("--quick", action="store_true", help="one night, its first hour")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    nights, duration = (a.nights[:1], 3600.0) if a.quick else (a.nights, None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        zero = all_zero_descriptor(t / "psg_zero.toml")
        for night in nights:
            row = {"night": night}
            row["full"] = stage(night, t / f"{night}-full", "psg", [], duration)
            row["copy"] = stage(night, t / f"{night}-copy", "psg", OFF, duration)
            row["zero"] = stage(night, t / f"{night}-zero", str(zero), OFF, duration)
            rows.append(row)
    result = {"nights": rows, "machine": machine_info(), "quick": a.quick}
    for k in ("full", "copy", "zero"):
        result[f"mean_kappa_{k}"] = round(sum(r[k]["kappa"] for r in rows) / len(rows), 4)
    if a.json:
        print(json.dumps(result, indent=1))
        return 0
    print("night    full kappa  single EEG, copy rule  single EEG, all zero")
    for r in rows:
        print(f"{r['night']}  {r['full']['kappa']:10.3f}  {r['copy']['kappa']:21.3f}"
              f"  {r['zero']['kappa']:20.3f}")  # fmt: skip
    print(f"mean     {result['mean_kappa_full']:10.3f}  {result['mean_kappa_copy']:21.3f}"
          f"  {result['mean_kappa_zero']:20.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
