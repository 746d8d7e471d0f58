"""Pass or fail: a plan's criteria checked against its report (SPEC.md "The plan").

Each criterion names a figure of ``report["total"]`` and a limit.  With no ``pass`` section
the criteria are that every registration and every call attempted succeeded.  A figure with no
sample (no call got that far) fails its criterion: an absent measurement proves nothing.

Missing media is never perfect: whatever the other criteria, every stream that should have
received media (sendrecv, recvonly) must have received it to the end ("every stream received
media": ``rtp.without_media`` is 0), unless the plan's ``pass`` says ``media_required: false``
or allows some with ``no_media_max``.
"""

from __future__ import annotations

from typing import Any

from callmeter.plan import Plan

__all__ = ["CRITERIA", "evaluate"]

CRITERIA: dict[str, tuple[tuple[str, ...], str]] = {
    "setup_time_ms_p95_max": (("sip", "setup_time_ms", "p95"), "max"),
    "pdd_ms_p95_max": (("sip", "pdd_ms", "p95"), "max"),
    "register_time_ms_p95_max": (("sip", "register", "time_ms", "p95"), "max"),
    "loss_pct_max": (("rtp", "loss_pct"), "max"),
    "jitter_ms_p95_max": (("rtp", "jitter_ms", "p95"), "max"),
    "rtt_ms_p95_max": (("rtp", "rtt_ms", "p95"), "max"),
    "mos_min": (("rtp", "mos", "min"), "min"),
    "call_success_pct_min": (("sip", "calls", "success_pct"), "min"),
    "register_success_pct_min": (("sip", "register", "success_pct"), "min"),
    "no_media_max": (("rtp", "without_media"), "max"),
}
"""Criterion -> (path in the report's total, whether the limit is a maximum or a minimum)."""


def evaluate(plan: Plan, report: dict[str, Any]) -> dict[str, Any]:
    total = report["total"]
    calls = total["sip"]["calls"]
    register = total["sip"]["register"]
    figures = {
        ("sip", "calls", "success_pct"): _pct(calls["established"], calls["attempted"]),
        ("sip", "register", "success_pct"): _pct(register["succeeded"], register["attempted"]),
    }
    results: list[dict[str, Any]] = []
    if plan.passing.default:
        results.append(
            _check("every call established", calls["established"], calls["attempted"], "min")
        )
        results.append(
            _check(
                "every registration succeeded", register["succeeded"], register["attempted"], "min"
            )
        )
        if calls["attempted"] == 0:
            results.append(
                {"criterion": "calls attempted", "limit": 1, "value": 0, "passed": False}
            )
    if plan.passing.media_required and "no_media_max" not in plan.passing.limits:
        missing = total.get("rtp", {}).get("without_media")
        results.append(_check("every stream received media", missing, 0, "max"))
    for name, limit in plan.passing.limits.items():
        path, kind = CRITERIA[name]
        value = figures[path] if path in figures else _dig(total, path)
        results.append(_check(name, value, limit, kind))
    return {"passed": all(r["passed"] for r in results), "criteria": results}


def _check(name: str, value: float | None, limit: float, kind: str) -> dict[str, Any]:
    passed = value is not None and (value <= limit if kind == "max" else value >= limit)
    return {"criterion": name, "limit": limit, "value": value, "passed": passed}


def _dig(tree: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return float(node) if isinstance(node, int | float) else None


def _pct(part: int, whole: int) -> float | None:
    return None if whole == 0 else 100.0 * part / whole
