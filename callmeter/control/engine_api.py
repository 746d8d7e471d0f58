"""The narrow interface between the control plane and the engine that runs plans.

ARCHITECTURE.md "One process, two planes": the control plane knows nothing of SIP and the engine
knows nothing of WebSockets; they meet here, in "run this plan, give me metric windows, cancel".
The control client (:mod:`callmeter.control.client`) is written against these protocols only;
the engine (callmeter.engine) satisfies them structurally, with no import of this module needed.

What the control plane sends over the network comes from here and only from here: the
:class:`MetricWindow` values and the report ``dict``. Both must hold aggregated metrics only
(SPEC.md "Metrics and the report"): no SIP message, no RTP payload, no SIP credential. The plan
given to :meth:`Engine.start` is never echoed back by the control plane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.defer import Deferred

__all__ = ["Engine", "MetricWindow", "RunHandle", "WindowCallback"]


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


class RunHandle(Protocol):
    """A running plan, as :meth:`Engine.start` returns it."""

    @property
    def finished(self) -> Deferred[dict[str, Any]]:
        """Fires once with the run's report (the ``--report`` JSON) when the run ends, whether
        it ran to its end or was cancelled; fails only if the engine itself broke."""

    @property
    def active_endpoints(self) -> int:
        """Endpoints running now (registered or in a call), for heartbeats and /health."""

    def cancel(self) -> Deferred[None]:
        """Stop the run cleanly (BYE every call, un-REGISTER every endpoint); fires when done.

        ``finished`` still fires afterwards, with the report of what ran.
        """


class Engine(Protocol):
    """Runs plans. One run at a time is all the control plane asks of it."""

    @property
    def capacity(self) -> int:
        """The most endpoints this host can run (its measured capacity)."""

    def validate(self, plan: dict[str, Any]) -> list[str]:
        """Problems with ``plan``, each ``"field.path: problem"`` (empty: valid).

        A problem never quotes the field's value: plans carry SIP passwords.
        """

    def endpoints(self, plan: dict[str, Any]) -> int:
        """How many endpoints a valid ``plan`` needs (compared with MAX_ENDPOINTS)."""

    def start(self, run_id: str, plan: dict[str, Any], on_window: WindowCallback) -> RunHandle:
        """Start a valid ``plan`` now; ``on_window`` gets each metric window as it closes."""
