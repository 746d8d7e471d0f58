"""The gateway core with recording connections on a Clock: sessions, staleness, acks."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock

from callmeter.control import protocol as p
from callmeter.gateway.server import Gateway
from callmeter.gateway.store import Store


class Conn:
    def __init__(self) -> None:
        self.sent: list[p.Message] = []
        self.closed: list[tuple[int, str]] = []

    def send_text(self, text: str) -> None:
        self.sent.append(p.parse_message(text))

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    def take(self) -> list[p.Message]:
        out, self.sent = self.sent, []
        return out


def setup() -> tuple[Gateway, Clock, Conn]:
    clock = Clock()
    clock.advance(1000)
    gateway = Gateway(Store(":memory:"), {"lab-1": "tok-1", "lab-2": "tok-2"}, clock)
    conn = Conn()
    return gateway, clock, conn


def hello(gateway: Gateway, conn: Conn, name: str = "lab-1", max_endpoints: int = 100) -> None:
    gateway.message(name, conn, p.Hello(name, "0.1.0", p.Capabilities(max_endpoints)).to_json())


def result(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    return out[0]


def test_authenticate() -> None:
    gateway, _, _ = setup()
    assert gateway.authenticate("Bearer tok-2") == "lab-2"
    assert gateway.authenticate("Bearer tok-3") is None
    assert gateway.authenticate("Basic tok-1") is None
    assert gateway.authenticate(None) is None


def test_hello_welcome_heartbeat_and_stale_at_60_s() -> None:
    gateway, clock, conn = setup()
    hello(gateway, conn)
    (welcome,) = conn.take()
    assert isinstance(welcome, p.Welcome) and welcome.worker_id == "lab-1"
    assert welcome.heartbeat_interval_s == 30.0 and welcome.server_time == 1000
    worker = gateway.workers["lab-1"]
    assert (worker.state, worker.max_endpoints) == ("ONLINE", 100)
    clock.advance(30)
    gateway.message("lab-1", conn, p.Heartbeat(1, "BUSY", 40, "r-1", 0.5).to_json())
    (ack,) = conn.take()
    assert isinstance(ack, p.HeartbeatAck) and ack.seq == 1
    assert (worker.state, worker.active_endpoints, worker.test_run) == ("BUSY", 40, "r-1")
    assert worker.last_heartbeat == 1030
    clock.advance(59)
    assert worker.state == "BUSY"
    clock.advance(1)
    assert worker.state == "ERROR" and worker.reason == "stale: no heartbeat for 60 s"
    gateway.message("lab-1", conn, p.Heartbeat(2, "ONLINE").to_json())
    assert worker.state == "ONLINE" and worker.reason is None


def test_first_message_must_be_hello() -> None:
    gateway, _, conn = setup()
    gateway.message("lab-1", conn, p.Heartbeat(1, "ONLINE").to_json())
    (err,) = conn.take()
    assert isinstance(err, p.Error) and err.code == "unexpected_type"
    assert conn.closed == [(4001, "expected hello first")]


def test_hostile_frames_get_errors_and_the_session_stays() -> None:
    gateway, _, conn = setup()
    hello(gateway, conn)
    conn.take()
    frames: list[tuple[bytes | str, str]] = [
        (b"\x00garbage", "not_json"),
        ('{"v":9,"type":"heartbeat"}', "unsupported_version"),
        ('{"v":1,"type":"assign","run":"r","plan":{}}', "unexpected_type"),
        ('{"v":1,"type":"metrics","run":"r","seq":0,"start":0,"end":0,"groups":{},"total":{}}',
         "bad_field"),
        ("x" * 70_000, "too_large"),
    ]  # fmt: skip
    for frame, code in frames:
        gateway.message("lab-1", conn, frame)
        (err,) = conn.take()
        assert isinstance(err, p.Error) and err.code == code
    assert conn.closed == []
    assert gateway.workers["lab-1"].connection is conn


def test_windows_acked_cumulatively_and_finished_when_complete() -> None:
    gateway, _, conn = setup()
    hello(gateway, conn)
    conn.take()

    def window(seq: int) -> str:
        return p.Metrics("r-1", seq, seq * 5.0, seq * 5.0 + 5, {}, {"n": seq}).to_json()

    gateway.message("lab-1", conn, window(1))
    gateway.message("lab-1", conn, window(3))
    gateway.message("lab-1", conn, window(1))
    assert [(m.seq, m.finished) for m in conn.take() if isinstance(m, p.Ack)] == [
        (1, False), (1, False), (1, False),
    ]  # fmt: skip
    gateway.message("lab-1", conn, p.Finished("r-1", {"passed": True}, windows=3).to_json())
    (ack,) = conn.take()
    assert isinstance(ack, p.Ack) and (ack.seq, ack.finished) == (1, False)
    gateway.message("lab-1", conn, window(2))
    gateway.message("lab-1", conn, p.Finished("r-1", {"passed": True}, windows=3).to_json())
    acks = conn.take()
    assert [(a.seq, a.finished) for a in acks if isinstance(a, p.Ack)] == [(3, False), (3, True)]
    stored = result(gateway.store.windows_after("r-1", 0))
    assert [w["total"]["n"] for w in stored] == [1, 2, 3]
    assert json.dumps(stored)  # plain JSON


def test_dispatch_pins_the_run_and_rejection_fails_it() -> None:
    gateway, _, conn = setup()
    hello(gateway, conn, max_endpoints=1)
    conn.take()
    plan = {"name": "p", "duration_s": 10, "groups": [{"name": "a", "role": "callee", "count": 5}]}
    run = result(gateway.submit({"plan": plan, "worker": None}))
    assert conn.take() == []  # nobody has the capacity
    run2 = result(gateway.submit({"plan": plan, "worker": "lab-1"}))
    (assign,) = conn.take()
    assert isinstance(assign, p.Assign) and assign.run == run2
    gateway.message("lab-1", conn, p.Rejected(run2, "plan needs 5 endpoints").to_json())
    info = result(gateway.store.get_run(run2))
    assert info["state"] == "failed" and info["reason"] == "rejected: plan needs 5 endpoints"
    assert result(gateway.store.get_run(run))["state"] == "queued"
