"""Plan validation: every problem named by its field path, before anything is sent."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.plan import PlanError, format_pattern, parse_plan

SPEC_EXAMPLE: dict[str, Any] = {
    "name": "through-pbx",
    "duration_s": 30,
    "ramp_up_s": 5,
    "registrars": {
        "pbx": {"host": "127.0.0.1", "port": 5060, "transport": "udp", "domain": "example.test"}
    },
    "groups": [
        {
            "name": "callees",
            "role": "callee",
            "count": 25,
            "registrar": "pbx",
            "user": "2{i:03d}",
            "password": "pw-{i}",
            "codecs": ["PCMU", "PCMA"],
        },
        {
            "name": "callers",
            "role": "caller",
            "count": 25,
            "registrar": "pbx",
            "user": "1{i:03d}",
            "password": "pw-{i}",
            "codecs": ["PCMU"],
            "media": "https://media.example.test/sample.wav",
            "call": {"to": "callees", "duration_s": 20, "rate_per_s": 10},
        },
    ],
    "pass": {"setup_time_ms_p95_max": 500, "loss_pct_max": 1.0, "mos_min": 4.0},
}


def problems(plan: Any, max_endpoints: int = 1000) -> list[str]:
    with pytest.raises(PlanError) as caught:
        parse_plan(plan, max_endpoints=max_endpoints)
    return caught.value.problems


def with_change(path: list[Any], value: Any) -> dict[str, Any]:
    plan = copy.deepcopy(SPEC_EXAMPLE)
    target: Any = plan
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return plan


def test_spec_example_parses() -> None:
    plan = parse_plan(SPEC_EXAMPLE, max_endpoints=1000)
    assert plan.name == "through-pbx" and plan.endpoints == 50
    callers = plan.group("callers")
    assert callers.user_of(7) == "1007" and callers.password_of(7) == "pw-7"
    assert callers.call is not None and callers.call.to_group and callers.call.rate_per_s == 10
    assert plan.registrars["pbx"].domain == "example.test"
    assert plan.passing.limits == {
        "setup_time_ms_p95_max": 500,
        "loss_pct_max": 1.0,
        "mos_min": 4.0,
    }


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (["groups", 1, "count"], 5000, "groups[1].count: must be 1..1000"),
        (["groups", 1, "count"], 0, "groups[1].count: must be 1..1000000"),
        (["groups", 1, "count"], "many", "groups[1].count: must be an integer"),
        (["groups", 0, "role"], "listener", "groups[0].role: must be one of caller, callee"),
        (["groups", 0, "registrar"], "nope", "groups[0].registrar: unknown registrar 'nope'"),
        (["groups", 1, "codecs"], ["PCMU", "GSM"], "groups[1].codecs[1]: must be one of"),
        (["groups", 1, "call", "to"], "nobody", "groups[1].call.to: 'nobody' is neither"),
        (["groups", 1, "call", "rate_per_s"], -1, "groups[1].call.rate_per_s: must be"),
        (["groups", 1, "media"], "ftp://x/y.wav", "groups[1].media: must be an http://"),
        (["groups", 1, "user"], "{i.__class__}", "groups[1].user: only {i}"),
        (["groups", 1, "user"], "fixed", "groups[1].user: must contain {i}"),
        (["groups", 1, "call"], KeyError, "groups[1].call: a caller group needs a call"),
        (["groups", 1, "colour"], "red", "groups[1].colour: unknown field"),
        (["registrars", "pbx", "transport"], "sctp", "registrars.pbx.transport: must be one of"),
        (["registrars", "pbx", "port"], 70000, "registrars.pbx.port: must be 1..65535"),
        (["duration_s"], 0, "duration_s: must be 1..604800"),
        (["duration_s"], KeyError, "duration_s: required"),
        (["ramp_up_s"], 60, "ramp_up_s: must not exceed duration_s"),
        (["pass", "mos_min"], "good", "pass.mos_min: must be a number"),
        (["pass", "speed"], 1, "pass.speed: unknown field"),
        (["name"], "", "name: must be a non-empty string"),
    ],
)
def test_each_problem_names_its_field(path: list[Any], value: Any, expected: str) -> None:
    found = problems(with_change(path, value))
    assert any(p.startswith(expected) for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    plan = with_change(["groups", 1, "count"], 0)
    plan["groups"][0]["role"] = "x"
    plan["duration_s"] = -5
    found = problems(plan)
    assert len(found) >= 3


def test_total_endpoints_above_max() -> None:
    found = problems(SPEC_EXAMPLE, max_endpoints=40)
    assert "groups: 50 endpoints in all: must be at most MAX_ENDPOINTS (40)" in found


def test_not_an_object() -> None:
    assert problems([1, 2]) == ["plan: must be a JSON object"]


def test_sip_uri_target_and_defaults() -> None:
    plan = parse_plan(
        {
            "name": "echo",
            "duration_s": 10,
            "groups": [
                {
                    "name": "c",
                    "role": "caller",
                    "count": 2,
                    "call": {"to": "sip:echo@127.0.0.1:5060;transport=tcp"},
                }
            ],
        },
        max_endpoints=10,
    )
    group = plan.group("c")
    assert group.call is not None and not group.call.to_group
    assert group.codecs == ("PCMU", "PCMA") and group.user_of(1) == "c-1"
    assert plan.passing.default


def test_examples_directory_plans_are_valid() -> None:
    for path in sorted((Path(__file__).parents[3] / "examples").glob("*.json")):
        parse_plan(json.loads(path.read_text()), max_endpoints=100_000)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "name",
                        "groups",
                        "count",
                        "role",
                        "call",
                        "to",
                        "duration_s",
                        "registrars",
                        "x",
                    ]
                ),
                children,
                max_size=5,
            )
        ),
        max_leaves=20,
    )
)
def test_garbage_gives_plan_error_only(data: Any) -> None:
    try:
        parse_plan(data, max_endpoints=100)
    except PlanError as error:
        assert error.problems and all(": " in p for p in error.problems)


@given(st.integers(min_value=0, max_value=10**6))
def test_format_pattern(index: int) -> None:
    assert format_pattern("u{i:05d}", index) == f"u{index:05d}"


def test_problems_never_quote_a_password() -> None:
    for secret in ("s3cr{et}", "s3cr{i:zz}", "s3cr{", "s3cr}x{i!r}"):
        found = problems(with_change(["groups", 1, "password"], secret))
        assert found and all("s3cr" not in p and "et}" not in p for p in found), found


def test_emodel_plc_assumption() -> None:
    assert parse_plan(SPEC_EXAMPLE, max_endpoints=1000).emodel_plc is True
    plan = parse_plan({**SPEC_EXAMPLE, "emodel": {"plc": False}}, max_endpoints=1000)
    assert plan.emodel_plc is False
    assert problems({**SPEC_EXAMPLE, "emodel": {"plc": "no"}}) == [
        "emodel.plc: must be true or false"
    ]
    assert problems({**SPEC_EXAMPLE, "emodel": {"bpl": 3}})[0].startswith(
        "emodel.bpl: unknown field"
    )
    assert problems({**SPEC_EXAMPLE, "emodel": True}) == [
        'emodel: must be an object such as {"plc": false}'
    ]


def test_media_criteria_parse() -> None:
    passing = {"no_media_max": 2, "media_required": True}
    plan = parse_plan({**SPEC_EXAMPLE, "pass": passing}, max_endpoints=1000)
    assert plan.passing.limits == {"no_media_max": 2.0} and plan.passing.media_required
    relaxed = parse_plan({**SPEC_EXAMPLE, "pass": {"media_required": False}}, max_endpoints=1000)
    assert relaxed.passing.default and not relaxed.passing.media_required
