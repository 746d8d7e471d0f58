"""The gateway's /api through twisted.web in memory (treq's StubTreq), store synchronous."""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock

from callmeter.gateway.server import Gateway
from callmeter.gateway.service import gateway_site
from callmeter.gateway.store import Store

ADMIN = "admin-secret-1"
AUTH = {b"Authorization": [b"Bearer " + ADMIN.encode()]}
URL = "http://gw.test/api"
PLAN = {"name": "p", "duration_s": 10, "groups": [{"name": "a", "role": "callee", "count": 2}]}


class Api:
    def __init__(self) -> None:
        self.clock = Clock()
        self.gateway = Gateway(Store(":memory:"), {"lab-1": "tok-1"}, self.clock)
        self.treq: Any = StubTreq(gateway_site(self.gateway, ADMIN).resource)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Any = AUTH,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        d = self.treq.request(method, URL + path, headers=headers, data=data)
        self.treq.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        (response,) = results
        content: list[bytes] = []
        self.treq.content(response).addBoth(content.append)
        self.treq.flush()
        return response.code, json.loads(content[0]) if content[0] else None


@pytest.fixture
def api() -> Api:
    return Api()


@pytest.mark.parametrize(
    "headers",
    [None, {b"Authorization": [b"Bearer wrong"]}, {b"Authorization": [b"Basic " + ADMIN.encode()]}],
)
def test_every_call_needs_the_admin_token(api: Api, headers: Any) -> None:
    for method, path in [
        ("GET", "/workers"),
        ("POST", "/runs"),
        ("GET", "/runs/r-1"),
        ("GET", "/runs/r-1/windows"),
        ("POST", "/runs/r-1/cancel"),
    ]:
        code, body = api.call(method, path, PLAN, headers=headers or {})
        assert code == 401, (method, path)
        assert "admin token" in body["error"]


def test_workers_list(api: Api) -> None:
    code, body = api.call("GET", "/workers")
    assert code == 200
    assert body[0]["id"] == "lab-1" and body[0]["state"] == "OFFLINE"
    assert set(body[0]) >= {
        "id", "name", "state", "last_heartbeat", "max_endpoints", "active_endpoints",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"plan": {"groups": PLAN["groups"]}}, "plan.name"),
        ({"plan": {"name": "p", "duration_s": 10, "groups": []}}, "plan.groups"),
        ({"plan": {"name": "p", "duration_s": 10,
                   "groups": [{"name": "a", "role": "callee", "count": "2"}]}},
         "plan.groups[0].count"),
        ({"plan": {"name": "p", "duration_s": 10,
                   "groups": [{"name": "a", "role": "dj", "count": 2}]}},
         "plan.groups[0].role"),
        ({"plan": PLAN, "worker": "nobody"}, "worker"),
        ({}, "plan"),
        ([1], "body"),
    ],
)  # fmt: skip
def test_bad_plan_is_400_naming_the_field(api: Api, body: Any, field: str) -> None:
    code, reply = api.call("POST", "/runs", body)
    assert code == 400
    assert reply["error"].startswith(field + ":")


def test_not_json_is_400(api: Api) -> None:
    code, reply = api.call("POST", "/runs", raw=b"{nope")
    assert code == 400 and reply["error"].startswith("body:")


def test_submit_follow_and_cancel_a_queued_run(api: Api) -> None:
    code, reply = api.call("POST", "/runs", {"plan": PLAN, "worker": None})
    assert code == 201
    run = reply["id"]
    code, info = api.call("GET", f"/runs/{run}")
    assert code == 200
    assert info == {
        "id": run, "state": "queued", "worker": None, "windows": 0, "report": None,
        "reason": None, "created": api.clock.seconds(),
    }  # fmt: skip
    code, windows = api.call("GET", f"/runs/{run}/windows?after=0")
    assert (code, windows) == (200, [])
    code, _ = api.call("POST", f"/runs/{run}/cancel")
    assert code == 202
    assert api.call("GET", f"/runs/{run}")[1]["state"] == "cancelled"
    code, reply = api.call("POST", f"/runs/{run}/cancel")
    assert code == 409 and reply["error"] == "run: already cancelled"


def test_windows_in_order_with_no_gap(api: Api) -> None:
    run = api.call("POST", "/runs", {"plan": PLAN, "worker": "lab-1"})[1]["id"]
    store = api.gateway.store
    for seq in (1, 2, 4, 2):  # 3 missing, 2 twice
        store.add_window(run, seq, {"seq": seq, "start": seq, "end": seq + 5}, None)
    code, windows = api.call("GET", f"/runs/{run}/windows?after=0")
    assert [w["seq"] for w in windows] == [1, 2]
    store.add_window(run, 3, {"seq": 3}, None)
    assert [w["seq"] for w in api.call("GET", f"/runs/{run}/windows?after=2")[1]] == [3, 4]
    assert api.call("GET", f"/runs/{run}")[1]["windows"] == 4
    assert api.call("GET", f"/runs/{run}/windows?after=x")[0] == 400


def test_unknown_things(api: Api) -> None:
    assert api.call("GET", "/runs/r-404")[0] == 404
    assert api.call("GET", "/runs/r-404/windows")[0] == 404
    assert api.call("POST", "/runs/r-404/cancel")[0] == 404
    assert api.call("GET", "/nothing")[0] == 404
    assert api.call("DELETE", "/workers")[0] == 405
