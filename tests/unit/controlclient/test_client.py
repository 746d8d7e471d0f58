"""ControlClient, the session brain, driven with a recording connection on a Clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from OpenSSL import SSL
from twisted.internet import error as errors
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from callmeter.control import protocol as p
from callmeter.control.client import ControlClient, describe_close, describe_failure
from callmeter.control.proxy import ProxyAuthRequired
from callmeter.control.spool import WindowSpool
from callmeter.status import WorkerState, WorkerStatus
from tests.unit.controlclient.fakes import FakeEngine, RecordingConnection, sip_plan


def state_of(s: Any) -> WorkerState:
    """The worker's state now (a call, so mypy does not narrow it between asserts)."""
    state: WorkerState = s.status.state
    return state


@dataclass
class Setup:
    client: ControlClient
    engine: FakeEngine
    status: WorkerStatus
    clock: Clock
    resets: list[int] = field(default_factory=list)


def make(max_endpoints: int = 100, spool: WindowSpool | None = None) -> Setup:
    clock = Clock()
    clock.advance(1_700_000_000)
    status = WorkerStatus(clock)
    engine = FakeEngine(clock, window_s=5.0, windows=3)
    resets: list[int] = []
    client = ControlClient(
        worker_name="lab-1",
        version="0.1.0",
        max_endpoints=max_endpoints,
        engine=engine,
        status=status,
        clock=clock,
        spool=spool,
        on_authenticated=lambda: resets.append(1),
        cpu_time=lambda: 0.0,
    )
    return Setup(client, engine, status, clock, resets)


def go_online(s: Setup, interval: float = 30.0) -> RecordingConnection:
    conn = RecordingConnection()
    s.client.attempt_started()
    s.client.connection_made(conn)
    s.client.message_received(p.Welcome("w-1", interval).to_json())
    return conn


def assign(s: Setup, run: str = "r-1", plan: Any = None) -> None:
    s.client.message_received(p.Assign(run, plan or sip_plan(2, 2)).to_json())


# --- session ----------------------------------------------------------------------------------


def test_hello_first_then_welcome_makes_it_online_and_resets_backoff() -> None:
    s = make()
    assert state_of(s) is WorkerState.OFFLINE
    conn = RecordingConnection()
    s.client.attempt_started()
    assert state_of(s) is WorkerState.CONNECTING
    s.client.connection_made(conn)
    hello = conn.take()
    assert [m.TYPE for m in hello] == ["hello"]
    assert isinstance(hello[0], p.Hello) and hello[0].capabilities.max_endpoints == 100
    assert s.resets == []
    s.client.message_received(p.Welcome("w-1", 30.0).to_json())
    assert state_of(s) is WorkerState.ONLINE and s.status.connected
    assert s.resets == [1]
    beat = conn.take()
    assert [m.TYPE for m in beat] == ["heartbeat"]
    assert isinstance(beat[0], p.Heartbeat) and beat[0].state == "ONLINE" and beat[0].seq == 1


def test_heartbeat_every_interval_and_missing_reply_drops_connection() -> None:
    s = make()
    conn = go_online(s)
    s.client.message_received(p.HeartbeatAck(1).to_json())
    conn.sent.clear()
    s.clock.advance(30)
    assert conn.types() == ["heartbeat"]
    s.clock.advance(14.9)
    assert conn.dropped == 0
    s.clock.advance(0.1)
    assert conn.dropped == 1
    s.client.connection_lost(conn, "connection aborted")
    assert state_of(s) is WorkerState.OFFLINE
    assert (
        s.status.reason is not None and "no reply from the gateway within 15 s" in s.status.reason
    )
    assert not s.status.connected


def test_attempt_failure_is_error_with_reason_and_next_attempt_connecting() -> None:
    s = make()
    s.client.attempt_started()
    s.client.attempt_failed("connection refused by the gateway gw:443")
    assert state_of(s) is WorkerState.ERROR
    assert s.status.reason == "connection refused by the gateway gw:443"
    s.client.attempt_started()
    assert state_of(s) is WorkerState.CONNECTING


def test_upgrade_refused_before_welcome_is_error() -> None:
    s = make()
    s.client.attempt_started()
    why = describe_close(
        "WebSocket connection upgrade failed [401]: Unauthorized", None, False, 1006, None
    )
    s.client.connection_lost(None, why)
    assert state_of(s) is WorkerState.ERROR
    assert s.status.reason == "the gateway refused the worker token (HTTP 401 Unauthorized)"


def test_messages_before_welcome_are_refused() -> None:
    s = make()
    conn = RecordingConnection()
    s.client.attempt_started()
    s.client.connection_made(conn)
    conn.sent.clear()
    assign(s)
    (err,) = conn.take()
    assert isinstance(err, p.Error) and err.code == "unexpected_type"
    assert s.engine.runs == []


# --- runs -------------------------------------------------------------------------------------


def test_run_accepted_windows_streamed_acked_and_finished_kept_until_acked() -> None:
    s = make()
    conn = go_online(s)
    conn.sent.clear()
    assign(s)
    accepted, status = conn.take()
    assert isinstance(accepted, p.Accepted) and accepted.run == "r-1"
    assert isinstance(status, p.Status) and status.state == "BUSY"
    assert state_of(s) is WorkerState.BUSY and s.status.test_run == "r-1"
    assert s.status.active_endpoints == 4
    s.clock.advance(5)
    (w1,) = conn.take()
    assert isinstance(w1, p.Metrics) and (w1.run, w1.seq) == ("r-1", 1)
    assert w1.end - w1.start == 5.0 and "callers" in w1.groups
    s.client.message_received(p.Ack("r-1", 1).to_json())
    assert len(s.client.spool) == 0
    s.clock.pump([5, 5])
    sent = conn.take()
    assert [type(m).__name__ for m in sent] == ["Metrics", "Metrics", "Finished", "Status"]
    finished = sent[2]
    assert isinstance(finished, p.Finished) and finished.windows == 3
    assert finished.report["passed"] is True
    assert state_of(s) is WorkerState.ONLINE and s.status.test_run is None
    assert list(s.client.spool.runs()) == ["r-1"]
    s.client.message_received(p.Ack("r-1", 3, finished=True).to_json())
    assert list(s.client.spool.runs()) == []


def test_run_keeps_going_while_gateway_away_and_everything_is_resent_in_order() -> None:
    s = make()
    conn = go_online(s)
    assign(s)
    s.clock.advance(5)
    s.client.connection_lost(conn, "peer dropped the TCP connection")
    assert state_of(s) is WorkerState.BUSY and not s.status.connected
    assert s.status.reason is not None and "connection to the gateway lost" in s.status.reason
    s.clock.pump([5, 5])  # windows 2 and 3, then finished, with nobody listening
    assert s.engine.runs[0].emitted == 3
    assert conn.types().count("metrics") == 1  # only window 1 went out on the old connection
    conn2 = go_online(s)
    sent = [m for m in conn2.take() if m.TYPE in ("metrics", "finished")]
    assert [(m.TYPE, getattr(m, "seq", None)) for m in sent] == [
        ("metrics", 1),
        ("metrics", 2),
        ("metrics", 3),
        ("finished", None),
    ]


def test_rejections_name_the_reason() -> None:
    s = make(max_endpoints=10)
    conn = go_online(s)
    conn.sent.clear()
    assign(s, "r-big", sip_plan(8, 8))
    (rejected,) = conn.take()
    assert isinstance(rejected, p.Rejected)
    assert rejected.reason == "plan needs 16 endpoints, MAX_ENDPOINTS is 10"
    assign(s, "r-bad", {"name": "x", "groups": [{"name": "g", "count": "many"}]})
    (rejected,) = conn.take()
    assert isinstance(rejected, p.Rejected)
    assert rejected.reason == "invalid plan: groups[0].count: expected an integer >= 1"
    assign(s, "r-1", sip_plan(2, 2))
    conn.sent.clear()
    assign(s, "r-2", sip_plan(2, 2))
    (rejected,) = conn.take()
    assert isinstance(rejected, p.Rejected) and rejected.reason == "run r-1 is in progress"
    assign(s, "r-1", sip_plan(2, 2))  # the same assign again: the same answer, one run
    assert [m.TYPE for m in conn.take()] == ["accepted"]
    assert len(s.engine.runs) == 1
    assert state_of(s) is WorkerState.BUSY


def test_cancel_stops_the_run_and_sends_finished() -> None:
    s = make()
    conn = go_online(s)
    assign(s)
    s.clock.advance(5)
    conn.sent.clear()
    s.client.message_received(p.Cancel("r-1", "admin").to_json())
    assert s.engine.cancels == ["r-1"]
    finished = [m for m in conn.take() if isinstance(m, p.Finished)]
    assert len(finished) == 1 and finished[0].report["cancelled"] is True
    assert finished[0].windows == 1
    assert state_of(s) is WorkerState.ONLINE
    s.client.message_received(p.Cancel("r-404").to_json())
    (err,) = conn.take()
    assert isinstance(err, p.Error) and err.code == "unknown_run"


# --- hostile input ------------------------------------------------------------------------------


def test_hostile_frames_get_an_error_and_the_connection_stays() -> None:
    s = make()
    conn = go_online(s)
    conn.sent.clear()
    frames: list[tuple[bytes | str, str, str | None]] = [
        (b"{not json", "not_json", None),
        (b"\xff\xfe", "not_utf8", None),
        ('{"v":1,"type":"launch_missiles"}', "unknown_type", "launch_missiles"),
        ('{"v":2,"type":"assign","run":"r","plan":{}}', "unsupported_version", "assign"),
        (b'{"v":1,"type":"ack","pad":"' + b"x" * 70_000 + b'"}', "too_large", None),
        ('{"v":1,"type":"assign","run":"r-9","plan":[]}', "bad_field", "assign"),
        ('{"v":1,"type":"assign","plan":{}}', "bad_field", "assign"),
        ('{"v":1,"type":"hello","worker":"x","version":"1","capabilities":{"max_endpoints":1}}',
         "unexpected_type", "hello"),
        ("[1,2]", "not_object", None),
    ]  # fmt: skip
    for frame, code, in_reply_to in frames:
        s.client.message_received(frame)
        (err,) = conn.take()
        assert isinstance(err, p.Error), frame
        assert (err.code, err.in_reply_to) == (code, in_reply_to), frame
    # errors are never answered with errors
    s.client.message_received('{"v":1,"type":"error","code":"x","detail":"y"}')
    s.client.message_received('{"v":1,"type":"error","code":7}')
    assert conn.sent == []
    assert conn.dropped == 0 and conn.closed == 0
    assert state_of(s) is WorkerState.ONLINE and s.engine.runs == []


def test_error_detail_never_echoes_plan_values() -> None:
    s = make()
    conn = go_online(s)
    conn.sent.clear()
    frame = json.dumps({"v": 1, "type": "assign", "run": 5, "plan": {"password": "hunter2"}})
    s.client.message_received(frame)
    assert "hunter2" not in "".join(conn.sent)


# --- draining ---------------------------------------------------------------------------------


def test_drain_cancels_flushes_and_waits_for_the_ack() -> None:
    s = make()
    conn = go_online(s)
    assign(s)
    s.clock.advance(5)
    conn.sent.clear()
    done = s.client.drain(20.0)
    assert state_of(s) is WorkerState.DRAINING
    assert s.engine.cancels == ["r-1"]
    sent = conn.take()
    assert [m.TYPE for m in sent] == ["status", "finished"]
    results: list[object] = []
    done.addBoth(results.append)
    assert results == []
    s.client.message_received(p.Ack("r-1", 1, finished=True).to_json())
    assert results == [None]
    assign(s, "r-2")
    (rejected,) = conn.take()
    assert isinstance(rejected, p.Rejected) and rejected.reason == "the worker is stopping"


def test_drain_gives_up_after_its_timeout() -> None:
    s = make()
    go_online(s)
    assign(s)
    results: list[object] = []
    s.client.drain(20.0).addBoth(results.append)
    s.clock.advance(19.9)
    assert results == []
    s.clock.advance(0.2)
    assert results == [None]


def test_drain_while_offline_is_immediate() -> None:
    s = make()
    results: list[object] = []
    s.client.drain(20.0).addBoth(results.append)
    assert results == [None]


# --- failure descriptions ------------------------------------------------------------------------


def test_failure_descriptions() -> None:
    proxy = ProxyAuthRequired(
        "proxy 127.0.0.1:3128 refused CONNECT gw:443: 407 Proxy Authentication Required",
        proxy="127.0.0.1:3128",
        target="gw:443",
        code=407,
    )
    assert describe_failure(Failure(proxy)) == str(proxy)
    refused = describe_failure(Failure(errors.ConnectionRefusedError()), "the gateway gw:443")
    assert refused == "connection refused by the gateway gw:443"
    ssl = SSL.Error([("SSL routines", "", "certificate verify failed")])
    assert describe_failure(Failure(ssl)) == (
        "TLS handshake with the gateway failed: certificate verify failed"
    )
    assert describe_close(None, Failure(ssl), False, 1006, None).startswith("TLS handshake")
    assert describe_close("x upgrade failed [502]: Bad Gateway", None, False, 1006, None) == (
        "the gateway refused the WebSocket upgrade (HTTP 502 Bad Gateway)"
    )
    assert describe_close(None, None, True, 1001, "going away") == (
        "closed by the gateway (code 1001: going away)"
    )
