"""A real mosquitto broker on a free loopback port, started and stopped by the tests; with
``tls``/``users``/``acl``, a secured one (a CA and certificates made here, see ``make_pki``)."""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def tool(name: str) -> str:
    """A mosquitto command-line client (Debian puts them in /usr/bin)."""
    return shutil.which(name) or f"/usr/bin/{name}"


def first_message(port: int, topic: str, timeout_s: int = 60, extra: tuple = ()) -> str:
    """The first payload on ``topic`` (a retained one at once), read with mosquitto_sub; ''
    if none came within ``timeout_s``. ``extra``: more mosquitto_sub options (TLS, user)."""
    seen = subprocess.run(
        [tool("mosquitto_sub"), "-p", str(port), *extra, "-C", "1", "-W", str(timeout_s),
         "-t", topic],
        capture_output=True, text=True, timeout=timeout_s + 30, check=False,
    )  # fmt: skip
    return seen.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, and a broker certificate it signed for ``hosts``."""

    ca: Path
    cert: Path
    key: Path


def make_pki(folder: Path, hosts: tuple[str, ...] = ("localhost",), name: str = "test") -> Pki:
    """A fresh certificate authority and a broker certificate (names ``hosts``) signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key, issuer: str, signer, ca: bool, sans=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            b = b.add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
            )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(signer, hashes.SHA256())

    def pem_key(key, path: Path) -> Path:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = f"SleepEdge {name} CA"
    ca = cert(ca_name, ca_key, ca_name, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = []
    for h in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    server = cert(hosts[0], key, ca_name, ca_key, False, sans)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "broker.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    return Pki(folder / "ca.pem", folder / "broker.pem", pem_key(key, folder / "broker.key"))


# Per-client queue on the broker. mosquitto acknowledges a QoS 1 message on receipt and drops
# what exceeds a subscriber's queue (default 1,000): measured here, a --speed max replay
# publishes ~3,500 frames/s and one engine takes ~2,400/s, so an 8-h ANNE night (513,600
# frames) leaves a backlog of up to ~155,000, and 200 devices bundled every 0.25 s send 800
# messages/s (20 minutes of an engine away: ~1,000,000). 0 (no limit) breaks ACLs in mosquitto
# 2.0: a denied publish then ends the connection (its PUBACK counts as over the limit).
NIGHT_QUEUE = 1_000_000


class Broker:
    """``tls``: the listener speaks TLS only, with that certificate; ``users`` (name →
    password): a password file made with mosquitto_passwd, anonymous clients refused; ``acl``:
    the text of mosquitto's ``acl_file``; ``max_queued``: the per-client queue limit (None:
    mosquitto's default of 1,000, which drops acknowledged frames under a max-speed replay)."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        tls: Pki | None = None,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        max_queued: int | None = NIGHT_QUEUE,
    ) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: run `bash tests/run.sh`")
        self.exe, self.port, self.dir = exe, port or free_port(), workdir
        self.conf = workdir / "mosquitto.conf"
        secure = ""
        if tls is not None:
            secure += f"cafile {tls.ca}\ncertfile {tls.cert}\nkeyfile {tls.key}\n"
        if users is not None:
            passwords = workdir / "passwords"
            passwords.write_text("".join(f"{u}:{pw}\n" for u, pw in users.items()))
            subprocess.run([tool("mosquitto_passwd"), "-U", str(passwords)], check=True)
            secure += f"password_file {passwords}\n"
        if acl is not None:
            (workdir / "acl").write_text(acl)
            secure += f"acl_file {workdir / 'acl'}\n"
        anonymous = "false" if users is not None else "true"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"{secure}"
            f"allow_anonymous {anonymous}\n"
            "set_tcp_nodelay true\n"
            "persistence true\n"
            # started as root, mosquitto drops to user 'mosquitto' and then cannot write its
            # database into our private temporary directory: persistence silently did nothing
            f"user {getpass.getuser()}\n"
            f"persistence_location {workdir}/\n"
            "max_inflight_messages 0\n"
        )
        if max_queued is not None:  # None: mosquitto's default limit (1,000 messages)
            with self.conf.open("a") as conf:
                conf.write(f"max_queued_messages {max_queued}\nmax_queued_bytes 0\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Broker:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
