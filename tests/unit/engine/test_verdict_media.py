"""The verdict on missing media: never a pass by default; a plan can relax it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from callmeter.engine.metrics import GroupMetrics, StreamResult
from callmeter.engine.verdict import evaluate
from callmeter.plan import PlanError, parse_plan

PLAN: dict[str, Any] = {
    "name": "behind-nat",
    "duration_s": 10,
    "groups": [
        {"name": "callees", "role": "callee", "count": 1},
        {"name": "callers", "role": "caller", "count": 1, "call": {"to": "callees"}},
    ],
}


def report(*states: str) -> dict[str, Any]:
    metrics = GroupMetrics()
    metrics.call_attempted()
    metrics.call_established(100.0, 50.0)
    for state in states:
        received = 500 if state in ("ok", "stopped") else 0
        metrics.stream_final(
            StreamResult(
                sent_packets=500,
                received_packets=received,
                expected_packets=received,
                jitter_ms=0.5 if received else None,
                mos=4.4 if received else None,
                media_state=state,
            ),
            None,
        )
    return {"total": metrics.run_set.as_report()}


def verdict(states: tuple[str, ...], passing: dict[str, Any] | None = None) -> dict[str, Any]:
    plan = copy.deepcopy(PLAN)
    if passing is not None:
        plan["pass"] = passing
    return evaluate(parse_plan(plan, max_endpoints=10), report(*states))


def criterion(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["criteria"] if c["criterion"] == name)


def test_calls_up_with_no_rtp_fail_by_default() -> None:
    """Behind a NAT that drops every RTP packet: calls established, nothing received."""
    result = verdict(("no_media", "no_media"))
    assert not result["passed"]
    assert criterion(result, "every call established")["passed"]
    media = criterion(result, "every stream received media")
    assert media == {
        "criterion": "every stream received media",
        "limit": 0,
        "value": 2,
        "passed": False,
    }


def test_the_media_criterion_applies_with_other_limits_too() -> None:
    result = verdict(("ok", "stopped"), {"mos_min": 4.0})
    assert not result["passed"]
    assert not criterion(result, "every stream received media")["passed"]
    assert criterion(result, "mos_min")["passed"]


def test_media_everywhere_passes() -> None:
    result = verdict(("ok", "ok", "not_expected"))
    assert result["passed"]
    assert criterion(result, "every stream received media")["value"] == 0


def test_loss_with_no_media_fails_its_criterion() -> None:
    """No media packet: loss is None, not 0 %, so loss_pct_max cannot pass on it."""
    result = verdict(("one_way",), {"loss_pct_max": 1.0, "media_required": False})
    assert criterion(result, "loss_pct_max") == {
        "criterion": "loss_pct_max",
        "limit": 1.0,
        "value": None,
        "passed": False,
    }


@pytest.mark.parametrize(
    ("passing", "passed"),
    [
        ({"media_required": False}, True),
        ({"no_media_max": 1}, True),
        ({"no_media_max": 0}, False),
    ],
)
def test_a_plan_can_relax_the_media_criterion(passing: dict[str, Any], passed: bool) -> None:
    result = verdict(("ok", "stopped"), passing)
    assert result["passed"] is passed
    names = [c["criterion"] for c in result["criteria"]]
    assert "every stream received media" not in names


def test_media_required_false_and_a_limit_contradict() -> None:
    plan = copy.deepcopy(PLAN)
    plan["pass"] = {"media_required": False, "no_media_max": 2}
    with pytest.raises(PlanError, match=r"pass\.no_media_max: contradicts"):
        parse_plan(plan, max_endpoints=10)
    plan["pass"] = {"media_required": "no"}
    with pytest.raises(PlanError, match=r"pass\.media_required: must be true or false"):
        parse_plan(plan, max_endpoints=10)
