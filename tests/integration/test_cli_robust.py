"""`callmeter run` never hangs, hides an error or loses results: real processes, real signals.

Each test is what a new user met (issue "The first five minutes"): a source tree in the current
directory, a SIP port already taken, a worker process that dies, Ctrl-C twice, SIGTERM, an
output path that cannot be written, a registrar that refuses or never answers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.test_cli_run import CALLMETER, ROOT, env, run, small_plan


def start(*args: str, cwd: Path = ROOT, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CALLMETER, "run", *args, "--plain"],
        env={**env(), **extra},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_workers(process: subprocess.Popen[str], count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        children = psutil.Process(process.pid).children()
        if len(children) == count:
            return children
        time.sleep(0.1)
    raise AssertionError(f"{count} worker processes did not start")


def wait_for_calls(process: subprocess.Popen[str]) -> None:
    """Until the calls are up (4 callers at 20 calls/s, answered in 0.2 s: well within 4 s)."""
    time.sleep(4)
    assert process.poll() is None, process.communicate()


@pytest.fixture
def busy_udp_port() -> Iterator[int]:
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    yield holder.getsockname()[1]
    holder.close()


def test_workers_run_the_installed_package_not_a_source_tree_in_the_current_directory(
    tmp_path: Path,
) -> None:
    """From a project directory whose ./callmeter cannot be imported (a source tree with no
    compiled extension), the run still passes: worker processes import what the command
    imported, never the current directory."""
    shadow = tmp_path / "callmeter"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('the shadowing source tree')\n")
    plan = small_plan(tmp_path)
    result = subprocess.run(
        [sys.executable, "-P", "-m", "callmeter.cli", "run", str(plan), "--processes", "2"],
        env={**env(), "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shadowing" not in result.stderr


def test_a_sip_port_in_use_ends_a_multi_process_run_at_once_with_exit_2(
    tmp_path: Path, busy_udp_port: int
) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*CALLMETER, "run", str(small_plan(tmp_path)), "--processes", "2", "--plain"],
        env={**env(), "SIP_PORT": str(busy_udp_port)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert time.monotonic() - started < 20
    assert f"cannot listen for SIP on 127.0.0.1:{busy_udp_port}: " in result.stderr
    assert "SIP_PORT" in result.stderr


def test_a_worker_process_that_dies_is_named_and_the_run_ends(tmp_path: Path) -> None:
    process = start(str(small_plan(tmp_path, duration_s=60)), "--processes", "2")
    workers = wait_for_workers(process, 2)
    wait_for_calls(process)
    workers[1].kill()
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stdout + stderr
    assert "worker 1 exited before its report (killed by SIGKILL)" in stderr
    assert not any(worker.is_running() for worker in workers)


def test_ctrl_c_twice_stops_at_once_and_the_report_says_interrupted(
    tmp_path: Path, busy_udp_port: int
) -> None:
    """Calls to a peer that never answers: a clean stop waits for the CANCELs' answers
    (seconds); the second Ctrl-C does not."""
    report_path = tmp_path / "r.json"
    plan = small_plan(tmp_path, duration_s=60)
    data = json.loads(plan.read_text())
    data["groups"][1]["call"]["to"] = f"sip:silent@127.0.0.1:{busy_udp_port}"
    plan.write_text(json.dumps(data))
    process = start(str(plan), "--processes", "2", "--report", str(report_path))
    workers = wait_for_workers(process, 2)
    wait_for_calls(process)
    process.send_signal(signal.SIGINT)
    for worker in workers:  # a terminal's Ctrl-C reaches the whole process group
        worker.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stdout + stderr
    assert "interrupted (SIGINT)" in stdout and "stopping at once" in stdout
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True
    assert report["pass"]["passed"] is False
    assert report["total"]["sip"]["calls"]["failed_by_code"] == {"408": 4}
    assert "PASSED" not in stdout


def test_sigterm_stops_cleanly_writes_the_report_and_never_passes(tmp_path: Path) -> None:
    """SIGTERM to the command and its workers (as systemd and `kill -- -PGID` send it)."""
    report_path = tmp_path / "r.json"
    process = start(
        str(small_plan(tmp_path, duration_s=60)), "--processes", "2", "--report", str(report_path)
    )
    workers = wait_for_workers(process, 2)
    wait_for_calls(process)
    process.send_signal(signal.SIGTERM)
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stdout + stderr
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True
    assert report["duration_s"] < 30
    calls = report["total"]["sip"]["calls"]
    assert calls["established"] == calls["attempted"] == 4  # hung up cleanly, none failed
    assert "PASSED" not in stdout


@pytest.mark.parametrize("flag", ["--report", "--calls", "--log"])
def test_an_output_path_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, flag: str
) -> None:
    started = time.monotonic()
    missing = tmp_path / "no-such-dir" / "out"
    result = run(str(small_plan(tmp_path)), flag, str(missing))
    assert result.returncode == 2
    expected = f"callmeter: {flag} {missing}: directory {missing.parent} does not exist\n"
    assert result.stderr == expected
    assert result.stdout == ""  # nothing ran
    assert time.monotonic() - started < 10
    directory = run(str(small_plan(tmp_path)), flag, str(tmp_path))
    assert directory.returncode == 2
    assert f"{flag} {tmp_path}: is a directory" in directory.stderr


def registrar_plan(tmp_path: Path, transport: str, port: int, **overrides: Any) -> Path:
    plan = {
        "name": "dead-registrar",
        "duration_s": 3,
        "ramp_up_s": 0.5,
        "registrars": {
            "pbx": {"host": "127.0.0.1", "port": port, "transport": transport, "domain": "t.test"}
        },
        "groups": [
            {"name": "phones", "role": "callee", "count": 3, "registrar": "pbx", "user": "p{i}"},
            {
                "name": "callers",
                "role": "caller",
                "count": 2,
                "registrar": "pbx",
                "user": "c{i}",
                "call": {"to": "phones", "duration_s": 1, "rate_per_s": 10},
            },
        ],
        **overrides,
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_registrar_that_refuses_is_named_in_every_failure(tmp_path: Path) -> None:
    port = free_tcp_port()  # nothing listens: connection refused
    report_path = tmp_path / "r.json"
    plan = registrar_plan(tmp_path, "tcp", port)
    result = run(str(plan), "--report", str(report_path), "--processes", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    total = json.loads(report_path.read_text())["total"]["sip"]
    cause = f"transport error to 127.0.0.1:{port} over TCP (refused or unreachable)"
    assert total["register"]["causes"] == {cause: 5}
    assert total["register"]["failed_by_code"] == {"503": 5}
    assert total["calls"]["failed"] == total["calls"]["attempted"] == 2
    assert total["calls"]["causes"] == {cause: 2}
    assert cause in result.stderr  # the warning reached the terminal


def test_requests_still_unanswered_when_the_run_ends_are_counted_as_408(
    tmp_path: Path, busy_udp_port: int
) -> None:
    """A registrar that swallows every request: when the run ends, each REGISTER and INVITE
    still waiting is a failure with a cause, never attempted-and-nothing."""
    report_path, calls_path = tmp_path / "r.json", tmp_path / "calls.csv"
    plan = registrar_plan(tmp_path, "udp", busy_udp_port)
    result = run(str(plan), "--report", str(report_path), "--calls", str(calls_path))
    assert result.returncode == 1, result.stdout + result.stderr
    total = json.loads(report_path.read_text())["total"]["sip"]
    where = f"127.0.0.1:{busy_udp_port} over UDP"
    assert total["register"]["attempted"] == total["register"]["failed"] == 5
    assert total["register"]["causes"] == {
        f"no final answer from {where} before the run ended (REGISTER)": 5
    }
    assert total["calls"]["failed"] == total["calls"]["attempted"] == 2
    assert total["calls"]["failed_by_code"] == {"408": 2}
    rows = calls_path.read_text().splitlines()[1:]
    assert len(rows) == 2 and all(",408," in row for row in rows)
    assert os.path.getsize(report_path) > 0


def test_workers_of_a_killed_command_stop_cleanly_and_exit(tmp_path: Path) -> None:
    """`kill -9` of the command (an OOM kill, a closed SSH session's SIGKILL): its workers
    are told by the kernel (PR_SET_PDEATHSIG), hang up and exit; none is left holding ports."""
    process = start(str(small_plan(tmp_path, duration_s=60)), "--processes", "2")
    workers = wait_for_workers(process, 2)
    wait_for_calls(process)
    process.kill()
    process.communicate(timeout=10)
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == [], [worker.pid for worker in alive]


def test_a_run_out_of_rtp_ports_says_so_once_naming_the_range_and_the_variables(
    tmp_path: Path,
) -> None:
    report_path = tmp_path / "r.json"
    plan = str(small_plan(tmp_path))
    result = subprocess.run(
        [*CALLMETER, "run", plan, "--processes", "1", "--plain", "--report", str(report_path)],
        env={**env(), "RTP_PORT_MIN": "30100", "RTP_PORT_MAX": "30107"},  # 4 pairs, 8 needed
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    said = [line for line in result.stderr.splitlines() if "exhausted" in line]
    assert said == [
        "callmeter: error: calls are failing: RTP port range 30100-30107 exhausted: all 4 port "
        "pairs are in use (raise RTP_PORT_MAX/lower RTP_PORT_MIN or run fewer endpoints)"
    ]
    assert "Traceback" not in result.stderr
    calls = json.loads(report_path.read_text())["total"]["sip"]["calls"]
    assert calls["failed_by_code"] == {"503": 2} and calls["established"] == 2
