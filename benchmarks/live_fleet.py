"""(b) of the throughput benchmark: N live ANNE devices into one edge-run process.

For each N: a fresh mosquitto on loopback; ``edge-run --source mqtt --device anne --device-id +
--publish`` pinned to core 0; the simulator's gateway (``firmware-sim --devices N --speed 1``,
starts spread over one epoch, as wearables switched on at different times) and this process,
which subscribes to every stage topic, on core 1 with the broker. An epoch's delay is the time
from its last sample (the gateway's start + the device's offset + the epoch's end) to its
stage message arriving here: frame filling, the broker twice, decoding, operators, the batched
model step and publishing all count. Each device's final epoch (staged at the end-of-night
flush) is left out. N is held while the p99 delay stays ≤ 1 s and nothing is lost. The
engine's CPU share is read from /proc while the devices are live (the reports written at the
end are not in it), its peak RSS (VmHWM) until it exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EPOCH_S = 30.0


def _pinned(core: int) -> list[str]:
    ncpu = os.cpu_count() or 1
    return ["taskset", "-c", str(core % ncpu)] if ncpu > 1 else []


class StageListener:
    """Arrival times of every stage message, by (device id, epoch index)."""

    def __init__(self, port: int) -> None:
        from edge.net.mqtt import BrokerAddress, connect

        self.arrived: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

        def subscribe(client) -> None:
            client.on_message = self._on_message
            client.subscribe("sleepedge/v1/+/stage", qos=1)

        self.client = connect(BrokerAddress("127.0.0.1", port), "bench-listener",
                              on_connected=subscribe)  # fmt: skip

    def _on_message(self, client, userdata, msg) -> None:
        now = time.time()
        index = json.loads(msg.payload)["index"]
        with self._lock:
            self.arrived[(msg.topic.split("/")[2], index)] = now

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def level(
    n: int,
    seconds: float,
    speed: float = 1.0,
    stagger_s: float = EPOCH_S,
    bundle_s: float = 0.25,
    one_message: bool = True,
) -> dict:
    """One N: run the fleet, return the delays and the engine's costs."""
    from firmware_sim.gateway import device_ids, start_offsets
    from tests.mosquitto import Broker

    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp)).start()
        if len(_pinned(1)):
            subprocess.run(["taskset", "-p", "-c", "1", str(broker.proc.pid)],
                           capture_output=True, check=False)  # fmt: skip
        log = open(Path(tmp) / "edge.log", "w+")  # noqa: SIM115
        edge = subprocess.Popen(
            [*_pinned(0), sys.executable, "-m", "edge.cli", "--source", "mqtt", "--device",
             "anne", "--device-id", "+", "--broker", f"127.0.0.1:{broker.port}", "--out",
             f"{tmp}/out", "--plain", "--publish", "--idle-exit", "5"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        listener = StageListener(broker.port)
        _wait_engine(broker.port)
        gw = subprocess.Popen(
            [*_pinned(1), sys.executable, "-m", "firmware_sim.cli", "--device", "anne",
             "--transport", "mqtt", "--broker", f"127.0.0.1:{broker.port}", "--device-id",
             "dev", "--devices", str(n), "--stagger", str(stagger_s), "--duration",
             str(seconds), "--speed", str(speed), "--bundle", str(bundle_s),
             *(["--one-message"] if one_message and bundle_s > 0 else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )  # fmt: skip
        first = gw.stdout.readline()  # "gateway started at T": the devices go live now
        cpu0, wall0 = _cpu_seconds(edge.pid), time.monotonic()
        threads0 = _thread_cpu_seconds(edge.pid)
        rest, gw_err = gw.communicate()
        gw_out = first + rest
        cpu_play = _cpu_seconds(edge.pid) - cpu0  # while the devices were live
        threads = _thread_cpu_seconds(edge.pid)
        threads = {k: v - threads0.get(k, 0.0) for k, v in threads.items()}
        wall_play = time.monotonic() - wall0
        peak_kib = _wait_peak_rss(edge.pid)
        _, status, usage = os.wait4(edge.pid, 0)
        edge.returncode = os.waitstatus_to_exitcode(status)
        time.sleep(0.5)  # the last stage messages
        listener.close()
        broker.stop()
        log.seek(0)
        edge_out = log.read()
        log.close()
    if gw.returncode != 0 or edge.returncode != 0:
        raise RuntimeError(f"fleet level {n} failed:\n{gw_out}{gw_err}\n{edge_out}")
    t0 = float(gw_out.split("gateway started at ")[1].split()[0])
    late = float(gw_out.split("at most ")[1].split(" s late")[0])
    offsets = start_offsets(n, stagger_s)
    epochs = int(round(seconds / EPOCH_S))
    delays, missing = [], 0
    for k, d in enumerate(device_ids("dev", n)):
        for i in range(epochs - 1):  # the final epoch waits for the end-of-night flush
            due = t0 + (offsets[k] + (i + 1) * EPOCH_S) / speed
            got = listener.arrived.get((d, i))
            if got is None:
                missing += 1
            else:
                delays.append(got - due)
    delays_arr = np.array(delays) if delays else np.array([np.inf])
    batch = (
        edge_out.split(" calls of ")[1].split(" devices")[0] if " calls of " in edge_out else "nan"
    )
    return {
        "devices": n,
        "seconds": seconds,
        "speed": speed,
        "epochs_timed": len(delays),
        "epochs_missing": missing,
        "delay_p50_s": float(np.percentile(delays_arr, 50)),
        "delay_p99_s": float(np.percentile(delays_arr, 99)),
        "delay_max_s": float(delays_arr.max()),
        "engine_cpu_s": usage.ru_utime + usage.ru_stime,
        "engine_cpu_share_live": cpu_play / wall_play,
        "engine_ms_per_device_second": cpu_play / (n * seconds) * 1e3,
        "engine_peak_rss_mib": peak_kib / 1024,
        "engine_cpu_share_by_thread": {k: v / wall_play for k, v in threads.items() if v > 0},
        "mean_batch": float(batch),
        "gateway_late_s": late,
        "bundle_s": bundle_s,
        "one_message": one_message and bundle_s > 0,
        "messages": int(gw_out.split(" devices in ")[1].split(" messages")[0].replace(",", "")),
        "handovers": _count(edge_out, " hand-overs"),
        "held": bool(missing == 0 and np.percentile(delays_arr, 99) <= 1.0),
    }


def _count(text: str, label: str) -> int:
    """The number printed just before ``label`` in edge-run's summary (-1 if absent)."""
    if label not in text:
        return -1
    return int(text.split(label)[0].rsplit(" ", 1)[1].replace(",", ""))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of the process's main thread (decoding, operators, model) and of its other
    threads together (paho's network thread, the publisher's, the report writer)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = "main" if task.name == str(pid) else "other threads"
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[name] = out.get(name, 0.0) + cpu
    return out


def _wait_peak_rss(pid: int) -> int:
    """The process's peak RSS (VmHWM, KiB) read until it exits. ``wait4``'s ru_maxrss would
    count the parent's pages the child had between fork and exec."""
    peak = 0
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except OSError:
            return peak
        if "VmHWM" not in text:  # a zombie: exited, not yet waited for
            return peak
        peak = max(peak, int(text.split("VmHWM:")[1].split()[0]))
        time.sleep(0.2)


def _wait_engine(port: int) -> None:
    from tests.mosquitto import first_message

    seen = first_message(port, "sleepedge/v1/_fleet/status/engine")
    if seen != "online":
        raise RuntimeError(f"the fleet engine did not come online (status {seen!r})")


def ladder(
    counts: list[int],
    seconds: float,
    speed: float = 1.0,
    stagger_s: float = EPOCH_S,
    echo=print,
    bundle_s: float = 0.25,
    one_message: bool = True,
) -> dict:
    """Raise N along ``counts`` until a level is not held; the largest N held."""
    levels = []
    for n in counts:
        r = level(n, seconds, speed, stagger_s, bundle_s, one_message)
        levels.append(r)
        echo(
            f"(b) {n:5d} live devices: p50 {r['delay_p50_s']:.2f} s, p99 {r['delay_p99_s']:.2f} s"
            f", max {r['delay_max_s']:.2f} s over {r['epochs_timed']} epochs, missing "
            f"{r['epochs_missing']}; engine {100 * r['engine_cpu_share_live']:.0f} % of a core "
            f"({r['engine_ms_per_device_second']:.2f} ms per device-second), "
            f"peak RSS {r['engine_peak_rss_mib']:.0f} MiB, mean batch {r['mean_batch']:.1f}; "
            + ", ".join(f"{k} {100 * v:.0f} %" for k, v in r["engine_cpu_share_by_thread"].items())
            + "; "
            f"{r['messages']:,} messages, {r['handovers']:,} hand-overs; "
            f"gateway at most {r['gateway_late_s']:.2f} s late"
            + ("" if r["held"] else "  <- not held")
        )
        if not r["held"]:
            break
    held = [r["devices"] for r in levels if r["held"]]
    return {
        "levels": levels,
        "largest_held": max(held) if held else 0,
        "bundle_s": bundle_s,
        "one_message": one_message and bundle_s > 0,
    }
