"""A `docker-registry` (the CNCF Distribution server) for the test suites (tests/integration,
tests/python): a free port on 127.0.0.1, and the server started from a config file through a
shell that exits, so it is nobody's child (the per-test stray-process checks ignore it)."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary: str, config: pathlib.Path, log: pathlib.Path, port: int, timeout: float = 20) -> int:
    """Starts BINARY serving CONFIG (its output to LOG) and returns its pid once PORT accepts
    connections; raises (with the log) when it does not within TIMEOUT seconds."""
    out = subprocess.run(
        ["sh", "-c", '"$0" serve "$1" >"$2" 2>&1 </dev/null & echo $!', binary, str(config), str(log)],
        stdout=subprocess.PIPE, text=True, check=True).stdout
    pid = int(out.strip())
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return pid
        except OSError:
            if time.monotonic() > deadline:
                stop(pid)
                raise RuntimeError(f"docker-registry did not start: {log.read_text()}")
            time.sleep(0.05)


def stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
