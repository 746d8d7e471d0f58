"""The engine as the control plane sees it (callmeter/control/engine_api.py's ``Engine``).

Assignments run in worker processes (:class:`~callmeter.engine.processes.ShardedRun`), never
in the daemon's own reactor: the media hot path cannot delay the gateway's heartbeats, the
health endpoint or systemd's watchdog (ARCHITECTURE.md: "the control plane stays in the
parent").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet import defer

from callmeter.config import Config
from callmeter.control.engine_api import MetricWindow, WindowCallback
from callmeter.engine.processes import ShardedRun
from callmeter.plan import PlanError, parse_plan

__all__ = ["PlanEngine", "PlanRun"]


class PlanRun:
    """A running assignment: the RunHandle of engine_api."""

    def __init__(self, run: ShardedRun, endpoints: int) -> None:
        self._run = run
        self._endpoints = endpoints
        self._finished: defer.Deferred[dict[str, Any]] = run.start()
        self._finished.addBoth(self._ended)
        self._running = True

    def _ended(self, result: Any) -> Any:
        self._running = False
        return result

    @property
    def finished(self) -> defer.Deferred[dict[str, Any]]:
        return self._finished

    @property
    def active_endpoints(self) -> int:
        return self._endpoints if self._running else 0

    def cancel(self) -> defer.Deferred[None]:
        done: defer.Deferred[None] = defer.Deferred()
        self._run.cancel().addBoth(lambda _: done.callback(None) if not done.called else None)
        return done


class PlanEngine:
    """Validates and runs plans for the control plane, one run at a time."""

    def __init__(
        self,
        config: Config,
        reactor: Any,
        *,
        processes: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.processes = processes or os.cpu_count() or 1
        self.environ = dict(os.environ if environ is None else environ)

    @property
    def capacity(self) -> int:
        return self.config.max_endpoints

    def validate(self, plan: dict[str, Any]) -> list[str]:
        try:
            parse_plan(plan, max_endpoints=self.config.max_endpoints)
        except PlanError as error:
            return error.problems
        return []

    def endpoints(self, plan: dict[str, Any]) -> int:
        groups = plan.get("groups") if isinstance(plan, dict) else None
        if not isinstance(groups, list):
            return 0
        return sum(
            g.get("count", 0)
            for g in groups
            if isinstance(g, dict) and isinstance(g.get("count"), int)
        )

    def start(self, run_id: str, plan: dict[str, Any], on_window: WindowCallback) -> PlanRun:
        parsed = parse_plan(plan, max_endpoints=self.config.max_endpoints)

        def window(merged: dict[str, Any]) -> None:
            on_window(
                MetricWindow(
                    start=merged["start"],
                    end=merged["end"],
                    groups=merged["groups"],
                    total=merged["total"],
                )
            )

        run = ShardedRun(
            parsed,
            self.config,
            self.reactor,
            min(self.processes, max(1, parsed.endpoints)),
            environ=self.environ,
            on_window=window,
            run_id=run_id,
        )
        return PlanRun(run, parsed.endpoints)
