"""paho-mqtt clients set up the way SleepEdge needs them: MQTT 5, TCP_NODELAY, optional TLS and
credentials, a retained availability topic with a last will.

Without TCP_NODELAY on both broker and client a QoS 1 round trip on loopback takes 44–88 ms
instead of ~0.6 ms (DESIGN §5): Nagle's algorithm holds small frames back.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import paho.mqtt.client as mqtt


class MqttError(RuntimeError):
    """The broker could not be reached or refused us; the message says which and why."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_certs: str | None = None  # with tls: the CA that signed the broker (None: the system's)

    @classmethod
    def parse(cls, text: str, ca_certs: str | None = None) -> BrokerAddress:
        """``[mqtt://|mqtts://][USER[:PASSWORD]@]HOST[:PORT]`` (port 1883, or 8883 with
        mqtts). mqtts verifies the broker's certificate and host name against ``ca_certs``
        (a PEM file) or the system's CAs. A user without a password in the URL takes it from
        ``$SLEEPEDGE_MQTT_PASSWORD`` (so that it need not show in the process list)."""
        scheme, sep, rest = text.partition("://")
        if not sep:
            scheme, rest = "mqtt", text
        if scheme not in ("mqtt", "mqtts"):
            raise MqttError(f"bad broker address {text!r}: the scheme must be mqtt:// or mqtts://")
        tls = scheme == "mqtts"
        userinfo, at, hostport = rest.rpartition("@")
        username = password = None
        if at:
            user, colon, pw = userinfo.partition(":")
            username = unquote(user)
            password = unquote(pw) if colon else os.environ.get("SLEEPEDGE_MQTT_PASSWORD")
        if hostport.startswith("["):  # [IPv6]:PORT
            host, _, port = hostport[1:].partition("]")
            port = port.removeprefix(":")
        else:
            host, _, port = hostport.partition(":")
        if ca_certs is not None and not tls:
            raise MqttError(f"a CA file ({ca_certs}) needs an mqtts:// broker address")
        if ca_certs is not None and not Path(ca_certs).is_file():
            raise MqttError(f"CA file {ca_certs} not found")
        try:
            port_n = int(port) if port else (8883 if tls else 1883)
        except ValueError:
            raise MqttError(f"bad broker address {text!r}: expected HOST:PORT") from None
        if not 0 < port_n < 65536 or "/" in hostport:
            raise MqttError(f"bad broker address {text!r}: expected HOST:PORT")
        return cls(host or "127.0.0.1", port_n, username, password, tls, ca_certs)

    def __repr__(self) -> str:  # never the password (logs, tracebacks)
        user = f"{self.username}@" if self.username else ""
        return f"BrokerAddress({'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port})"


def _nodelay(client: mqtt.Client) -> None:
    sock = client.socket()
    if sock is not None and hasattr(sock, "setsockopt"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connect(
    broker: BrokerAddress,
    client_id: str,
    clean_start: bool = True,
    session_expiry_s: int = 0,
    status_topic: str | None = None,
    timeout_s: float = 10.0,
    on_connected: Callable[[mqtt.Client], None] | None = None,
) -> mqtt.Client:
    """A connected client with its network loop running in a background thread.

    ``status_topic`` gets a retained ``online`` now and, through the last will, a retained
    ``offline`` if the connection dies. ``session_expiry_s`` > 0 with ``clean_start=False`` keeps
    the session (and QoS 1 messages for it) on the broker across reconnects. ``on_connected``
    runs after every successful (re)connect, e.g. to subscribe again after a broker restart.
    """
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)  # unbounded: QoS 1 publishes wait while disconnected
    if broker.username is not None:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:  # the broker's certificate and host name are checked (paho's default)
        try:
            client.tls_set(ca_certs=broker.ca_certs, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        except (OSError, ValueError) as exc:
            raise MqttError(f"cannot use CA file {broker.ca_certs}: {exc}") from None
    if status_topic:
        client.will_set(status_topic, b"offline", qos=1, retain=True)
    connected = threading.Event()
    failure: list[str] = []

    def on_connect(c, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            failure.append(str(reason_code))
        else:
            _nodelay(c)
            if on_connected is not None:
                on_connected(c)  # before "online": whoever sees it finds us subscribed
            if status_topic:
                c.publish(status_topic, b"online", qos=1, retain=True)
        connected.set()

    client.on_connect = on_connect
    props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    try:
        client.connect(
            broker.host, broker.port, keepalive=30, clean_start=clean_start, properties=props
        )
    except ssl.SSLCertVerificationError as exc:
        raise MqttError(
            f"MQTT broker {broker.host}:{broker.port} failed TLS verification: "
            f"{exc.verify_message or exc.reason} (check --ca-file and the host name)"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise MqttError(
            f"cannot reach MQTT broker {broker.host}:{broker.port}: {exc.strerror or exc}"
        ) from None
    client.loop_start()
    if not connected.wait(timeout_s) or failure:
        client.loop_stop()
        why = failure[0] if failure else f"no answer in {timeout_s:g} s"
        raise MqttError(f"MQTT broker {broker.host}:{broker.port} refused the connection: {why}")
    return client


class AckTracker:
    """Counts QoS 1 publishes made through it and the PUBACKs for exactly those.

    paho's ``MQTTMessageInfo.is_published()`` raises for a message published while the link was
    down, although paho queues it and sends it after reconnecting; counting acknowledgements
    instead works across broker restarts. Only message ids this tracker published count: the
    ``online`` that :func:`connect` re-announces after each reconnect is acknowledged too, and
    counting it would report more acknowledgements than publishes. ``on_publish`` runs on paho's
    network thread while paho holds its message lock, so it only queues the id; the caller's
    thread matches ids to its pending set (every publish is registered by then).
    """

    def __init__(self, client: mqtt.Client) -> None:
        self.sent = 0
        self._acked = 0
        self._pending: set[int] = set()
        self._arrived: deque[int] = deque()  # appended by paho's thread, drained by ours
        client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._arrived.append(mid)

    def _drain(self) -> None:
        while self._arrived:
            mid = self._arrived.popleft()
            if mid in self._pending:
                self._pending.discard(mid)
                self._acked += 1

    @property
    def acked(self) -> int:
        """Acknowledged publishes of this tracker so far."""
        self._drain()
        return self._acked

    def publish(self, client: mqtt.Client, topic: str, payload: bytes, **kw) -> None:
        self._drain()  # before ids can wrap round (65,535) and be reused
        info = client.publish(topic, payload, qos=1, **kw)
        self._pending.add(info.mid)
        self.sent += 1

    def wait(self, timeout_s: float) -> bool:
        """True once every publish so far is acknowledged, False after ``timeout_s``."""
        import time

        deadline = time.monotonic() + timeout_s
        while self.acked < self.sent:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
