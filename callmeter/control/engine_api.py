"""The narrow interface between the control plane and the engine that runs plans.

ARCHITECTURE.md "One process, two planes": the control plane knows nothing of SIP and the engine
knows nothing of WebSockets; they meet here, in "run this plan, give me metric windows, cancel".
The control client (:mod:`callmeter.control.client`) and ``callmeter run``
(:mod:`callmeter.runner`) are written against these protocols only, and hold the engine the same
way: validate, prepare (media fetched once, processes chosen), start, windows, the report.
:class:`callmeter.engine.Engine` satisfies them.

What the control plane sends over the network comes from here and only from here: the
:class:`MetricWindow` values and the report ``dict``. Both must hold aggregated metrics only
(SPEC.md "Metrics and the report"): no SIP message, no RTP payload, no SIP credential. The plan
given to :meth:`Engine.prepare` is never echoed back by the control plane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

__all__ = [
    "Engine",
    "MetricWindow",
    "PrepareError",
    "PreparedPlan",
    "RunHandle",
    "WindowCallback",
]


@dataclass(frozen=True)
class MetricWindow:
    """One period of a run, in the report's shape (SPEC.md "Metrics and the report").

    ``start`` and ``end`` are Unix seconds; ``groups`` maps a group name to its metrics for this
    window alone (``{"sip": {...}, "rtp": {...}}``), ``total`` is the same over all groups.
    The control plane numbers the windows; the engine does not.
    """

    start: float
    end: float
    groups: dict[str, Any] = field(default_factory=dict)
    total: dict[str, Any] = field(default_factory=dict)


WindowCallback = Callable[[MetricWindow], None]
"""Called by the engine with each window as it closes (every 5 s during a run)."""


class PrepareError(Exception):
    """The plan is valid but cannot run here: the message is the reason, one line for the
    operator (``"media: https://x/y.wav: 404 Not Found"``). ``callmeter run`` exits 2 with it;
    the control plane rejects the assignment with it."""


class PreparedPlan(Protocol):
    """A plan made ready to start by :meth:`Engine.prepare`: validated, its media files on
    local disk, its process count chosen. Only the engine that prepared it can start it."""

    @property
    def name(self) -> str:
        """The plan's name."""

    @property
    def endpoints(self) -> int:
        """Endpoints the plan runs, over all its groups."""

    @property
    def duration_s(self) -> float:
        """The plan's duration."""

    @property
    def processes(self) -> int:
        """Worker processes the run will use (0: in the caller's own reactor)."""


class RunHandle(Protocol):
    """A running plan, as :meth:`Engine.start` returns it."""

    @property
    def finished(self) -> Deferred[dict[str, Any]]:
        """Fires once with the run's report (the ``--report`` JSON) when the run ends, whether
        it ran to its end or was cancelled; fails only if the engine itself broke."""

    @property
    def calls(self) -> list[Any]:
        """The call records (the ``--calls`` CSV rows), complete once ``finished`` fired."""

    @property
    def active_endpoints(self) -> int:
        """Endpoints running now (registered or in a call), for heartbeats and /health."""

    def progress(self) -> dict[str, Any]:
        """Live figures (registered, calls up, failures, elapsed_s), for a display."""

    def cancel(self) -> Deferred[None]:
        """Stop the run cleanly (BYE every call, un-REGISTER every endpoint); fires when done.

        ``finished`` still fires afterwards, with the report of what ran.
        """

    def abort(self) -> Deferred[None]:
        """Stop now: no waiting for BYEs or un-REGISTERs; ``finished`` fires with the report
        of what ran, interrupted."""


class Engine(Protocol):
    """Runs plans. ``callmeter run`` and the control plane hold it the same way:
    :meth:`validate` (the problems, at once), :meth:`prepare` (media fetched, processes
    chosen), :meth:`start` (windows as they close, the report when it ends)."""

    @property
    def capacity(self) -> int:
        """The most endpoints this host can run (its measured capacity)."""

    def validate(self, plan: dict[str, Any]) -> list[str]:
        """Problems with ``plan``, each ``"field.path: problem"`` (empty: valid).

        A problem never quotes the field's value: plans carry SIP passwords.
        """

    def endpoints(self, plan: dict[str, Any]) -> int:
        """How many endpoints a valid ``plan`` needs (compared with MAX_ENDPOINTS)."""

    def prepare(self, plan: dict[str, Any]) -> Deferred[PreparedPlan]:
        """Make a valid ``plan`` ready to start: fails with ``PlanError`` (every problem) or
        :class:`PrepareError` (a media URL that cannot be fetched, named with the reason)."""

    def start(self, run_id: str, prepared: PreparedPlan, on_window: WindowCallback) -> RunHandle:
        """Start a prepared plan now; ``on_window`` gets each metric window as it closes."""
