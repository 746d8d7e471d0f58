"""SystemdService against a real AF_UNIX datagram socket set as NOTIFY_SOCKET (sd_notify(3))."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from callmeter.status import WorkerState, WorkerStatus
from callmeter.systemd import SystemdService, watchdog_interval

from .notify_socket import NotifySocket


@pytest.fixture()
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", sock.path)
    yield sock
    sock.close()


def start(clock: Clock, environ: dict[str, str]) -> tuple[SystemdService, WorkerStatus]:
    status = WorkerStatus(clock)
    service = SystemdService(status, clock, environ)
    service.startService()
    return service, status


def test_ready_status_and_stopping(notify_socket: NotifySocket) -> None:
    clock = Clock()
    service, status = start(clock, {})
    assert notify_socket.messages() == [f"READY=1\nSTATUS=OFFLINE\nMAINPID={os.getpid()}"]

    status.set_state(WorkerState.ERROR, "gateway refused the token")
    status.set_state(WorkerState.ERROR, "gateway refused the token")  # no change, no message
    status.set_state(WorkerState.CONNECTING)
    service.stopService()
    assert notify_socket.messages()[1:] == [
        "STATUS=ERROR: gateway refused the token",
        "STATUS=CONNECTING",
        "STOPPING=1",
    ]
    status.set_state(WorkerState.ONLINE)  # after stop: nothing more is sent
    assert notify_socket.messages()[-1] == "STOPPING=1"


def test_watchdog_pings_at_half_the_interval_on_the_reactor(notify_socket: NotifySocket) -> None:
    clock = Clock()
    service, _ = start(clock, {"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    assert service.interval == 15.0
    pings = lambda: notify_socket.messages().count("WATCHDOG=1")  # noqa: E731
    assert pings() == 1  # one at READY
    clock.advance(14.9)
    assert pings() == 1
    clock.advance(0.1)
    assert pings() == 2
    clock.pump([15.0] * 4)
    assert pings() == 6
    service.stopService()
    clock.advance(60)
    assert pings() == 6
    assert not clock.getDelayedCalls()


def test_a_blocked_reactor_sends_no_ping(notify_socket: NotifySocket) -> None:
    """The ping is a reactor timer: while the clock does not run, nothing is sent."""
    clock = Clock()
    service, _ = start(clock, {"WATCHDOG_USEC": "2000000"})
    assert notify_socket.messages().count("WATCHDOG=1") == 1
    # The reactor "blocks": no clock advance, no timer fires, no ping reaches systemd.
    assert notify_socket.messages().count("WATCHDOG=1") == 1
    service.stopService()


def test_no_notify_socket_is_harmless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    service, status = start(Clock(), {"WATCHDOG_USEC": "1000000"})
    status.set_state(WorkerState.ONLINE)
    service.stopService()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "4242"}, 10.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ, pid=4242) == expected
