"""Reliability in figures (issue #27): fuzz, soak, flood and resource faults.

    python benchmarks/reliability.py [--quick] [--json] [--scenarios fuzz,soak,...]
        [--fuzz N] [--devices N] [--hours H] [--flood-devices N] [--flood-seconds S]

Prints one JSON document with ``--json``: a list of records ``{scenario, devices, hours, faults,
frames_sent, frames_lost_unexpected, epochs_expected, epochs_written, epochs_doubled,
peak_rss_mb, outcome}`` (some scenarios add fields). ``outcome`` is ``pass`` or what failed.

- **fuzz**: random and mutated frames, end-of-session messages, bundles and gateway messages
  (bit flips, truncation, lengths that lie, huge counts, wrong stream and format codes, absurd
  timestamps, random bytes) through ``Receiver.feed`` / ``feed_many``, ``codec.decode_end`` and
  the MQTT unbundling (``codec.unbundle`` / ``ungateway``, what ``edge.sources.mqtt`` calls).
  Pass: no exception escapes, every input is accounted for (released, duplicate or rejected
  with a reason), RSS after the warm-up grows by less than 16 MB.
- **soak**: N ANNE devices × H hours through a real mosquitto at --speed max (a gateway, 1-s
  bundles) with every simulator fault at once, a broker restart and an engine SIGKILL +
  ``--resume`` in the same run; compared with the same faulted night staged in-process. Pass:
  every device's epochs exactly once, each epoch's stage equal to the in-process run's, no
  frame lost beyond the fault plan's.
- **flood**: a gateway at 10 × real time (N devices, per-device bundles): peak RSS under a
  bound, frames lost (queue drops appear as lost) counted, the backlog drained within seconds
  of the gateway's end.
- **disk_full**: a 2 MB tmpfs (root) whose space runs out mid-night: one-line error, exit 2,
  the last checkpoint intact; ``--resume`` after space is freed gives the uninterrupted night.
- **file_deleted** / **file_truncated**: epochs.jsonl removed or cut to 0 under the engine:
  one-line error at the next checkpoint, exit 2.
- **clock_jump**: the host's wall clock jumps back an hour and forward a day during the night
  (an LD_PRELOAD shim over clock_gettime/time/gettimeofday, compiled here): the night equals
  the unjumped one (device time is what counts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread, before numpy loads

import numpy as np  # noqa: E402
from machine import machine_info  # noqa: E402

EPOCH_S = 30.0
SOAK_FAULTS = [
    "--loss", "0.005", "--duplicate", "0.005", "--reorder", "0.005", "--disconnect", "20/900",
    "--burst", "2", "--drift-ppm", "25", "--leads-off", "ecg:600-660", "--seed", "11",
]  # fmt: skip
RSS_BOUND_MB = 1024.0  # the flood's stated bound on the engine's peak RSS


def record(scenario: str, **kw) -> dict:
    base = dict.fromkeys(
        ("devices", "hours", "faults", "frames_sent", "frames_lost_unexpected", "epochs_expected",
         "epochs_written", "epochs_doubled", "peak_rss_mb")
    )  # fmt: skip
    return {"scenario": scenario, **base, **kw}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRss:
    """A child's peak RSS (VmHWM), read until it exits."""

    def __init__(self, pid: int) -> None:
        self.peak_kib = 0
        self._thread = threading.Thread(target=self._watch, args=(pid,), daemon=True)
        self._thread.start()

    def _watch(self, pid: int) -> None:
        status = Path(f"/proc/{pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            if "VmHWM" not in text:
                return
            self.peak_kib = max(self.peak_kib, int(text.split("VmHWM:")[1].split()[0]))
            time.sleep(0.2)

    @property
    def mb(self) -> float:
        self._thread.join(5)
        return self.peak_kib / 1024


# ---- fuzz --------------------------------------------------------------------------------


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    """One random defect of a frame."""
    b = bytearray(data)
    kind = int(rng.integers(12))
    if kind == 0 and b:  # bit flips
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncation
        return bytes(b[: int(rng.integers(len(b) + 1))])
    elif kind == 2:  # trailing garbage / a frame too long
        return bytes(b) + rng.bytes(int(rng.integers(1, 300)))
    elif kind == 3 and len(b) > 12:  # samples per axis that lie (0, huge)
        b[12] = int(rng.choice([0, 1, 255, int(rng.integers(256))]))
    elif kind == 4 and len(b) > 13:  # axis count that lies
        b[13] = int(rng.integers(256))
    elif kind == 5 and b:  # wrong stream code
        b[0] = int(rng.integers(256))
    elif kind == 6 and len(b) > 1:  # wrong format byte
        b[1] = int(rng.integers(256))
    elif kind == 7 and len(b) > 3:  # sequence numbers anywhere
        b[2:4] = rng.bytes(2)
    elif kind == 8 and len(b) > 11:  # absurd timestamps
        t = [0, 2**63 - 1, 2**64 - 1, int(rng.integers(2**62))][int(rng.integers(4))]
        b[4:12] = t.to_bytes(8, "little")
    elif kind == 9:  # random bytes
        return rng.bytes(int(rng.integers(0, 300)))
    elif kind == 10 and len(b) > 14:  # a delta width that lies
        b[14 + int(rng.integers(len(b) - 14))] = int(rng.integers(256))
    return bytes(b)


def fuzz(n: int, seed: int = 0) -> dict:
    """``n`` inputs (frames, end messages, bundles, gateway messages) through the receiver and
    the MQTT unbundling; see the module docstring."""
    from edge.devices import load_device
    from edge.devices.codec import (
        Rejected,
        bundle,
        decode_end,
        encode_end,
        gateway,
        unbundle,
        ungateway,
    )
    from edge.devices.receiver import Receiver
    from firmware_sim.device import VirtualDevice
    from firmware_sim.sources import synth_night

    logging.disable(logging.WARNING)  # a log line per rejection: counted here instead
    anne = load_device("anne")
    dev = VirtualDevice.from_recording(anne, synth_night("walch/46343", anne, 0, 120).recording)
    base = [f.data for f in dev.frames()]
    end = encode_end(dev.session_end())
    rng = np.random.default_rng(seed)
    rx = Receiver(anne)
    escaped: Counter = Counter()
    reasons: Counter = Counter()
    fed = 0  # frames handed to the receiver
    inputs = 0
    rss_start = None
    t0 = time.perf_counter()

    def frame() -> bytes:
        data = base[int(rng.integers(len(base)))]
        return data if rng.random() < 0.3 else _mutate(rng, data)

    def guard(call, *a):
        try:
            return call(*a)
        except Exception as exc:  # noqa: BLE001 (what the benchmark counts)
            escaped[type(exc).__name__] += 1
            return None

    while inputs < n:
        if rss_start is None and inputs >= n // 10:
            rss_start = rss_mb()  # after the warm-up: the receiver's state is grown
        kind = inputs % 10
        if kind < 5:  # single frames
            guard(rx.feed, frame())
            fed += 1
            inputs += 1
        elif kind < 7:  # a batch
            batch = [frame() for _ in range(int(rng.integers(1, 64)))]
            guard(rx.feed_many, batch)
            fed += len(batch)
            inputs += len(batch)
        elif kind == 7:  # end-of-session messages
            got = guard(decode_end, _mutate(rng, end) if rng.random() < 0.9 else end)
            if isinstance(got, Rejected):
                reasons[f"end: {got.reason}"] += 1
            inputs += 1
        elif kind == 8:  # a bundle, its bytes mutated
            data = bundle([base[int(rng.integers(len(base)))] for _ in range(8)])
            data = _mutate_container(rng, data)
            got = guard(unbundle, data)
            if got is not None:
                frames, defect = got
                if defect:
                    reasons["bundle: " + defect.split(" at ")[0].split(" of ")[0]] += 1
                guard(rx.feed_many, frames)
                fed += len(frames)
            inputs += 1
        else:  # a gateway message, its bytes mutated
            entries = [(f"d{k}", [base[int(rng.integers(len(base)))] for _ in range(4)])
                       for k in range(3)]  # fmt: skip
            got = guard(ungateway, _mutate_container(rng, gateway(entries)))
            if got is not None:
                parts, defect = got
                if defect:
                    reasons["gateway: " + defect.split(" at ")[0].split(" of ")[0]] += 1
                for _, payload in parts:
                    got = guard(unbundle, payload)
                    if got is not None:
                        guard(rx.feed_many, got[0])
                        fed += len(got[0])
            inputs += 1
    released = len(guard(rx.flush) or [])
    rss_end = rss_mb()
    counts = rx.counts()
    rejected = sum(v for k, v in counts.items() if k.startswith("rejected:"))
    accounted = counts.get("frames", 0) + counts.get("duplicates", 0) + rejected
    reasons.update({k.removeprefix("rejected:"): v for k, v in counts.items()
                    if k.startswith("rejected:")})  # fmt: skip
    growth = rss_end - (rss_start or rss_end)
    ok = not escaped and accounted == fed and growth < 16
    return record(
        "fuzz",
        devices=1,
        faults="bit flips, truncation, lying lengths and counts, wrong codes, absurd times",
        frames_sent=inputs,
        frames_lost_unexpected=fed - accounted,
        peak_rss_mb=round(rss_end, 1),
        outcome="pass"
        if ok
        else f"fail: escaped {dict(escaped)}, {fed - accounted} unaccounted, RSS +{growth:.1f} MB",
        frames_to_receiver=fed,
        released_at_flush=released,
        exceptions_escaped=sum(escaped.values()),
        rejected_by_reason=dict(reasons.most_common()),
        rss_growth_mb=round(growth, 2),
        seconds=round(time.perf_counter() - t0, 1),
    )


def _mutate_container(rng: np.random.Generator, data: bytes) -> bytes:
    """A defect of a bundle or gateway message: its lengths lie, it is cut, or bits flip."""
    b = bytearray(data)
    kind = int(rng.integers(5))
    if kind == 0 and b:  # a length byte or word that lies
        b[int(rng.integers(len(b)))] = int(rng.choice([0, 255, int(rng.integers(256))]))
    elif kind == 1:
        return bytes(b[: int(rng.integers(len(b) + 1))])
    elif kind == 2 and b:
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
    elif kind == 3 and len(b) > 6:  # a huge u32 length (gateway) or a non-UTF-8 id
        at = int(rng.integers(len(b) - 4))
        b[at : at + 4] = (2**32 - 1).to_bytes(4, "little")
    return bytes(b)


# ---- soak and flood: a gateway, mosquitto and the fleet engine ---------------------------


def _cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


IDLE_S = 15  # the engine's --idle-exit (--quick: 5)


def _start_engine(port: int, out: Path, *extra: str) -> subprocess.Popen:
    from tests.mosquitto import first_message

    engine = subprocess.Popen(
        _cmd(
            "edge.cli",
            "--source",
            "mqtt",
            "--device",
            "anne",
            "--device-id",
            "+",
            "--plain",
            "--broker",
            f"127.0.0.1:{port}",
            "--out",
            str(out),
            "--idle-exit",
            str(IDLE_S),
            "-v",
            *extra,
        ),
        stdout=open(out.parent / f"engine{len(list(out.parent.glob('engine*.out')))}.out", "w"),
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )  # fmt: skip  (its output goes to WORK/engineN.out)
    deadline = time.monotonic() + 60  # a killed engine's will left "offline" retained
    while first_message(port, "sleepedge/v1/_fleet/status/engine", 60) != "online":
        if time.monotonic() > deadline or engine.poll() is not None:
            engine.kill()
            engine.wait()
            raise RuntimeError("the fleet engine did not come online (see its engine*.out)")
        time.sleep(0.1)
    return engine


def _gateway(port: int, devices: int, seconds: float, prefix: str, speed: str, *faults: str):
    return subprocess.Popen(
        _cmd("firmware_sim.cli", "--device", "anne", "--transport", "mqtt", "--broker",
             f"127.0.0.1:{port}", "--devices", str(devices), "--device-id", prefix,
             "--duration", f"{seconds:g}", "--speed", speed, "--bundle", "1", "--stagger", "0",
             *faults),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip


def _nights(out: Path) -> dict[str, list[dict]]:
    """Every device folder's epochs (its epochs.jsonl), by device id."""
    nights = {}
    for d in sorted(p for p in out.iterdir() if p.is_dir()):
        path = d / "epochs.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        nights[d.name] = [json.loads(x) for x in lines]
    return nights


def _reference(seconds: float, faults: list[str], out: Path) -> tuple[list[dict], dict]:
    """The same faulted night staged in-process (``edge-run --source sim``)."""
    run = subprocess.run(
        _cmd("edge.cli", "--source", "sim", "--device", "anne", "--duration", f"{seconds:g}",
             "--plain", "--out", str(out), "--checkpoint-every", "0", *faults),
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    if run.returncode:
        raise RuntimeError(f"reference run failed: {run.stderr.strip()}")
    lines = (out / "epochs.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines], json.loads((out / "run.json").read_text())


def _compare(nights: dict[str, list[dict]], ref: list[dict], n_epochs: int) -> dict:
    doubled = sum(len(r) - len({e["index"] for e in r}) for r in nights.values())
    missing = sum(n_epochs - len({e["index"] for e in r} & set(range(n_epochs)))
                  for r in nights.values())  # fmt: skip
    ref_stage = {e["index"]: e["stage"] for e in ref}
    differ = sum(1 for r in nights.values() for e in r if ref_stage.get(e["index"]) != e["stage"])
    return {"doubled": doubled, "missing": missing, "stage_differs": differ}


def _device_counts(out: Path) -> dict[str, dict]:
    counts = {}
    for d in out.iterdir():
        if (d / "run.json").exists():
            counts[d.name] = json.loads((d / "run.json").read_text())["counts"]
    return counts


def soak(devices: int, hours: float, work: Path, restart: bool = True, kill: bool = True) -> dict:
    from edge.devices import load_device
    from firmware_sim.cli import build_parser, faulted_deliveries
    from firmware_sim.sources import synth_night
    from tests.mosquitto import Broker

    seconds = hours * 3600
    anne = load_device("anne")
    args = build_parser().parse_args(["--device", "anne", *SOAK_FAULTS])
    night = synth_night("walch/46343", anne, 0, seconds).recording
    _, deliveries, plan_log = faulted_deliveries(anne, night, args)
    injected_lost = sum(plan_log.lost.values())
    ref, _ = _reference(seconds, SOAK_FAULTS, work / "reference")
    n_epochs = len(ref)
    (work / "broker").mkdir()
    broker = Broker(work / "broker").start()
    out = work / "fleet"
    events = []
    peaks = []
    t0 = time.monotonic()
    try:
        engine = _start_engine(broker.port, out, "--checkpoint-every", "10")
        peaks.append(PeakRss(engine.pid))
        gw = _gateway(broker.port, devices, seconds, "soak", "max", *SOAK_FAULTS)
        total = n_epochs * devices  # the faults come at a share of the epochs written
        if restart and _wait_written(out, 0.25 * total, engine):
            broker.restart()
            events.append(
                f"broker restarted at {time.monotonic() - t0:.1f} s (gateway "
                f"{'done' if gw.poll() is not None else 'publishing'}, {_written(out)} epochs)"
            )
        if kill and _wait_written(out, 0.5 * total, engine):
            engine.send_signal(signal.SIGKILL)
            engine.wait()
            events.append(
                f"engine SIGKILLed at {time.monotonic() - t0:.1f} s ({_written(out)} epochs)"
            )
            engine = _start_engine(broker.port, out, "--checkpoint-every", "10", "--resume")
            peaks.append(PeakRss(engine.pid))
        _, gw_err = gw.communicate()
        if gw.returncode:
            raise RuntimeError(f"gateway failed: {gw_err.strip()[-300:]}")
        source_stats = _end_engine(engine, out, devices)
    finally:
        broker.stop()
    wall = time.monotonic() - t0
    nights = _nights(out)
    cmp = _compare(nights, ref, n_epochs)
    counts = _device_counts(out)
    lost = sum(c.get("lost", 0) for c in counts.values())
    unexpected = lost - injected_lost * len(counts)
    written = sum(len(r) for r in nights.values())
    ok = (len(nights) == devices and cmp["doubled"] == 0 and cmp["missing"] == 0
          and cmp["stage_differs"] == 0 and unexpected == 0)  # fmt: skip
    return record(
        "soak",
        devices=devices,
        hours=hours,
        faults=" ".join(SOAK_FAULTS)
        + ", broker restart" * restart
        + ", engine SIGKILL + --resume" * kill,
        frames_sent=len(deliveries) * devices,
        frames_lost_unexpected=unexpected,
        epochs_expected=n_epochs * devices,
        epochs_written=written,
        epochs_doubled=cmp["doubled"],
        peak_rss_mb=round(max(p.mb for p in peaks), 1),
        outcome="pass"
        if ok
        else f"fail: {cmp['missing']} epochs missing, {cmp['stage_differs']}"
        f" stages differ from the in-process run, {unexpected} frames lost beyond the plan",
        epochs_stage_differs=cmp["stage_differs"],
        engine_queue_dropped=source_stats.get("dropped_queue_full"),
        engine_reconnects=source_stats.get("reconnects"),
        epochs_missing=cmp["missing"],
        events=events,
        seconds=round(wall, 1),
    )


def _written(out: Path) -> int:
    """Epoch lines written so far over every device folder."""
    n = 0
    for path in out.glob("*/epochs.jsonl"):
        with contextlib.suppress(OSError):
            n += path.read_bytes().count(b"\n")
    return n


def _wait_written(out: Path, n: float, engine: subprocess.Popen) -> bool:
    """Wait until ``n`` epochs are written; False if the engine ended first."""
    while _written(out) < n:
        if engine.poll() is not None:
            return False
        time.sleep(0.1)
    return True


def _end_engine(engine: subprocess.Popen, out: Path, devices: int) -> dict[str, int]:
    """The engine ends by itself ``IDLE_S`` after the last frame (--idle-exit); a resumed
    engine that heard no frame has no idle clock: once every device's night is complete or
    nothing moved for ``IDLE_S`` + 5 s, it is stopped as an operator would (SIGTERM finishes
    every open night)."""
    last, still = _written(out), time.monotonic()
    while engine.poll() is None:
        done = sum((out / d / "run.json").exists() for d in _ids("soak", devices))
        now = _written(out)
        if now != last:
            last, still = now, time.monotonic()
        if done == devices or time.monotonic() - still > IDLE_S + 5:
            time.sleep(1.0)
            if engine.poll() is None:
                engine.send_signal(signal.SIGTERM)
            break
        time.sleep(0.2)
    engine.wait()
    log = sorted(out.parent.glob("engine*.out"))[-1].read_text()
    if engine.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f"engine failed ({engine.returncode}): {log.strip()[-300:]}")
    return _source_stats(log)


def _source_stats(text: str) -> dict[str, int]:
    """The fleet engine's last ``edge-run: source k v, ...`` line as numbers."""
    lines = [x for x in text.splitlines() if x.startswith("edge-run: source ")]
    if not lines:
        return {}
    pairs = (p.rsplit(" ", 1) for p in lines[-1].removeprefix("edge-run: source ").split(", "))
    return {k: int(v.replace(",", "")) for k, v in pairs}


def flood(devices: int, seconds: float, work: Path, speed: float = 10.0) -> dict:
    from tests.mosquitto import Broker

    (work / "broker").mkdir()
    broker = Broker(work / "broker").start()
    out = work / "fleet"
    try:
        engine = _start_engine(broker.port, out, "--checkpoint-every", "0")
        peak = PeakRss(engine.pid)
        gw = _gateway(broker.port, devices, seconds, "flood", f"{speed:g}")
        gw_out, gw_err = gw.communicate()
        gw_end = time.monotonic()
        if gw.returncode:
            raise RuntimeError(f"gateway failed: {gw_err.strip()[-300:]}")
        # the engine's last device finishes after the backlog; it then idles 15 s and exits
        while not all((out / d / "run.json").exists() for d in _ids("flood", devices)):
            if engine.poll() is not None:
                break
            time.sleep(0.1)
        drain_s = time.monotonic() - gw_end
        engine.communicate()
    finally:
        broker.stop()
    nights = _nights(out)
    n_epochs = math.ceil(round(seconds / EPOCH_S, 6))
    doubled = sum(len(r) - len({e["index"] for e in r}) for r in nights.values())
    counts = _device_counts(out)
    lost = sum(c.get("lost", 0) for c in counts.values())
    frames = sum(c.get("frames", 0) for c in counts.values())
    written = sum(len(r) for r in nights.values())
    peak_mb = peak.mb
    ok = peak_mb < RSS_BOUND_MB and doubled == 0 and written == n_epochs * devices and drain_s < 10
    return record(
        "flood",
        devices=devices,
        hours=round(seconds / 3600, 3),
        faults=f"{speed:g} x the expected rate for {seconds / speed:.0f} s",
        frames_sent=frames + lost,
        frames_lost_unexpected=lost,
        epochs_expected=n_epochs * devices,
        epochs_written=written,
        epochs_doubled=doubled,
        peak_rss_mb=round(peak_mb, 1),
        outcome="pass" if ok else "fail",
        rss_bound_mb=RSS_BOUND_MB,
        drain_s=round(drain_s, 2),
    )


def _ids(prefix: str, n: int) -> list[str]:
    from firmware_sim.gateway import device_ids

    return device_ids(prefix, n)


# ---- resource faults ----------------------------------------------------------------------


def _edge(out: Path, seconds: float, *extra: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        _cmd("edge.cli", "--source", "sim", "--device", "anne", "--duration", f"{seconds:g}",
             "--plain", "--out", str(out), "--checkpoint-every", "5", *extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate()
    return proc.returncode, err.strip()


def disk_full(seconds: float, work: Path) -> dict:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return record("disk_full", outcome="skipped: needs root to mount a tmpfs")
    ref, _ = _reference(seconds, [], work / "reference")
    ref_lines = (work / "reference" / "epochs.jsonl").read_text()
    mnt = work / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    try:
        st = os.statvfs(mnt)
        filler = mnt / "filler"
        filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 120_000))  # ~20 min of epochs fit
        out = mnt / "out"
        rc, err = _finish(_edge(out, seconds))
        ck_ok = (out / "checkpoint.npz").exists()
        ck_intact = False
        if ck_ok:
            from edge import checkpoint

            with contextlib.suppress(checkpoint.CheckpointError):
                checkpoint.load(out / "checkpoint.npz")
                ck_intact = True
        filler.unlink()
        rc2, err2 = _finish(_edge(out, seconds, "--resume"))
        got = (out / "epochs.jsonl").read_text() if (out / "epochs.jsonl").exists() else ""
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    lines = got.splitlines()
    one_line = rc == 2 and len(err.splitlines()) == 1 and "No space left" in err
    ok = one_line and ck_intact and rc2 == 0 and got == ref_lines
    return record(
        "disk_full",
        devices=1,
        hours=round(seconds / 3600, 3),
        faults="output tmpfs (2 MB) full mid-night, space freed, --resume",
        epochs_expected=len(ref),
        epochs_written=len(lines),
        epochs_doubled=len(lines) - len({json.loads(x)["index"] for x in lines}),
        outcome="pass"
        if ok
        else f"fail: rc {rc} {err!r}, checkpoint intact {ck_intact}, "
        f"resume rc {rc2} {err2[-200:]!r}, equal {got == ref_lines}",
        error_line=err,
    )


def file_changed(seconds: float, work: Path, how: str) -> dict:
    """epochs.jsonl deleted (``how="deleted"``) or cut to 0 bytes under a running engine."""
    out = work / f"file_{how}"
    proc = _edge(out, seconds, "--speed", "400")
    path = out / "epochs.jsonl"
    deadline = time.monotonic() + 120
    while (not path.exists() or path.stat().st_size < 20_000) and time.monotonic() < deadline:
        time.sleep(0.05)  # ~50 epochs written
    if how == "deleted":
        path.unlink()
    else:
        os.truncate(path, 0)
    rc, err = _finish(proc)
    rc2, err2 = _finish(_edge(out, seconds, "--resume"))
    ok = rc == 2 and len(err.splitlines()) == 1 and "under the engine" in err and rc2 == 2
    return record(
        f"file_{how}",
        devices=1,
        hours=round(seconds / 3600, 3),
        faults=f"epochs.jsonl {how} under the engine",
        outcome="pass" if ok else f"fail: rc {rc} {err[-300:]!r}; resume rc {rc2}",
        error_line=err,
        resume_line=err2,
    )


SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
/* CLOCK_REALTIME jumps back an hour after 2 s of the process, forward a day after 4 s. */
static struct timespec start;
static long offset(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!start.tv_sec) start = now;
    long up = now.tv_sec - start.tv_sec;
    return up >= 4 ? 86400 : up >= 2 ? -3600 : 0;
}
int clock_gettime(clockid_t id, struct timespec *tp) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = dlsym(RTLD_NEXT, "clock_gettime");
    int r = real(id, tp);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) tp->tv_sec += offset();
    return r;
}
int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    int r = clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) { tv->tv_sec = ts.tv_sec; tv->tv_usec = ts.tv_nsec / 1000; }
    return r;
}
time_t time(time_t *t) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (t) *t = ts.tv_sec;
    return ts.tv_sec;
}
"""


def clock_jump(seconds: float, work: Path) -> dict:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return record("clock_jump", outcome="skipped: no C compiler for the clock shim")
    (work / "shim.c").write_text(SHIM)
    lib = work / "clockshim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(work / "shim.c"), "-ldl"],
                   check=True)  # fmt: skip
    probe = subprocess.run(
        [sys.executable, "-c", "import time; a=time.time(); time.sleep(2.2); print(time.time()-a)"],
        env={**os.environ, "LD_PRELOAD": str(lib)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    jumped = float(probe.stdout)
    ref_out, out = work / "clock_ref", work / "clock_jump"
    rc_ref, _ = _finish(_edge(ref_out, seconds, "--speed", "300"))
    env = {**os.environ, "LD_PRELOAD": str(lib)}
    rc, err = _finish(_edge(out, seconds, "--speed", "300", env=env))
    a = (ref_out / "epochs.jsonl").read_text().splitlines()
    b = (out / "epochs.jsonl").read_text().splitlines() if rc == 0 else []
    ok = rc_ref == 0 and rc == 0 and a == b and jumped < -3000
    return record(
        "clock_jump",
        devices=1,
        hours=round(seconds / 3600, 3),
        faults="wall clock -1 h after 2 s, +1 day after 4 s (replay at 300 x real time)",
        epochs_expected=len(a),
        epochs_written=len(b),
        epochs_doubled=len(b) - len({json.loads(x)["index"] for x in b}),
        outcome="pass" if ok else f"fail: rc {rc} {err[-200:]!r}, equal {a == b}, jump {jumped}",
        wall_clock_jump_seen_s=round(jumped, 1),
    )


# ---- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CI smoke run (< 60 s)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--scenarios", default="fuzz,soak,flood,disk_full,file_deleted,"
                   "file_truncated,clock_jump")  # fmt: skip
    p.add_argument("--fuzz", type=int, default=1_000_000, help="fuzz inputs")
    p.add_argument("--devices", type=int, default=200, help="soak devices")
    p.add_argument("--hours", type=float, default=8.0, help="soak hours per device")
    p.add_argument("--no-kill", action="store_true", help="soak: the broker restart only")
    p.add_argument("--keep", action="store_true", help="keep the work folders (printed)")
    p.add_argument("--flood-devices", type=int, default=20)
    p.add_argument("--flood-seconds", type=float, default=6000.0, help="device seconds at 10x")
    args = p.parse_args(argv)
    if args.quick:
        global IDLE_S
        IDLE_S = 5
        args.fuzz, args.devices, args.hours = 20_000, 2, 0.1
        args.no_kill = True  # a 6-min night is consumed before a kill could land mid-night
        args.flood_devices, args.flood_seconds = 2, 120.0
        if args.scenarios == p.get_default("scenarios"):
            args.scenarios = "fuzz,soak,file_deleted"
    records = []
    keep = tempfile.mkdtemp(prefix="sleepedge-reliability-") if args.keep else None
    with (
        contextlib.nullcontext(keep)
        if keep
        else tempfile.TemporaryDirectory(prefix="sleepedge-reliability-") as tmp
    ):
        for name in args.scenarios.split(","):
            work = Path(tmp) / name
            work.mkdir()
            t0 = time.perf_counter()
            if name == "fuzz":
                r = fuzz(args.fuzz)
            elif name == "soak":
                r = soak(args.devices, args.hours, work, kill=not args.no_kill)
            elif name == "flood":
                r = flood(args.flood_devices, args.flood_seconds, work)
            elif name == "disk_full":
                r = disk_full(1800 if args.quick else 3600, work)
            elif name in ("file_deleted", "file_truncated"):
                r = file_changed(1800 if args.quick else 3600, work, name.split("_")[1])
            elif name == "clock_jump":
                r = clock_jump(1800 if args.quick else 3600, work)
            else:
                p.error(f"unknown scenario {name!r}")
            r.setdefault("seconds", round(time.perf_counter() - t0, 1))
            records.append(r)
            if not args.json:
                print(f"{name}: {r['outcome']} ({r['seconds']} s)", file=sys.stderr, flush=True)
    if keep:
        print(f"reliability: work folders kept in {keep}", file=sys.stderr)
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        for r in records:
            print(json.dumps(r))
        print(json.dumps({"machine": machine_info()}))
    return 0 if all(r["outcome"] in ("pass",) or r["outcome"].startswith("skipped")
                    for r in records) else 1  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
