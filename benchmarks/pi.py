"""Raspberry Pi-class projection by instruction counts: ``python benchmarks/pi.py [--json]``.

Needs root (apt and debootstrap) and is not part of CI. Steps, each cached under ``--cache``
(default ``~/.cache/sleepedge/pi``) and redone only when its inputs change:

1. host tools from Debian: ``qemu-user`` (the dynamically linked qemu-aarch64, which loads TCG
   plugins), ``debootstrap``;
2. an arm64 Debian root filesystem: ``debootstrap --foreign`` of the host's release with
   python3.11, its packages unpacked (no second stage: nothing runs inside a chroot, qemu-user
   runs the guest's python with ``-L ROOTFS``, which serves the guest's absolute paths from the
   root filesystem wherever it has the file and from the host otherwise — so the guest reads
   this checkout and the bundled models in place);
3. aarch64 wheels from PyPI at the host's versions (numpy, scipy, onnxruntime, ai-edge-litert,
   paho-mqtt, edfio) installed into the root filesystem;
4. the instruction-counting plugin ``benchmarks/qemu_plugin/insn_marks.c``, built against the
   plugin header of the installed qemu's own source (Debian's orig tarball; Debian ships no header);
5. the work itself (``benchmarks/pi_workload.py``): run natively, then under qemu-aarch64 with
   ``QEMU_CPU`` = cortex-a72 (Pi 4) and cortex-a76 (Pi 5), each with a Pi-like ``/proc/cpuinfo``
   (onnxruntime's CPU detection reads it; the host's x86 one crashes it); every emulated output
   is checked against the native one, and the guest instructions of each timed loop are counted
   between two marker system calls.

Projection (DESIGN §5): instructions are a fair cost metric across runs (they repeat within
0.5 %); emulated wall time is not. A Pi's time is instructions / (clock × IPC), with the clock of
the board and an IPC range stated below for this branchy, call-heavy code (Python interpreter,
small numpy and runtime calls): Pi 4 (Cortex-A72, 3-wide, 1.5 GHz) IPC 0.5–1.0, Pi 5
(Cortex-A76, 4-wide, 2.4 GHz) IPC 0.8–1.6. A second, independent range scales the native x86
time by DESIGN §5's measured x86 → Pi 4 slowdown (2–5× for overhead-bound code). Memory effects
beyond the core are not modelled (an ANNE stream's state is 16 KiB and stays in cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))
from machine import machine_info  # noqa: E402  (pins threads before numpy loads)

MIRROR = "http://deb.debian.org/debian"
PLUGIN_SOURCE = REPO / "benchmarks" / "qemu_plugin" / "insn_marks.c"
WORKLOAD = REPO / "benchmarks" / "pi_workload.py"
SITE = "opt/sleepedge-site"  # inside the root filesystem
WHEELS = ("numpy", "scipy", "onnxruntime", "ai-edge-litert", "paho-mqtt", "edfio")
GUEST_PACKAGES = "python3.11,libstdc++6,libgomp1"


@dataclass(frozen=True)
class Board:
    name: str
    cpu: str  # QEMU_CPU
    ghz: float
    ipc: tuple[float, float]
    cpuinfo_part: str
    features: str
    x86_slowdown: tuple[float, float] | None = None  # DESIGN §5, Pi 4 only


BOARDS = (
    Board("Pi 4", "cortex-a72", 1.5, (0.5, 1.0), "0xd08", "fp asimd evtstrm crc32 cpuid", (2, 5)),
    Board("Pi 5", "cortex-a76", 2.4, (0.8, 1.6), "0xd0b",
          "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc "
          "dcpop asimddp"),
)  # fmt: skip

# Largest |emulated - native| allowed per output (fp32: kernels differ in summation order)
TOLERANCE = {"mamba_step": 1e-4, "ulw_epoch": 1e-3, "anne_dsp": 1e-3, "anne_pipeline": 1e-3}
# int8 kernels differ by design: x86 without VNNI multiplies u8 × s8 pairs into saturating
# int16 (AVX2 vpmaddubsw), Arm accumulates exactly in int32, so int8 logits may differ by more
# than rounding. For int8 the check is the product's: the same stage on every row.


class PiError(RuntimeError):
    pass


def sh(cmd: list[str]) -> None:
    """Run a setup command quietly; its output's tail in the error when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise PiError(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}):\n{tail}")


def log(msg: str) -> None:
    print(f"[pi] {msg}", file=sys.stderr, flush=True)


# -- 1. host tools -----------------------------------------------------------------------------


def host_tools() -> str:
    """Install qemu-user and debootstrap when missing; the installed qemu's Debian version."""
    if os.geteuid() != 0:
        raise PiError("benchmarks/pi.py needs root (apt-get, debootstrap); run it with sudo")
    if not (shutil.which("qemu-aarch64") and shutil.which("debootstrap")):
        log("installing qemu-user and debootstrap (apt)")
        sh(["apt-get", "install", "-y", "-q", "qemu-user", "debootstrap"])
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "qemu-user"], check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    return out.strip()


def upstream_version(debian_version: str) -> str:
    """``1:7.2+dfsg-7+deb12u18+b3`` → ``7.2+dfsg`` (the orig tarball's version)."""
    v = debian_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0]


def _stamp_ok(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text() == key


# -- 2. root filesystem ------------------------------------------------------------------------


def release() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise PiError("no VERSION_CODENAME in /etc/os-release: pass --release")


def rootfs(cache: Path, suite: str) -> Path:
    root = cache / f"rootfs-{suite}-arm64"
    stamp = cache / f"rootfs-{suite}-arm64.done"
    key = f"{suite} {GUEST_PACKAGES}"
    if _stamp_ok(stamp, key):
        return root
    shutil.rmtree(root, ignore_errors=True)
    log(f"debootstrap arm64 {suite} → {root}")
    sh(["debootstrap", "--arch=arm64", "--foreign", "--variant=minbase",
        f"--include={GUEST_PACKAGES}", suite, str(root), MIRROR])  # fmt: skip
    debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
    log(f"unpacking {len(debs)} packages")
    for deb in debs:
        sh(["dpkg-deb", "-x", str(deb), str(root)])
    if not (root / "usr/bin/python3.11").exists():
        raise PiError(f"no python3.11 in {root} after unpacking")
    stamp.write_text(key)
    return root


def write_cpuinfo(root: Path, board: Board) -> None:
    """A Pi-like /proc/cpuinfo served to the guest from the root filesystem (qemu -L)."""
    block = (f"processor\t: {{i}}\nBogoMIPS\t: 108.00\nFeatures\t: {board.features}\n"
             f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
             f"CPU part\t: {board.cpuinfo_part}\nCPU revision\t: 3\n\n")  # fmt: skip
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc/cpuinfo").write_text("".join(block.format(i=i) for i in range(4)))


# -- 3. wheels ---------------------------------------------------------------------------------


def host_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in WHEELS}


def install_wheels(cache: Path, root: Path) -> None:
    pins = [f"{n}=={v}" for n, v in host_versions().items()]
    stamp = root / SITE / ".pins"
    if _stamp_ok(stamp, " ".join(pins)):
        return
    platforms = [f"manylinux_2_{v}_aarch64" for v in (17, 27, 28)] + ["manylinux2014_aarch64"]
    tags = [a for p in platforms for a in ("--platform", p)]
    tags += ["--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:"]
    wheels = cache / "wheels"
    log(f"aarch64 wheels: {' '.join(pins)}")
    sh([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), *tags, *pins])
    shutil.rmtree(root / SITE, ignore_errors=True)
    sh([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(root / SITE),
        *tags, *map(str, sorted(wheels.glob("*.whl")))])  # fmt: skip
    stamp.write_text(" ".join(pins))


# -- 4. plugin ---------------------------------------------------------------------------------


def plugin(cache: Path, qemu_version: str) -> Path:
    upstream = upstream_version(qemu_version)
    source_hash = hashlib.sha256(PLUGIN_SOURCE.read_bytes()).hexdigest()[:16]
    so = cache / f"insn_marks-{upstream}-{source_hash}.so"
    if so.exists():
        return so
    tarball = cache / f"qemu_{upstream}.orig.tar.xz"
    if not tarball.exists():
        url = f"{MIRROR}/pool/main/q/qemu/qemu_{upstream}.orig.tar.xz"
        log(f"fetching qemu's source for its plugin header: {url}")
        with urllib.request.urlopen(url, timeout=300) as r, open(tarball, "wb") as f:
            shutil.copyfileobj(r, f)
    include = cache / f"qemu-{upstream}-include"
    if not (include / "qemu-plugin.h").exists():
        with tempfile.TemporaryDirectory() as tmp:
            sh(["tar", "-xJf", str(tarball), "-C", tmp, "--wildcards",
                "*/include/qemu/qemu-plugin.h"])  # fmt: skip
            header = next(Path(tmp).glob("*/include/qemu/qemu-plugin.h"))
            include.mkdir(exist_ok=True)
            shutil.copy(header, include / "qemu-plugin.h")
    log(f"building {so.name}")
    sh(["gcc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-I", str(include),
        "-o", str(so), str(PLUGIN_SOURCE)])  # fmt: skip
    return so


# -- 5. the work -------------------------------------------------------------------------------


def write_inputs(path: Path, seconds: float, epochs: int, psg_hours: float = 4.0) -> None:
    """The workload's recorded inputs, made natively (the simulator's work is not counted):
    ANNE wire frames of a resynthesised Walch night's first ``seconds``, and ``epochs`` PSG
    epochs (EEG/EOG/EMG after edge's operators) spread over a resynthesised Sleep-EDF night's
    first ``psg_hours``, so the int8 models see in-range data whose stages vary."""
    import numpy as np
    from throughput import ANNE_NIGHT, NIGHT, wire_frames

    from edge.devices import load_device
    from edge.features import reference_epoch_features
    from firmware_sim.sources import synth_night

    anne = load_device("anne")
    night = synth_night(ANNE_NIGHT, anne, 0, seconds)
    frames = wire_frames(anne, night.recording)
    psg = load_device("psg")
    psg_night = synth_night(NIGHT, psg, 0, psg_hours * 3600)
    all_epochs = reference_epoch_features(psg.input("ulw_sleepnet"), psg_night.recording.signals)
    pick = np.linspace(0, len(all_epochs) - 1, epochs).astype(int)
    np.savez(path, blob=np.frombuffer(b"".join(frames), np.uint8),
             ends=np.cumsum([len(f) for f in frames]), seconds=night.recording.duration_s,
             psg_epochs=np.nan_to_num(all_epochs[pick]).astype(np.float32))  # fmt: skip


def _env() -> dict[str, str]:
    """One thread (``machine`` pinned the pools on import) and a fixed hash seed: the guest's
    instruction counts repeat only with the same dict/set layouts."""
    return dict(os.environ, PYTHONHASHSEED="0")


def run_native(frames: Path, args: list[str]) -> dict:
    cmd = [sys.executable, str(WORKLOAD), "--frames", str(frames), *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=_env())
    return json.loads(out.stdout)


def run_emulated(root: Path, so: Path, board: Board, frames: Path, args: list[str]) -> dict:
    """The workload under qemu-aarch64 with the plugin; adds ``instructions`` per workload."""
    write_cpuinfo(root, board)
    with tempfile.TemporaryDirectory() as tmp:
        marks_file = Path(tmp) / "marks.txt"
        env = _env() | {
            "QEMU_CPU": board.cpu,
            "PYTHONPATH": f"/{SITE}:{REPO}",
            "PYTHONNOUSERSITE": "1",
        }
        cmd = ["qemu-aarch64", "-L", str(root), "-plugin", f"{so},out={marks_file}",
               str(root / "usr/bin/python3.11"), str(WORKLOAD), "--frames", str(frames),
               "--marks", *args]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise PiError(f"{board.cpu}: the emulated workload failed:\n{proc.stderr[-3000:]}")
        marks = {}
        for line in marks_file.read_text().splitlines():
            kind, *vals = line.split()
            if kind == "mark":
                marks[int(vals[0])] = int(vals[1])
    result = json.loads(proc.stdout)
    for r in result.values():
        a, b = r["marks"]
        r["instructions"] = marks[b] - marks[a]
        r["instructions_per_unit"] = r["instructions"] / r["units"]
    log(f"{board.cpu}: emulated run took {wall:.0f} s")
    return result


def compare(name: str, native: list, emulated: list) -> tuple[float, bool]:
    """Largest |Δ| over the outputs, and whether they agree (see TOLERANCE)."""
    import numpy as np

    a, b = np.asarray(native, np.float64), np.asarray(emulated, np.float64)
    if a.shape != b.shape:
        return float("inf"), False
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    if name.endswith("int8"):
        return diff, bool(np.array_equal(a.argmax(axis=-1), b.argmax(axis=-1)))
    return diff, diff <= TOLERANCE[name.split("/")[0]]


def unit_of(name: str) -> str:
    return {"mamba_step": "step", "ulw_epoch": "epoch"}.get(name.split("/")[0], "device-second")


def project(
    native: dict, emulated: dict[str, dict], boards: tuple[Board, ...] = BOARDS
) -> list[dict]:
    """One row per workload × board: instructions per unit and the projected time range."""
    rows = []
    for name, ref in native.items():
        for board in boards:
            r = emulated[board.cpu][name]
            diff, equal = compare(name, ref["output"], r["output"])
            insns = r["instructions_per_unit"]
            lo_s = insns / (board.ghz * 1e9 * board.ipc[1])
            hi_s = insns / (board.ghz * 1e9 * board.ipc[0])
            row = {
                "workload": name,
                "unit": unit_of(name),
                "board": board.name,
                "qemu_cpu": board.cpu,
                "instructions_per_unit": insns,
                "projected_us": [lo_s * 1e6, hi_s * 1e6],
                "native_x86_us": ref["native_us_per_unit"],
                "max_abs_diff_vs_x86": diff,
                "equal": equal,
            }
            if board.x86_slowdown:
                row["x86_scaled_us"] = [ref["native_us_per_unit"] * f for f in board.x86_slowdown]
            if row["unit"] == "device-second":
                row["core_share_pct"] = [lo_s * 100, hi_s * 100]
            rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'workload':28s} {'unit':13s} {'board':5s} {'insn/unit':>11s} "
        f"{'projected':>19s} {'x86 ×2–5':>17s} {'x86 now':>9s} {'|Δ| vs x86':>10s}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        lo, hi = r["projected_us"]
        scaled = "" if "x86_scaled_us" not in r else "{:.0f}–{:.0f} µs".format(*r["x86_scaled_us"])
        ok = "" if r["equal"] else "  NOT EQUAL"
        print(
            f"{r['workload']:28s} {r['unit']:13s} {r['board']:5s} "
            f"{r['instructions_per_unit']:11,.0f} {f'{lo:,.0f}–{hi:,.0f} µs':>19s} "
            f"{scaled:>17s} {r['native_x86_us']:7,.0f} µs {r['max_abs_diff_vs_x86']:10.1e}{ok}"
        )
    for r in rows:
        if r["workload"].startswith("anne_pipeline") and "core_share_pct" in r:
            lo, hi = r["core_share_pct"]
            print(f"{r['board']}: {r['workload']} for one device = {lo:.2f}–{hi:.2f} % of a core")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sleepedge" / "pi")
    ap.add_argument("--release", default=None, help="Debian suite of the root filesystem")
    ap.add_argument("--seconds", type=float, default=240, help="ANNE seconds (a quarter warm-up)")
    ap.add_argument("--steps", type=int, default=200, help="Mamba steps counted")
    ap.add_argument("--epochs", type=int, default=10, help="ULW-SleepNet epochs counted")
    ap.add_argument("--only", default="", help="comma-separated workloads (pi_workload.py)")
    ap.add_argument("--boards", default="Pi 4,Pi 5", help="comma-separated: Pi 4, Pi 5")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.boards.split(",") if s.strip()]
    unknown = sorted(set(names) - {b.name for b in BOARDS})
    if unknown or not names:
        ap.error(f"--boards: unknown {unknown}; choose from {[b.name for b in BOARDS]}")
    boards = tuple(b for b in BOARDS if b.name in names)
    try:
        qemu = host_tools()
        args.cache.mkdir(parents=True, exist_ok=True)
        root = rootfs(args.cache, args.release or release())
        install_wheels(args.cache, root)
        so = plugin(args.cache, qemu)
        frames = args.cache / f"inputs_{int(args.seconds)}s_{args.epochs}ep.npz"
        if not frames.exists():
            write_inputs(frames, args.seconds, args.epochs)
        work_args = ["--steps", str(args.steps)]
        if args.only:
            work_args += ["--only", args.only]
        log("native run")
        native = run_native(frames, work_args)
        emulated = {b.cpu: run_emulated(root, so, b, frames, work_args) for b in boards}
    except (PiError, subprocess.CalledProcessError, OSError) as e:  # setup or a run failed
        print(f"pi.py: {e}", file=sys.stderr)
        return 1
    rows = project(native, emulated, boards)
    info = machine_info() | {
        "qemu": qemu,
        "guest": f"Debian {args.release or release()} arm64",
        "guest_python": "3.11 (Debian)",
        "host_arch": platform.machine(),
    }
    if args.json:
        json.dump({"machine": info, "rows": rows, "boards": [b.__dict__ for b in boards]},
                  sys.stdout, indent=1)  # fmt: skip
        print()
    else:
        print(" · ".join(f"{k}: {v}" for k, v in info.items()))
        print_table(rows)
    return 0 if all(r["equal"] for r in rows) else 3


if __name__ == "__main__":
    sys.exit(main())
