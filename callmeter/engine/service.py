"""Where the daemon's engine used to live: the names kept for callmeter.service and older imports.

:class:`PlanEngine` is :class:`callmeter.engine.Engine` (no ``in_process``: assignments run in
worker processes, never in the daemon's reactor), :class:`PlanRun` its run handle.
"""

from __future__ import annotations

from callmeter.engine.engine import Engine as PlanEngine
from callmeter.engine.engine import Run as PlanRun

__all__ = ["PlanEngine", "PlanRun"]
