"""Windows and reports in SPEC.md's shape, built from per-group MetricSets.

One place for the shape, used by a single-process :class:`~callmeter.engine.run.TestRun` and by
the multi-process coordinator, which merges the children's MetricSets first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callmeter.engine.metrics import MetricSet, total_of
from callmeter.engine.verdict import evaluate
from callmeter.plan import Plan

__all__ = ["caller_groups", "format_report", "format_window"]


def caller_groups(plan: Plan) -> list[str]:
    return [group.name for group in plan.groups if group.role == "caller"]


def format_window(
    plan: Plan, seq: int, start: float, end: float, sets: Mapping[str, MetricSet]
) -> dict[str, Any]:
    return {
        "seq": seq,
        "start": round(start, 3),
        "end": round(end, 3),
        "groups": {name: s.as_report() for name, s in sets.items()},
        "total": total_of(sets, caller_groups(plan)).as_report(),
    }


def format_report(
    plan: Plan,
    run_id: str,
    started: float,
    duration_s: float,
    windows: int,
    sets: Mapping[str, MetricSet],
    processes: int = 1,
    interrupted: bool = False,
) -> dict[str, Any]:
    """The run's report; ``interrupted`` (stopped by the user or a signal before
    ``duration_s``) is never a pass, whatever the figures."""
    report: dict[str, Any] = {
        "plan": plan.name,
        "run": run_id,
        "started": round(started, 3),
        "duration_s": round(duration_s, 3),
        "endpoints": plan.endpoints,
        "processes": processes,
        "windows": windows,
        "interrupted": interrupted,
        "groups": {name: s.as_report() for name, s in sets.items()},
        "total": total_of(sets, caller_groups(plan)).as_report(),
    }
    report["pass"] = evaluate(plan, report)
    if interrupted:
        report["pass"]["criteria"].append(
            {
                "criterion": "ran to the end (not interrupted)",
                "limit": plan.duration_s,
                "value": round(duration_s, 3),
                "passed": False,
            }
        )
        report["pass"]["passed"] = False
    return report
