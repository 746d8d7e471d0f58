"""An assignment's road through the control client: validate (at once), prepare (the media
fetched: later), then accepted and started, or rejected with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.config import load_config
from callmeter.control import protocol as p
from callmeter.control.client import ControlClient
from callmeter.engine import Engine
from callmeter.status import WorkerState, WorkerStatus
from tests.unit.controlclient.fakes import RecordingConnection, sip_plan
from tests.unit.controlclient.test_client import assign, go_online, make, state_of
from tests.unit.engine.test_engine_api import MEDIA, Fetches, count_parses


def test_the_answer_waits_for_the_preparation_and_a_repeat_prepares_nothing() -> None:
    s = make()
    s.engine.hold = True
    conn = go_online(s)
    conn.sent.clear()
    assign(s, "r-1")
    assert conn.sent == [] and s.engine.runs == []
    assign(s, "r-1")  # the gateway sends it again while the media is fetched
    assert conn.sent == [] and len(s.engine.prepared) == 1
    assign(s, "r-2")
    (rejected,) = conn.take()
    assert isinstance(rejected, p.Rejected) and rejected.reason == "run r-1 is being prepared"
    s.engine.release()
    accepted, status = conn.take()
    assert isinstance(accepted, p.Accepted) and accepted.run == "r-1"
    assert isinstance(status, p.Status) and status.state == "BUSY"
    assert len(s.engine.runs) == 1 and len(s.engine.prepared) == 1
    assign(s, "r-1")  # and after the start: the same answer, still one run
    assert [m.TYPE for m in conn.take()] == ["accepted"]
    assert len(s.engine.runs) == 1


def test_a_refused_preparation_is_rejected_with_its_reason() -> None:
    s = make()
    s.engine.refuse = f"media: {MEDIA}: HTTP 404 Not Found"
    conn = go_online(s)
    conn.sent.clear()
    assign(s, "r-1")
    (rejected,) = conn.take()
    assert isinstance(rejected, p.Rejected)
    assert rejected.reason == f"media: {MEDIA}: HTTP 404 Not Found"
    assert state_of(s) is WorkerState.ONLINE and s.engine.runs == []
    s.engine.refuse = None
    assign(s, "r-2")  # nothing left behind: the next run is prepared and accepted
    assert [m.TYPE for m in conn.take()] == ["accepted", "status"]


def test_draining_while_preparing_rejects_the_run_when_preparation_ends() -> None:
    s = make()
    s.engine.hold = True
    conn = go_online(s)
    assign(s, "r-1")
    conn.sent.clear()
    s.client.drain(20.0)
    s.engine.release()
    sent = conn.take()
    assert [m.TYPE for m in sent] == ["status", "rejected"]
    assert isinstance(sent[1], p.Rejected) and sent[1].reason == "the worker is stopping"
    assert s.engine.runs == []


def real_engine_client(fetch: Fetches) -> tuple[ControlClient, Any]:
    clock = Clock()
    config = load_config({"MAX_ENDPOINTS": "100"}, require_token=False)
    engine = Engine(config, clock, environ={}, fetch_media=fetch)
    client = ControlClient(
        worker_name="lab-1",
        version="0.1.0",
        max_endpoints=100,
        engine=engine,
        status=WorkerStatus(clock),
        clock=clock,
        cpu_time=lambda: 0.0,
    )
    return client, clock


def test_the_daemon_rejects_a_404_media_url_as_callmeter_run_refuses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parses = count_parses(monkeypatch)
    fetch = Fetches(fail="HTTP 404 Not Found")
    client, _ = real_engine_client(fetch)
    conn = RecordingConnection()
    client.attempt_started()
    client.connection_made(conn)
    client.message_received(p.Welcome("w-1", 30.0).to_json())
    conn.sent.clear()
    plan = sip_plan(2, 2)
    plan["groups"][1]["media"] = MEDIA
    client.message_received(p.Assign("r-1", plan).to_json())
    (rejected,) = conn.take()
    assert isinstance(rejected, p.Rejected)
    # The line `callmeter run` prints after "callmeter: " before it exits 2.
    assert rejected.reason == f"media: {MEDIA}: HTTP 404 Not Found"
    assert fetch.calls == [(MEDIA,)]
    assert len(parses) == 1  # validate, endpoints and prepare: one parse
    assert client.run is None
