"""The real daemon: ``twistd -n callmeter`` as a process, on loopback, with a NOTIFY_SOCKET."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.unit.shell.notify_socket import NotifySocket

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def daemon_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHDOG_", "NOTIFY_"))}
    env.update(
        {
            "WORKER_TOKEN": "Zq!9-integration-token",
            "SIP_IP": "127.0.0.1",
            # No traffic leaves the machine: the control plane points at a closed local port.
            "GATEWAY_URL": f"ws://127.0.0.1:{free_port()}/ws",
            "ALLOW_INSECURE_GATEWAY": "1",
        },
        **extra,
    )
    return env


def get_health(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_daemon_serves_health_pings_watchdog_and_stops_cleanly(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify")
    port = free_port()
    env = daemon_env(
        tmp_path, NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="1000000", HEALTH_PORT=str(port)
    )
    process = subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", "callmeter"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: any(m.startswith("READY=1") for m in notify.messages()))
        code, health = get_health(port)
        # Nothing listens where GATEWAY_URL points: CONNECTING, then ERROR (503) with the reason.
        assert health["status"] in ("CONNECTING", "ERROR", "OFFLINE"), health
        assert (code == 503) == (health["status"] == "ERROR")
        assert health["connected"] is False
        assert set(health) >= {
            "status",
            "connected",
            "version",
            "uptime_s",
            "active_endpoints",
            "test_run",
        }
        wait_for(lambda: get_health(port)[1]["status"] == "ERROR", timeout=15)
        assert "refused" in get_health(port)[1].get("reason", "").lower()
        # WATCHDOG_USEC=1 s: a ping every 0.5 s from the running reactor.
        wait_for(lambda: notify.messages().count("WATCHDOG=1") >= 3, timeout=10)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        messages = notify.messages()
        notify.close()
    # Twisted >= 23 re-raises the signal after a clean shutdown (exit by SIGTERM, which systemd
    # counts as success); 22.4 (Debian 12) exits 0.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Main loop terminated." in output and "Traceback" not in output
    assert messages[-1] == "STOPPING=1"
    assert "Zq!9-integration-token" not in output


def test_bad_variable_is_one_line_and_non_zero_exit(tmp_path: Path) -> None:
    env = daemon_env(tmp_path, RTP_PORT_MIN="30001", RTP_PORT_MAX="30001")
    result = subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "callmeter"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "callmeter: RTP_PORT_MIN=30001..30001 is invalid: "
        "the range must hold at least one even/odd RTP/RTCP pair"
    ]


def test_health_port_in_use_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = subprocess.run(
            [*TWISTD, "-n", "--pidfile=", "callmeter"],
            env=daemon_env(tmp_path, HEALTH_PORT=str(port)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert f"cannot serve health on 127.0.0.1:{port}: Address already in use" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_json_log_format_under_twistd(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", "callmeter", "--log-format", "json"],
        env=daemon_env(tmp_path, HEALTH_PORT=str(port)),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def health_up() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            except (urllib.error.URLError, ConnectionError):
                return False
            return True

        wait_for(health_up)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    messages = [record["message"] for record in records]
    assert any(m.startswith("callmeter-worker ") and "starting" in m for m in messages)
    assert any(m == f"health endpoint on http://127.0.0.1:{port}/health" for m in messages)


@pytest.mark.parametrize("command", [["version"], ["--version"]])
def test_console_script_version(command: list[str]) -> None:
    from callmeter import __version__

    result = subprocess.run(
        [sys.executable, "-m", "callmeter.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"callmeter-worker {__version__}"
