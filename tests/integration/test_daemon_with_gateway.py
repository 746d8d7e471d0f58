"""The whole product on loopback: `twistd -n callmeter-gateway` and `twistd -n callmeter` as
real processes; a plan submitted to the gateway's API runs in the worker's engine (real SIP and
RTP between the worker's own endpoints, a media file the worker fetched once) and its report and
windows come back through the API; a plan whose media URL 404s is rejected, naming the URL."""

from __future__ import annotations

import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.integration.test_cli_run import write_wav

TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
ADMIN = "admin-token-5f1e"
WORKER = "worker-token-9a0b"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def api(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (urllib.error.URLError, ConnectionError):
            value = None  # not listening yet
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_plan_through_gateway_runs_in_the_daemon(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    write_wav(media / "tone.wav")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(media))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    gateway_port, health_port = free_port(), free_port()
    (tmp_path / "workers").write_text(f"lab-1 {WORKER}\n")
    (tmp_path / "admin").write_text(ADMIN + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    gateway = subprocess.Popen(
        [
            *TWISTD,
            "-n",
            "--pidfile=",
            "callmeter-gateway",
            "--listen",
            f"tcp:{gateway_port}:interface=127.0.0.1",
            "--db",
            str(tmp_path / "gw.db"),
            "--worker-tokens",
            str(tmp_path / "workers"),
            "--admin-token-file",
            str(tmp_path / "admin"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker = subprocess.Popen(
        [*TWISTD, "-n", "--pidfile=", "callmeter"],
        cwd=tmp_path,
        env={
            **env,
            "WORKER_TOKEN": WORKER,
            "GATEWAY_URL": f"ws://127.0.0.1:{gateway_port}/ws",
            "ALLOW_INSECURE_GATEWAY": "1",
            "SIP_IP": "127.0.0.1",
            "SIP_PORT": "0",
            "HEALTH_PORT": str(health_port),
            "RTP_PORT_MIN": "32000",
            "RTP_PORT_MAX": "32999",
            "MEDIA_CACHE_DIR": str(tmp_path / "cache"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def online() -> Any:
            workers = api(gateway_port, "GET", "/api/workers")[1]
            return workers if workers and workers[0]["state"] == "ONLINE" else None

        workers = wait_for(online, timeout=30)
        assert workers[0]["id"] == "lab-1"
        plan = {
            "name": "via-gateway",
            "duration_s": 6,
            "groups": [
                {
                    "name": "callees",
                    "role": "callee",
                    "count": 3,
                    "user": "in-{i}",
                    "password": "never-leaves-{i}",
                },
                {
                    "name": "callers",
                    "role": "caller",
                    "count": 3,
                    "user": "out-{i}",
                    "media": f"{base}/tone.wav",
                    "call": {"to": "callees", "duration_s": 3, "rate_per_s": 10},
                },
            ],
        }
        code, created = api(gateway_port, "POST", "/api/runs", {"plan": plan, "worker": None})
        assert code == 201, created
        run_id = created["id"]

        def finished_state(run: str) -> Any:
            state = api(gateway_port, "GET", f"/api/runs/{run}")[1]
            return state if state["state"] in ("finished", "failed") else None

        state = wait_for(lambda: finished_state(run_id), timeout=60)
        assert state["state"] == "finished", state
        report = state["report"]
        assert report["total"]["sip"]["calls"]["established"] == 3
        assert report["total"]["rtp"]["received"]["packets"] > 0
        windows = api(gateway_port, "GET", f"/api/runs/{run_id}/windows?after=0")[1]
        assert [w["seq"] for w in windows] == list(range(1, len(windows) + 1))
        assert sum(w["total"]["sip"]["calls"]["attempted"] for w in windows) == 3
        assert "never-leaves" not in json.dumps(state) + json.dumps(windows)
        assert list((tmp_path / "cache").rglob("*.json")), "the worker fetched the media file"

        plan["groups"][1]["media"] = f"{base}/missing.wav"
        code, created = api(gateway_port, "POST", "/api/runs", {"plan": plan, "worker": None})
        assert code == 201, created
        rejected = wait_for(lambda: finished_state(created["id"]), timeout=30)
        assert rejected["state"] == "failed", rejected
        assert rejected["reason"] == f"rejected: media: {base}/missing.wav: HTTP 404 Not Found"
    finally:
        server.shutdown()
        for process in (worker, gateway):
            process.send_signal(signal.SIGTERM)
        for process in (worker, gateway):
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
