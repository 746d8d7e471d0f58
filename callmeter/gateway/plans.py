"""Plan checks at the gateway: what ``POST /api/runs`` refuses with a 400 naming the field.

:func:`validate_plan` applies the worker's own plan validator (callmeter.plan), so a bad plan
is refused at submission with every problem named; the worker checks again on ``assign``.

A problem is ``"field.path: problem"`` and never quotes a value: plans carry SIP passwords.
"""

from __future__ import annotations

from typing import Any

from callmeter.plan import PlanError, parse_plan

__all__ = ["ROLES", "plan_endpoints", "validate_plan"]

ROLES = ("caller", "callee")


def validate_plan(plan: object) -> list[str]:
    """The problems of ``plan`` (empty when it passes), each naming the field (``plan.``...).

    The full validator of callmeter.plan (docs/plan.md), the one the worker applies again on
    ``assign``; MAX_ENDPOINTS is the worker's to check.
    """
    try:
        parse_plan(plan, max_endpoints=10**9)
    except PlanError as error:
        return [
            problem if problem.startswith("plan") else f"plan.{problem}"
            for problem in error.problems
        ]
    return []


def plan_endpoints(plan: dict[str, Any]) -> int:
    """Endpoints a plan that passed :func:`validate_plan` needs: the sum of group counts."""
    return sum(int(group["count"]) for group in plan["groups"])
