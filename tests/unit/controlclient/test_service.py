"""ControlService end to end in memory: the real Autobahn client and gateway on a Clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.control.backoff import ReconnectBackoff
from callmeter.control.service import ControlService
from callmeter.gateway.server import Gateway
from callmeter.gateway.service import gateway_site
from callmeter.gateway.store import Store
from callmeter.status import WorkerState, WorkerStatus
from tests.unit.controlclient.fakes import FakeEngine, sip_plan
from tests.unit.controlclient.harness import ADMIN, TOKENS, MemoryLink, clock_loop, worker_config


def state_of(s: Any) -> WorkerState:
    """The worker's state now (a call, so mypy does not narrow it between asserts)."""
    state: WorkerState = s.status.state
    return state


@dataclass
class Stack:
    clock: Clock
    link: MemoryLink
    gateway: Gateway
    service: ControlService
    status: WorkerStatus
    engine: FakeEngine

    def result(self, d: Any) -> Any:
        out: list[Any] = []
        d.addBoth(out.append)
        self.link.flush()
        assert out, "the Deferred did not fire"
        return out[0]


@pytest.fixture
def clock() -> Iterator[Clock]:
    clock = Clock()
    clock.advance(1_700_000_000)
    with clock_loop(clock):
        yield clock


def build(
    clock: Clock, token: str = TOKENS["lab-1"], up: bool = True, windows: int = 3, **kw: Any
) -> Stack:
    gateway = Gateway(Store(":memory:"), TOKENS, clock)
    site = gateway_site(gateway, ADMIN, reactor=clock)
    link = MemoryLink(clock, site if up else None)
    status = WorkerStatus(clock)
    engine = FakeEngine(clock, window_s=5.0, windows=windows)
    service = ControlService(
        worker_config(token, **kw),
        status,
        engine,
        clock,
        worker_name="lab-1",
        endpoint=link,
        retry_policy=ReconnectBackoff(jitter=lambda: 0.0),
        auto_ping_interval_s=0,
    )
    link.site = site if up else None
    stack = Stack(clock, link, gateway, service, status, engine)
    stack.site = site  # type: ignore[attr-defined]
    return stack


def test_reconnect_delays_are_5_10_20_40_60_60_and_reset_after_welcome(clock: Clock) -> None:
    s = build(clock, up=False)
    start = clock.seconds()
    s.service.startService()
    assert state_of(s) is WorkerState.ERROR
    assert s.status.reason == "connection refused by the gateway gw.test:8080"
    for _ in range(7):
        clock.advance(min(c.getTime() for c in clock.getDelayedCalls()) - clock.seconds())
    gaps = [round(b - a, 3) for a, b in zip(s.link.attempts, s.link.attempts[1:], strict=False)]
    assert s.link.attempts[0] == start
    assert gaps == [5, 10, 20, 40, 60, 60, 60]
    # The gateway comes back: the next attempt connects and authenticates.
    s.link.site = s.site  # type: ignore[attr-defined]
    s.link.advance(60)
    assert s.status.state.value == "ONLINE" and s.status.connected
    assert s.gateway.workers["lab-1"].state == "ONLINE"
    # The session authenticated, so a lost connection is retried after 5 s again.
    s.link.site = None
    lost_at = clock.seconds()
    s.link.cut()
    assert state_of(s) is WorkerState.OFFLINE
    assert s.status.reason is not None and s.status.reason.startswith(
        "connection to the gateway lost"
    )
    attempts = len(s.link.attempts)
    s.link.advance(4.5)
    assert len(s.link.attempts) == attempts
    s.link.advance(0.5)
    assert len(s.link.attempts) == attempts + 1
    assert round(s.link.attempts[-1] - lost_at, 3) == 5.0
    s.result(s.service.stopService())


def test_bad_token_is_401_error_and_does_not_reset_the_backoff(clock: Clock) -> None:
    s = build(clock, token="not-a-known-token")
    s.service.startService()
    s.link.flush()
    assert state_of(s) is WorkerState.ERROR
    assert s.status.reason == "the gateway refused the worker token (HTTP 401 Unauthorized)"
    s.link.advance(5)
    s.link.advance(10)
    s.link.advance(20)
    gaps = [round(b - a, 3) for a, b in zip(s.link.attempts, s.link.attempts[1:], strict=False)]
    assert gaps == [5, 10, 20]
    assert s.gateway.workers["lab-1"].state == "OFFLINE"
    s.result(s.service.stopService())


def test_run_submitted_at_gateway_finishes_with_report_and_windows(clock: Clock) -> None:
    s = build(clock, windows=4)
    s.service.startService()
    s.link.flush()
    run = s.result(s.gateway.submit({"plan": sip_plan(3, 3), "worker": None}))
    s.link.flush()
    assert state_of(s) is WorkerState.BUSY and s.status.test_run == run
    assert s.gateway.workers["lab-1"].state == "BUSY"
    s.link.advance(20)
    info = s.result(s.gateway.store.get_run(run))
    assert info["state"] == "finished" and info["windows"] == 4
    assert info["report"]["passed"] is True
    windows = s.result(s.gateway.store.windows_after(run, 0))
    assert [w["seq"] for w in windows] == [1, 2, 3, 4]
    assert s.status.state.value == "ONLINE"
    assert list(s.service.client.spool.runs()) == []  # everything acknowledged
    s.result(s.service.stopService())


def test_gateway_away_mid_run_every_window_arrives_once(clock: Clock) -> None:
    s = build(clock, windows=6)
    s.service.startService()
    s.link.flush()
    run = s.result(s.gateway.submit({"plan": sip_plan(2, 2), "worker": "lab-1"}))
    s.link.advance(10)  # windows 1, 2
    site = s.link.site
    s.link.site = None
    s.link.cut()
    s.link.advance(12)  # windows 3, 4 spooled; reconnects refused at +5, +15 ...
    assert state_of(s) is WorkerState.BUSY and not s.status.connected
    s.link.site = site
    s.link.advance(30)
    info = s.result(s.gateway.store.get_run(run))
    assert info["state"] == "finished" and info["windows"] == 6
    assert [w["seq"] for w in s.result(s.gateway.store.windows_after(run, 0))] == [1, 2, 3, 4, 5, 6]
    s.result(s.service.stopService())


def test_stale_at_60_s_without_heartbeat_then_online_again(clock: Clock) -> None:
    s = build(clock)
    s.service.startService()
    s.link.flush()
    worker = s.gateway.workers["lab-1"]
    assert worker.state == "ONLINE"
    # The path dies silently (half-open): nothing moves, no one is told.
    s.link.pumps.clear()
    last = worker.last_heartbeat
    assert last is not None
    assert last == clock.seconds()
    clock.advance(59.5)
    assert worker.state == "ONLINE"
    clock.advance(0.5)
    assert worker.state == "ERROR" and worker.reason == "stale: no heartbeat for 60 s"


def test_stop_drains_cancels_and_flushes(clock: Clock) -> None:
    s = build(clock, windows=100)
    s.service.startService()
    s.link.flush()
    run = s.result(s.gateway.submit({"plan": sip_plan(2, 2), "worker": None}))
    s.link.advance(10)
    stopped = s.service.stopService()
    s.link.flush()
    assert s.engine.cancels == [run]
    s.link.advance(1)
    s.result(stopped)
    info = s.result(s.gateway.store.get_run(run))
    assert info["report"]["cancelled"] is True and info["windows"] == 2
    assert list(s.service.client.spool.runs()) == []


def test_control_plane_bytes_per_second_at_500_endpoints(clock: Clock) -> None:
    """SPEC.md: control traffic under 1 Mbit/s at 500 endpoints. One window every 5 s with the
    metrics of 500 endpoints in two groups, heartbeats every 30 s, WebSocket framing included."""
    s = build(clock, windows=12)
    s.service.startService()
    s.link.flush()
    s.result(s.gateway.submit({"plan": sip_plan(250, 250), "worker": None}))
    s.link.flush()
    before = len(s.link.worker_bytes)
    s.link.advance(60)
    sent = len(s.link.worker_bytes) - before
    per_second = sent / 60.0
    window = json.dumps(s.engine.runs[0].plan)  # the plan stays here; only metrics go out
    assert window
    print(f"\ncontrol plane at 500 endpoints: {sent} bytes in 60 s = {per_second * 8:.0f} bit/s")
    assert per_second * 8 < 1_000_000
    assert per_second * 8 < 20_000  # the measured figure is about 3.5 kbit/s
    s.result(s.service.stopService())
