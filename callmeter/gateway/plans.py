"""Plan checks at the gateway: what ``POST /api/runs`` refuses with a 400 naming the field.

:func:`validate_plan` is the hook: today a structural check of the fixed core of SPEC.md "The
plan" (``name``, ``groups`` with ``name``, ``role`` and ``count``); point it at the full plan
validator (``callmeter.plan``) when that exists. The worker validates again on ``assign`` (its
engine is the judge); this check only spares a round trip for plainly broken plans.

A problem is ``"field.path: problem"`` and never quotes a value: plans carry SIP passwords.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ROLES", "plan_endpoints", "validate_plan"]

ROLES = ("caller", "callee")


def validate_plan(plan: object) -> list[str]:
    """The problems of ``plan`` (empty when it passes), each naming the field."""
    if not isinstance(plan, dict):
        return ["plan: expected an object"]
    problems: list[str] = []
    name = plan.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append("plan.name: expected a non-empty string")
    groups = plan.get("groups")
    if not isinstance(groups, list) or not groups:
        problems.append("plan.groups: expected a non-empty array")
        return problems
    seen: set[str] = set()
    for index, group in enumerate(groups):
        path = f"plan.groups[{index}]"
        if not isinstance(group, dict):
            problems.append(f"{path}: expected an object")
            continue
        group_name = group.get("name")
        if not isinstance(group_name, str) or not group_name.strip():
            problems.append(f"{path}.name: expected a non-empty string")
        elif group_name in seen:
            problems.append(f"{path}.name: duplicate group name")
        else:
            seen.add(group_name)
        if group.get("role") not in ROLES:
            problems.append(f"{path}.role: expected one of {', '.join(ROLES)}")
        count = group.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            problems.append(f"{path}.count: expected an integer >= 1")
    return problems


def plan_endpoints(plan: dict[str, Any]) -> int:
    """Endpoints a plan that passed :func:`validate_plan` needs: the sum of group counts."""
    return sum(int(group["count"]) for group in plan["groups"])
