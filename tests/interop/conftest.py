"""Interop fixtures: real peers run as child processes on loopback.

``tinyproxy`` starts Debian's tinyproxy (package ``tinyproxy``) in the foreground with a config
written to the test's tmp_path.  When the binary is missing the test is skipped, or fails when
``CI=true`` (CI must have the package installed, so a silent skip there would hide a gap).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest


def require_binary(name: str) -> str:
    """The path of ``name`` (PATH, then /usr/sbin and /usr/bin); skip, or fail in CI, if absent."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        message = f"{name} is not installed (Debian package: {name})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"not listening on 127.0.0.1:{port} after 10 s:\n{log.read_text()}")


@dataclass
class Tinyproxy:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Callable[..., Tinyproxy]]:
    """A factory: ``tinyproxy(connect_ports=[443], basic_auth=("user", "pass"))``."""
    binary = require_binary("tinyproxy")
    processes: list[subprocess.Popen[bytes]] = []

    def start(connect_ports: Sequence[int], basic_auth: tuple[str, str] | None = None) -> Tinyproxy:
        port = free_loopback_port()
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 10",
            "MaxClients 8",
            "LogLevel Info",
            *(f"ConnectPort {allowed}" for allowed in connect_ports),
        ]
        if basic_auth is not None:
            lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        config = tmp_path / f"tinyproxy-{port}.conf"
        config.write_text("\n".join(lines) + "\n")
        log = tmp_path / f"tinyproxy-{port}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [binary, "-d", "-c", str(config)], stdout=output, stderr=subprocess.STDOUT
            )
        processes.append(process)
        wait_for_port(port, process, log)
        return Tinyproxy(port, log)

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
