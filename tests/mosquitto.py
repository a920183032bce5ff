"""A real mosquitto broker on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path


def tool(name: str) -> str:
    """A mosquitto command-line client (Debian puts them in /usr/bin)."""
    return shutil.which(name) or f"/usr/bin/{name}"


def first_message(port: int, topic: str, timeout_s: int = 60) -> str:
    """The first payload on ``topic`` (a retained one at once), read with mosquitto_sub; ''
    if none came within ``timeout_s``."""
    seen = subprocess.run(
        [tool("mosquitto_sub"), "-p", str(port), "-C", "1", "-W", str(timeout_s), "-t", topic],
        capture_output=True, text=True, timeout=timeout_s + 30, check=False,
    )  # fmt: skip
    return seen.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed: run `bash tests/run.sh`")
        self.exe, self.port, self.dir = exe, port or free_port(), workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "set_tcp_nodelay true\n"
            "persistence true\n"
            # started as root, mosquitto drops to user 'mosquitto' and then cannot write its
            # database into our private temporary directory: persistence silently did nothing
            f"user {getpass.getuser()}\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
        )
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
