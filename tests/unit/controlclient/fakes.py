"""Test doubles for the control plane: an in-memory engine and a recording connection.

:class:`FakeEngine` satisfies :class:`callmeter.control.engine_api.Engine`: each run emits one
metric window every ``window_s`` seconds on the given clock (metrics for every endpoint, in
SPEC.md's shape: :func:`spec_metrics`), finishes after ``windows`` windows, and stops at once
when cancelled. It keeps the plans it was given (they may hold SIP passwords) and never puts
any of their values in a window or a report. ``prepare`` answers at once unless ``hold`` is set
(then each preparation waits in ``preparing`` for the test to fire it); ``refuse`` makes it fail
with that reason, as the engine does for a media URL that 404s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from callmeter.control import protocol as p
from callmeter.control.engine_api import (
    MetricWindow,
    PreparedPlan,
    PrepareError,
    WindowCallback,
)


def _summary(base: float) -> dict[str, float]:
    return {"p50": round(base, 1), "p95": round(base * 1.9, 1), "max": round(base * 3.2, 1)}


def group_metrics(endpoints: int, codes: int = 3) -> dict[str, Any]:
    """One group's metrics for a 5 s window, every metric of SPEC.md "Metrics and the report"."""
    calls = endpoints // 2
    packets = endpoints * 250
    return {
        "sip": {
            "register": {
                "attempted": endpoints,
                "succeeded": endpoints - 1,
                "failed": 1,
                "time_ms": _summary(12.5),
            },
            "calls": {
                "attempted": calls,
                "established": calls - 2,
                "failed": 2,
                "failed_by_code": {str(480 + i): 1 for i in range(codes)},
            },
            "setup_time_ms": _summary(85.25),
            "pdd_ms": _summary(40.75),
        },
        "rtp": {
            "sent": {"packets": packets, "bytes": packets * 172},
            "received": {"packets": packets - 7, "bytes": (packets - 7) * 172},
            "lost": {"packets": 7},
            "loss_pct": 0.0056,
            "jitter_ms": {"mean": 1.234, "p95": 3.456, "max": 9.876},
            "rtt_ms": {"mean": 0.512, "p95": 0.934, "max": 2.1},
            "mos": {"mean": 4.38, "min": 4.11},
        },
    }


def spec_metrics(endpoints: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(groups, total) for ``endpoints`` split into callers and callees, as SPEC.md's plan."""
    half = endpoints // 2
    groups = {"callees": group_metrics(endpoints - half), "callers": group_metrics(half)}
    return groups, group_metrics(endpoints)


@dataclass(frozen=True)
class FakePrepared:
    """What FakeEngine.prepare gives: the plan dict, kept for the run."""

    plan: dict[str, Any]
    endpoints: int
    name: str = "fake"
    duration_s: float = 15.0
    processes: int = 1


class FakeRun:
    def __init__(
        self,
        engine: FakeEngine,
        run_id: str,
        plan: dict[str, Any],
        on_window: WindowCallback,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.plan = plan
        self._on_window = on_window
        self.finished: Deferred[dict[str, Any]] = Deferred()
        self.active_endpoints = engine.endpoints(plan)
        self.cancelled = False
        self.emitted = 0
        self.calls: list[Any] = []
        self._start = engine.clock.seconds()
        self._timer: IDelayedCall | None = engine.clock.callLater(engine.window_s, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._emit()
        if self.emitted >= self.engine.windows:
            self._finish()
        else:
            self._timer = self.engine.clock.callLater(self.engine.window_s, self._tick)

    def _emit(self) -> None:
        end = self.engine.clock.seconds()
        groups, total = spec_metrics(self.active_endpoints)
        self.emitted += 1
        self._on_window(MetricWindow(end - self.engine.window_s, end, groups, total))

    def _finish(self) -> None:
        self.active_endpoints = 0
        groups, total = spec_metrics(self.engine.endpoints(self.plan))
        report = {
            "passed": not self.cancelled,
            "cancelled": self.cancelled,
            "windows": self.emitted,
            "groups": groups,
            "total": total,
        }
        self.finished.callback(report)

    def progress(self) -> dict[str, Any]:
        return {"windows": self.emitted}

    def abort(self) -> Deferred[None]:
        return self.cancel()

    def cancel(self) -> Deferred[None]:
        self.engine.cancels.append(self.run_id)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
            self._timer = None
            self.cancelled = True
            self._finish()
        return succeed(None)


class FakeEngine:
    """An in-memory Engine; ``capacity`` endpoints, windows every ``window_s`` on ``clock``."""

    def __init__(
        self, clock: IReactorTime, window_s: float = 5.0, windows: int = 3, capacity: int = 1000
    ) -> None:
        self.clock = clock
        self.window_s = window_s
        self.windows = windows
        self.capacity = capacity
        self.runs: list[FakeRun] = []
        self.cancels: list[str] = []
        #: Plans given to prepare(), in order.
        self.prepared: list[dict[str, Any]] = []
        #: With ``hold``: the preparations not fired yet (the test fires them).
        self.preparing: list[tuple[Deferred[PreparedPlan], dict[str, Any]]] = []
        self.hold = False
        #: A reason to refuse every preparation with (PrepareError), as a 404 media URL.
        self.refuse: str | None = None

    def validate(self, plan: dict[str, Any]) -> list[str]:
        groups = plan.get("groups")
        if not isinstance(groups, list) or not groups:
            return ["groups: expected a non-empty array"]
        problems = []
        for i, group in enumerate(groups):
            count = group.get("count") if isinstance(group, dict) else None
            if not isinstance(count, int) or count < 1:
                problems.append(f"groups[{i}].count: expected an integer >= 1")
        return problems

    def endpoints(self, plan: dict[str, Any]) -> int:
        return sum(int(g["count"]) for g in plan["groups"])

    def prepare(self, plan: dict[str, Any]) -> Deferred[PreparedPlan]:
        self.prepared.append(plan)
        if self.refuse is not None:
            return fail(PrepareError(self.refuse))
        prepared: PreparedPlan = FakePrepared(plan, self.endpoints(plan))
        if not self.hold:
            return succeed(prepared)
        waiting: Deferred[PreparedPlan] = Deferred()
        self.preparing.append((waiting, plan))
        return waiting

    def release(self) -> None:
        """Fire the preparations held so far (``hold``), each with its plan."""
        waiting, self.preparing = self.preparing, []
        for deferred, plan in waiting:
            deferred.callback(FakePrepared(plan, self.endpoints(plan)))

    def start(self, run_id: str, prepared: PreparedPlan, on_window: WindowCallback) -> FakeRun:
        assert isinstance(prepared, FakePrepared), "not prepared by this engine"
        run = FakeRun(self, run_id, prepared.plan, on_window)
        self.runs.append(run)
        return run


def sip_plan(callers: int = 25, callees: int = 25) -> dict[str, Any]:
    """SPEC.md's example plan, with SIP passwords and a registrar."""
    return {
        "name": "through-pbx",
        "duration_s": 30,
        "registrars": {
            "pbx": {"host": "127.0.0.1", "port": 5060, "transport": "udp", "domain": "pbx.test"}
        },
        "groups": [
            {"name": "callees", "role": "callee", "count": callees, "registrar": "pbx",
             "user": "2{i:03d}", "password": "s3cret-callee-{i}", "codecs": ["PCMU"]},
            {"name": "callers", "role": "caller", "count": callers, "registrar": "pbx",
             "user": "1{i:03d}", "password": "s3cret-caller-{i}", "codecs": ["PCMU"],
             "call": {"to": "callees", "duration_s": 20, "rate_per_s": 10}},
        ],
    }  # fmt: skip


class RecordingConnection:
    """A :class:`callmeter.control.client.Connection` that keeps what is sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.dropped = 0
        self.closed = 0

    def send_text(self, text: str) -> None:
        self.sent.append(text)

    def drop(self) -> None:
        self.dropped += 1

    def close(self) -> None:
        self.closed += 1

    def messages(self) -> list[p.Message]:
        return [p.parse_message(t) for t in self.sent]

    def types(self) -> list[str]:
        return [json.loads(t)["type"] for t in self.sent]

    def take(self) -> list[p.Message]:
        out = self.messages()
        self.sent.clear()
        return out
