"""Virtual ANNE → MQTT (real mosquitto on loopback, QoS 1) → paho subscriber → receiver."""

import threading
import time

import numpy as np

from edge.devices import load_device
from edge.devices.codec import is_end
from edge.devices.receiver import Receiver
from edge.net.mqtt import BrokerAddress, connect
from firmware_sim.device import VirtualDevice
from firmware_sim.faults import FaultPlan, apply_faults
from firmware_sim.player import play
from firmware_sim.resynth import walch_night
from firmware_sim.transports.mqtt import MqttPublisher

ANNE = load_device("anne")


class Collector:
    """A paho subscriber at QoS 1 that keeps every payload in arrival order."""

    def __init__(self, broker, topic):
        self.payloads, self.lock, self.status = [], threading.Lock(), []
        self.client = connect(broker, "collector", clean_start=True)
        self.client.on_message = self._on_message
        self.client.subscribe(topic, qos=1)
        self.client.subscribe("sleepedge/v1/+/status", qos=1)
        time.sleep(0.2)  # SUBACK before the publisher starts

    def _on_message(self, client, userdata, msg):
        with self.lock:
            (self.status if msg.topic.endswith("/status") else self.payloads).append(msg.payload)

    def wait_for(self, n, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.payloads) >= n:
                    return
            time.sleep(0.02)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def run_through_broker(broker, plan, seconds=120.0):
    rec = walch_night("46343", max_epochs=int(-(-seconds // 30))).recording  # bundled night
    data = rec.signals
    frames = list(VirtualDevice.from_recording(ANNE, rec).frames())
    deliveries, truth = apply_faults(frames, plan)
    addr = BrokerAddress("127.0.0.1", broker.port)
    sub = Collector(addr, "sleepedge/v1/dev1/raw/#")
    pub = MqttPublisher(ANNE, addr, "dev1")
    sent = play(deliveries, pub.send)  # as fast as possible: no sleeping
    pub.close()
    sub.wait_for(sent)
    sub.close()
    rx = Receiver(ANNE)
    released = [r for p in sub.payloads for r in rx.feed(p)] + rx.flush()
    return frames, deliveries, truth, sub, rx, released, data


def test_every_frame_arrives_at_qos1(broker):
    frames, deliveries, _, sub, rx, released, data = run_through_broker(broker, FaultPlan())
    assert len(sub.payloads) == len(frames)
    assert sub.payloads == [f.data for f in frames]  # one connection: order kept too
    c = rx.counts()
    assert c["frames"] == len(frames) and c["lost"] == 0 and not rx.rejected
    ecg = np.concatenate([r.frame.samples for r in released if r.frame.stream == "ecg"], axis=1)
    np.testing.assert_allclose(ecg, data["ecg"], atol=0.0005 + 1e-12)
    assert sub.status[0] == b"online" and sub.status[-1] == b"offline"


def test_fault_counts_survive_the_broker(broker):
    plan = FaultPlan(
        seed=11, loss=0.02, duplicate=0.02, reorder=0.02, disconnect_s=5.0, disconnect_every_s=40.0
    )
    frames, deliveries, truth, sub, rx, released, _ = run_through_broker(broker, plan)
    assert len(sub.payloads) == len(deliveries)  # the broker itself lost nothing
    for name, tracker in rx.trackers.items():
        sent = [f.seq for f in frames if f.stream == name]
        got = [d.frame.seq for d in deliveries if d.frame.stream == name]
        unseeable = sum(1 for s in sent if s > max(got) or s < min(got))
        assert tracker.stats.lost == truth.lost[name] - unseeable, name
        assert tracker.stats.duplicates == truth.duplicated[name], name
        assert tracker.stats.reordered == truth.reordered[name], name
    assert sum(truth.lost_in_disconnect.values()) > 0


def test_player_keeps_an_absolute_schedule():
    from firmware_sim.device import SentFrame
    from firmware_sim.faults import Delivery

    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    ds = [Delivery(t, SentFrame(t, "ecg", i, b"")) for i, t in enumerate([0.0, 1.0, 1.0, 3.0])]
    assert play(ds, lambda f: None, speed=2.0, sleep=sleep, clock=lambda: now[0]) == 4
    assert slept == [0.5, 1.0]  # t/speed from the start; no sleep for equal times
    assert play(ds, lambda f: None, speed=None, sleep=sleep, clock=lambda: now[0]) == 4
    assert len(slept) == 2  # "max" never sleeps


def test_firmware_sim_cli_publishes_the_seeded_faulty_stream(broker):
    import subprocess
    import sys

    from firmware_sim.cli import _prepare, build_parser

    args = [
        "--device",
        "anne",
        "--transport",
        "mqtt",
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--duration",
        "60",
        "--speed",
        "max",
        "--device-id",
        "cli1",
        "--seed",
        "7",
        "--loss",
        "0.05",
        "--duplicate",
        "0.02",
        "--reorder",
        "0.02",
        "--drift-ppm",
        "40",
        "--leads-off",
        "ecg:10-20",
    ]
    _, _, deliveries, truth = _prepare(build_parser().parse_args(args))
    sub = Collector(BrokerAddress("127.0.0.1", broker.port), "sleepedge/v1/cli1/raw/#")
    out = subprocess.run(
        [sys.executable, "-m", "firmware_sim.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"published {len(deliveries):,} frames" in out.stdout
    sub.wait_for(len(deliveries))
    sub.close()
    frames = [p for p in sub.payloads if not is_end(p)]  # raw/end: the end of session
    assert frames == [d.frame.data for d in deliveries]  # reproducible from the seed
    rx = Receiver(ANNE)
    for p in frames:
        rx.feed(p)
    rx.flush()
    assert rx.counts()["duplicates"] == sum(truth.duplicated.values())
    off = {d.frame.seq for d in deliveries if d.frame.stream == "ecg" and d.frame.data[1] & 0x20}
    assert rx.trackers["ecg"].stats.sensor_off == len(off) > 0.9 * 10 * 512 / 64
