"""The engine as its two callers hold it: ``callmeter run`` and the daemon's control plane.

One road for a plan (:mod:`callmeter.control.engine_api` is the interface)::

    Engine.validate(plan)   problems, at once (the plan parsed once: endpoints() and prepare()
                            reuse that parse for the same dict)
    Engine.prepare(plan)    -> PreparedPlan: the plan's media files fetched once, here (the
                            worker processes get their paths), the process count chosen
    Engine.start(run_id, prepared, on_window) -> Run: MetricWindows as they close, progress(),
                            cancel(), abort(), finished (the report), calls

Runs go to worker processes (:class:`~callmeter.engine.processes.ShardedRun`), never the
caller's reactor, unless the caller asks with ``in_process=True`` and the run needs one process
(``callmeter run --processes 1``). The daemon never does: the media hot path cannot delay the
gateway's heartbeats, the health endpoint or systemd's watchdog.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure

from callmeter.config import Config
from callmeter.control.engine_api import (
    MetricWindow,
    PreparedPlan,
    PrepareError,
    WindowCallback,
)
from callmeter.engine.processes import RunFailed, ShardedRun
from callmeter.engine.run import CallRecord, MediaFactory, TestRun, cannot_listen
from callmeter.plan import Plan, PlanError, parse_plan

__all__ = ["Engine", "MediaFetch", "Prepared", "Run", "RunMediaFactory", "media_reason"]

MediaFetch = Callable[[Config, Plan, Any], "defer.Deferred[dict[str, str]]"]
"""Fetches a plan's media files: URL -> local path (default: engine.media.fetch_plan_media)."""

RunMediaFactory = Callable[[Config, Plan, Any, Mapping[str, str]], MediaFactory]
"""Builds an in-process run's media from the fetched files (default: engine.media)."""


@dataclass(frozen=True)
class Prepared:
    """A plan ready to start (the engine_api PreparedPlan of this engine)."""

    plan: Plan
    #: The plan's media URLs and where each is on local disk (fetched once).
    media: Mapping[str, str] = field(default_factory=dict)
    #: Worker processes; 0 runs the plan in the caller's reactor.
    processes: int = 1

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def endpoints(self) -> int:
        return self.plan.endpoints

    @property
    def duration_s(self) -> float:
        return self.plan.duration_s


class Run:
    """A running plan (the engine_api RunHandle), in worker processes or in this reactor."""

    def __init__(
        self,
        run: TestRun | ShardedRun | None,
        endpoints: int,
        started: defer.Deferred[dict[str, Any]],
    ) -> None:
        self._run = run
        self._endpoints = endpoints
        self._running = True
        self._finished: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._stopped: list[defer.Deferred[None]] = []
        started.addBoth(self._ended)

    def _ended(self, result: dict[str, Any] | Failure) -> None:
        self._running = False
        stopped, self._stopped = self._stopped, []
        for waiter in stopped:
            waiter.callback(None)
        if isinstance(result, Failure):
            self._finished.errback(result)
        else:
            self._finished.callback(result)

    @property
    def finished(self) -> defer.Deferred[dict[str, Any]]:
        return self._finished

    @property
    def calls(self) -> list[CallRecord]:
        return self._run.calls if self._run is not None else []

    @property
    def active_endpoints(self) -> int:
        return self._endpoints if self._running else 0

    def progress(self) -> dict[str, Any]:
        return self._run.progress() if self._run is not None else {}

    def cancel(self) -> defer.Deferred[None]:
        if self._run is not None and self._running:
            self._run.cancel()
        return self._when_stopped()

    def abort(self) -> defer.Deferred[None]:
        if self._run is not None and self._running:
            self._run.abort()
        return self._when_stopped()

    def _when_stopped(self) -> defer.Deferred[None]:
        if not self._running:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._stopped.append(waiter)
        return waiter


class Engine:
    """Validates, prepares and runs plans, one at a time; see the module docstring.

    ``processes``: the most worker processes a run may use (default: one per core); a run
    uses no more than it has endpoints. ``in_process``: a one-process run goes in this
    reactor (``callmeter run --processes 1``), not a worker process. ``fetch_media`` and
    ``media_factory`` replace the engine's media (tests).
    """

    def __init__(
        self,
        config: Config,
        reactor: Any,
        *,
        processes: int | None = None,
        environ: Mapping[str, str] | None = None,
        in_process: bool = False,
        fetch_media: MediaFetch | None = None,
        media_factory: RunMediaFactory | None = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.processes = max(1, processes or os.cpu_count() or 1)
        self.environ = dict(os.environ if environ is None else environ)
        self.in_process = in_process
        self._fetch_media = fetch_media
        self._media_factory = media_factory
        #: The last plan dict parsed and what came of it (validate, endpoints and prepare of
        #: one assignment parse it once). Held by identity: a dict is not edited in between.
        self._parsed: tuple[dict[str, Any], Plan | PlanError] | None = None

    @property
    def capacity(self) -> int:
        return self.config.max_endpoints

    # -- one parse ------------------------------------------------------------------------

    def parse(self, plan: dict[str, Any]) -> Plan:
        """The parsed plan (PlanError with every problem); the same dict is parsed once."""
        if self._parsed is not None and self._parsed[0] is plan:
            outcome = self._parsed[1]
        else:
            try:
                outcome = parse_plan(plan, max_endpoints=self.config.max_endpoints)
            except PlanError as error:
                outcome = error
            self._parsed = (plan, outcome)
        if isinstance(outcome, PlanError):
            raise outcome
        return outcome

    def validate(self, plan: dict[str, Any]) -> list[str]:
        try:
            self.parse(plan)
        except PlanError as error:
            return list(error.problems)
        return []

    def endpoints(self, plan: dict[str, Any]) -> int:
        try:
            return self.parse(plan).endpoints
        except PlanError:
            return 0

    # -- prepare and start ----------------------------------------------------------------

    def prepare(self, plan: dict[str, Any]) -> defer.Deferred[PreparedPlan]:
        """Validate, fetch the media files (once, here), choose the process count."""
        try:
            parsed = self.parse(plan)
        except PlanError:
            return defer.fail()
        count = min(self.processes, max(1, parsed.endpoints))
        processes = 0 if count == 1 and self.in_process else count
        fetch = self._fetch_media or _fetch_plan_media
        try:
            fetching = fetch(self.config, parsed, self.reactor)
        except (ValueError, OSError) as error:
            fetching = defer.fail(error)

        def fetched(files: dict[str, str]) -> PreparedPlan:
            return Prepared(parsed, dict(files), processes)

        def failed(failure: Failure) -> Failure:
            if failure.check(ValueError, OSError) and failure.value is not None:
                return Failure(PrepareError(media_reason(failure.value)))
            return failure

        prepared: defer.Deferred[PreparedPlan] = fetching.addCallbacks(fetched, failed)
        return prepared

    def start(self, run_id: str, prepared: PreparedPlan, on_window: WindowCallback) -> Run:
        """Start a plan this engine prepared; ``on_window`` gets each MetricWindow."""
        if not isinstance(prepared, Prepared):
            raise TypeError("the plan was not prepared by this engine")

        def window(merged: dict[str, Any]) -> None:
            on_window(
                MetricWindow(
                    start=merged["start"],
                    end=merged["end"],
                    groups=merged["groups"],
                    total=merged["total"],
                )
            )

        if prepared.processes == 0:
            return self._start_here(run_id, prepared, window)
        run = ShardedRun(
            prepared.plan,
            self.config,
            self.reactor,
            prepared.processes,
            environ=self.environ,
            on_window=window,
            run_id=run_id,
        )
        return Run(run, prepared.endpoints, run.start(media_files=prepared.media))

    def _start_here(
        self, run_id: str, prepared: Prepared, window: Callable[[dict[str, Any]], None]
    ) -> Run:
        """One process, this reactor: a TestRun with media from the prepared files."""
        config, plan = self.config, prepared.plan
        make_media = self._media_factory or _media_factory
        try:
            factory = make_media(config, plan, self.reactor, prepared.media)
        except ValueError as error:
            return Run(None, 0, defer.fail(RunFailed(f"media: {error}", config=True)))
        run = TestRun(plan, config, self.reactor, factory, on_window=window, run_id=run_id)
        try:
            started = run.start()
        except CannotListenError as error:
            failure = RunFailed(cannot_listen(config.sip_ip, error), config=True)
            return Run(None, 0, defer.fail(failure))
        return Run(run, prepared.endpoints, started)


def media_reason(error: BaseException) -> str:
    """``"media: URL: reason"``, the one line both callers show for a media file that fails."""
    text = str(error)
    if text.startswith("media "):  # MediaError's own "media URL: reason"
        text = text[len("media ") :]
    return f"media: {text}"


def _fetch_plan_media(config: Config, plan: Plan, reactor: Any) -> defer.Deferred[dict[str, str]]:
    from callmeter.engine.media import fetch_plan_media

    fetching: defer.Deferred[dict[str, str]] = fetch_plan_media(config, plan, reactor)
    return fetching


def _media_factory(
    config: Config, plan: Plan, reactor: Any, files: Mapping[str, str]
) -> MediaFactory:
    from callmeter.engine.media import media_factory

    return media_factory(config, plan, reactor, files)
