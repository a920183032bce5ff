"""MQTT secured as a deployment should be, against a real mosquitto: TLS with a certificate
authority made here, a password per client, and an ACL that lets each device write only under
its own id and read nothing, the engine read raw topics and write stage topics.

A night over mqtts with password and ACL equals the in-process run; the broker refuses a device
that publishes as another (PUBACK reason 0x87, MQTT 5) and the engine never sees those frames;
a wrong CA, host name or password is refused with one line and exit status 2."""

import json
import subprocess
import sys
import threading
import time

import pytest

from edge.devices import load_device
from edge.net.mqtt import BrokerAddress, connect
from firmware_sim.device import VirtualDevice
from firmware_sim.sources import synth_night
from tests.commands import run
from tests.mosquitto import Broker, first_message, make_pki

PSG = load_device("psg")
NOT_AUTHORIZED = 0x87
USERS = {"engine": "engine-pw", "monitor": "monitor-pw", "dev9": "dev9-pw", "devA": "devA-pw"}
USERS |= {"devB": "devB-pw", "gateway": "gateway-pw"}
# what README's "Securing the MQTT broker" documents for production
ACL = """\
# every device: its own frames, bundles and status, nothing else; it reads nothing
pattern write sleepedge/v1/%u/raw/+
pattern write sleepedge/v1/%u/bundle
pattern write sleepedge/v1/%u/status

user gateway
topic write sleepedge/v1/+/raw/+
topic write sleepedge/v1/+/bundle
topic write sleepedge/v1/+/gateway
topic write sleepedge/v1/+/status

user engine
topic read sleepedge/v1/+/raw/+
topic read sleepedge/v1/+/bundle
topic read sleepedge/v1/+/gateway
topic read sleepedge/v1/+/status
topic write sleepedge/v1/+/stage
topic write sleepedge/v1/+/status/engine

user monitor
topic read sleepedge/v1/#
"""


@pytest.fixture
def secure(tmp_path):
    """A mosquitto on TLS only (certificate for 'localhost'), passwords and the ACL."""
    pki = make_pki(tmp_path / "pki")
    b = Broker(tmp_path, tls=pki, users=USERS, acl=ACL).start()
    b.pki = pki
    yield b
    b.stop()


def url(broker, user: str, host: str = "localhost") -> str:
    return f"mqtts://{user}:{USERS[user]}@{host}:{broker.port}"


def monitor(broker) -> tuple:
    """mosquitto_sub options for the read-only monitor user over TLS."""
    ca = str(broker.pki.ca)
    return ("-h", "localhost", "--cafile", ca, "-u", "monitor", "-P", USERS["monitor"])


def start_engine(broker, device_id: str, out, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "edge.cli", "--source", "mqtt", "--device", "psg", "--plain",
           "--broker", url(broker, "engine"), "--ca-file", str(broker.pki.ca),
           "--device-id", device_id, "--out", str(out), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = first_message(
        broker.port, f"sleepedge/v1/{device_id}/status/engine", extra=monitor(broker)
    )
    assert seen == "online", (seen, proc.poll(), proc.poll() is not None and proc.stderr.read())
    return proc


def sim(broker, device_id: str, *extra) -> subprocess.CompletedProcess:
    return run(
        "firmware_sim.cli", "--device", "psg", "--transport", "mqtt", "--device-id", device_id,
        "--broker", url(broker, device_id), "--ca-file", str(broker.pki.ca), *extra, timeout=300,
    )  # fmt: skip


def test_a_night_over_mqtts_with_passwords_and_acl_equals_the_in_process_run(secure, tmp_path):
    ref = run("edge.cli", "--source", "sim", "--duration", "600", "--plain", "--out",
              str(tmp_path / "reference"), timeout=300)  # fmt: skip
    assert ref.returncode == 0, ref.stderr
    stages = subprocess.Popen(  # the engine may write stage topics; the monitor reads them
        ["mosquitto_sub", "-p", str(secure.port), *monitor(secure), "-q", "1", "-C", "20",
         "-W", "200", "-t", "sleepedge/v1/dev9/stage"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    engine = start_engine(secure, "dev9", tmp_path / "out", "--publish")
    device = sim(secure, "dev9", "--duration", "600", "--speed", "60")
    assert device.returncode == 0, device.stderr
    assert "published 2,400 frames (2,402 acknowledged)" in device.stdout  # + finished, offline
    _, err = engine.communicate(timeout=200)
    assert engine.returncode == 0, err
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    assert summary["counts"]["frames"] == 2400 and summary["counts"]["lost"] == 0
    got = (tmp_path / "out" / "epochs.jsonl").read_text().splitlines()
    assert got == (tmp_path / "reference" / "epochs.jsonl").read_text().splitlines()
    published, _ = stages.communicate(timeout=200)
    assert [json.loads(x) for x in published.splitlines()] == [json.loads(x) for x in got]


class Acks:
    """Reason codes of a paho client's PUBACKs and SUBACKs, by message id."""

    def __init__(self, client) -> None:
        self.pub: dict[int, int] = {}
        self.sub: dict[int, list[int]] = {}
        self.lock = threading.Lock()
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self.lock:
            self.pub[mid] = reason_code.value

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self.lock:
            self.sub[mid] = [r.value for r in reason_codes]

    def wait(self, table: str, mids: list[int], timeout_s: float = 30) -> list:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                got = getattr(self, table)
                if all(m in got for m in mids):
                    return [got[m] for m in mids]
            time.sleep(0.02)
        raise AssertionError(f"no {table} ack for some of {mids}")


def test_the_broker_refuses_a_device_publishing_as_another(secure, tmp_path):
    engine = start_engine(secure, "devB", tmp_path / "out")
    spoof = connect(BrokerAddress.parse(url(secure, "devA"), str(secure.pki.ca)), "sim-devA")
    acks = Acks(spoof)
    other = synth_night("sleep-edf/SC4002", PSG, 5, 60).recording  # not devB's night
    frames = list(VirtualDevice.from_recording(PSG, other).frames())
    mids = [spoof.publish(f"sleepedge/v1/devB/raw/{f.stream}", f.data, qos=1).mid for f in frames]
    mids.append(spoof.publish("sleepedge/v1/devB/status", b"finished", qos=1).mid)
    assert set(acks.wait("pub", mids)) == {NOT_AUTHORIZED}  # every spoofed publish refused
    own = spoof.publish(f"sleepedge/v1/devA/raw/{frames[0].stream}", frames[0].data, qos=1)
    (code,) = acks.wait("pub", [own.mid])
    assert code < 0x80  # its own topic: accepted (0x10: nobody subscribed), so the ACL is no
    # blanket refusal
    heard: list[str] = []  # a device reads nothing: mosquitto grants the subscription but
    spoof.on_message = lambda c, u, msg: heard.append(msg.topic)  # delivers nothing to it
    _, mid = spoof.subscribe("sleepedge/v1/#", qos=1)
    acks.wait("sub", [mid])
    device = sim(secure, "devB", "--duration", "60", "--speed", "max")
    assert device.returncode == 0, device.stderr
    assert heard == []  # not devB's frames, status, nor the engine's retained status
    spoof.disconnect()
    spoof.loop_stop()
    _, err = engine.communicate(timeout=120)
    assert engine.returncode == 0, err
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    counts = summary["counts"]
    assert counts["frames"] == 240 and counts["duplicates"] == 0, counts  # devB's frames only
    assert not summary["rejected_by_reason"], summary["rejected_by_reason"]
    assert summary["source_stats"]["received"] == 240


@pytest.mark.parametrize(
    "case, why",
    [
        ("wrong CA", "failed TLS verification"),
        ("wrong host name", "failed TLS verification"),
        ("wrong password", "refused the connection"),
        ("device as engine", "refused the connection"),
    ],
)
def test_a_wrong_ca_host_or_password_is_refused_with_one_line(secure, tmp_path, case, why):
    ca, broker = str(secure.pki.ca), url(secure, "engine")
    if case == "wrong CA":
        ca = str(make_pki(tmp_path / "other", name="other").ca)  # a CA that signed nothing here
    elif case == "wrong host name":
        broker = url(secure, "engine", host="127.0.0.1")  # the certificate names localhost
    elif case == "wrong password":
        broker = f"mqtts://engine:nope@localhost:{secure.port}"
    else:
        broker = f"mqtts://dev9:{USERS['engine']}@localhost:{secure.port}"
    for cmd in (
        ["edge.cli", "--source", "mqtt", "--device", "psg", "--plain", "--device-id", "dev9",
         "--out", str(tmp_path / "out")],
        ["firmware_sim.cli", "--device", "psg", "--transport", "mqtt", "--device-id", "dev9",
         "--duration", "30"],
    ):  # fmt: skip
        res = run(*cmd, "--broker", broker, "--ca-file", ca, timeout=120)
        err = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(err) == 1 and why in err[0], (cmd[0], err)
        assert "engine-pw" not in res.stderr and "nope" not in res.stderr  # no password shown
    if case == "wrong host name":
        assert "mismatch" in err[0] or "host" in err[0], err
