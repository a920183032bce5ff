"""Running the project's commands as a user would: a fresh interpreter, captured output."""

from __future__ import annotations

import json
import subprocess
import sys


def run(*args: str, module: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (or ``python SCRIPT ARGS`` with ``module=False``)."""
    cmd = [sys.executable, "-m", *args] if module else [sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def run_json(*args: str, module: bool = True, timeout: float = 600):
    """Run a command that prints JSON; fail the test with its stderr if it does not exit 0."""
    out = run(*args, module=module, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def spawn(*args: str) -> subprocess.Popen:
    """``python -m MODULE ARGS`` in the background, text output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for_port(port: int, what: str, timeout: float = 20.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.1)
