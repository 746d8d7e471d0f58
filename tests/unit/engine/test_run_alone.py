"""TestRun built alone on a Clock: a recording SIP stack and media passed in, no sockets.

The real Registration and OutgoingCall run on :class:`FakeSipStack` (tests/unit/engine/fakes.py);
each test asserts the ordered events the run produces, at the times on the clock.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from callmeter.config import load_config
from callmeter.engine.run import Shard, TestRun
from callmeter.plan import Plan, parse_plan
from callmeter.sip.message import SipRequest
from tests.unit.engine.fakes import (
    TRANSPORT_ERROR,
    Answer,
    Event,
    FakeMediaFactory,
    FakeSipFactory,
    FakeSipStack,
    answer_all,
)

REGISTRAR = {"host": "10.0.0.9", "port": 5080, "transport": "udp", "domain": "pbx.test"}


def registered_plan(**call: Any) -> Plan:
    """3 callees and 2 callers registering at one registrar, calling through it."""
    return parse_plan(
        {
            "name": "alone",
            "duration_s": 10,
            "ramp_up_s": 5,
            "registrars": {"pbx": {**REGISTRAR, "expires": 300}},
            "groups": [
                {"name": "callees", "role": "callee", "count": 3, "registrar": "pbx",
                 "user": "in-{i}"},
                {"name": "callers", "role": "caller", "count": 2, "registrar": "pbx",
                 "user": "out-{i}",
                 "call": {"to": "callees", "duration_s": 2, "rate_per_s": 4, "calls": 1,
                          **call}},
            ],
        },
        max_endpoints=100,
    )  # fmt: skip


def listening_plan() -> Plan:
    """Callees with no registrar (listening at SIP_IP:SIP_PORT), callers calling them."""
    return parse_plan(
        {
            "name": "alone",
            "duration_s": 5,
            "ramp_up_s": 0,
            "groups": [
                {"name": "callees", "role": "callee", "count": 2, "user": "in-{i}"},
                {"name": "callers", "role": "caller", "count": 3, "user": "out-{i}",
                 "call": {"to": "callees", "duration_s": 1, "rate_per_s": 2, "calls": 1}},
            ],
        },
        max_endpoints=100,
    )  # fmt: skip


class Harness:
    def __init__(
        self,
        plan: Plan,
        answer: Any = answer_all,
        shard: Shard | None = None,
        window_s: float = 5.0,
    ) -> None:
        self.clock = Clock()
        self.events: list[Event] = []
        self.stack = FakeSipStack(self.clock, self.events, answer)
        self.sip = FakeSipFactory(self.stack, port=5060)
        self.media = FakeMediaFactory(self.events, self.clock)
        self.windows: list[dict[str, Any]] = []
        config = load_config(
            {"SIP_IP": "10.0.0.1", "SIP_PORT": "5060"},
            require_token=False,
            local_address=lambda address: True,
        )
        self.run = TestRun(
            plan,
            config,
            self.clock,
            self.media,
            on_window=self.windows.append,
            window_s=window_s,
            shard=shard,
            sip=self.sip,
        )
        self.reports: list[dict[str, Any]] = []

    def start(self) -> None:
        self.run.start().addCallback(self.reports.append)

    def advance_to(self, when: float) -> None:
        """Run every timer due until ``when``, each at its exact time."""
        while True:
            now = self.clock.seconds()
            due = [c.getTime() for c in self.clock.getDelayedCalls() if c.getTime() <= when]
            if not due:
                self.clock.advance(max(0.0, when - now))
                return
            self.clock.advance(max(0.0, min(due) - now))

    def sent(self, method: str) -> list[tuple[float, str]]:
        return [
            (round(t, 3), detail)
            for t, what, detail in self.events
            if what == "send_request" and detail.startswith(method + " ")
        ]

    def requests(self, method: str) -> list[SipRequest]:
        return [r for _, r, _ in self.stack.requests if r.method == method]


def test_registrations_spread_over_the_ramp_up_in_global_order() -> None:
    h = Harness(registered_plan())
    h.start()
    assert h.sip.calls == [({"udp"}, True)]
    # The callees are known to the stack before the clock starts.
    assert [d for _, w, d in h.events if w == "add_endpoint"] == ["in-0", "in-1", "in-2"]
    h.advance_to(4.99)
    # 5 registrations over 5 s: one a second, callees first, then callers.
    assert h.sent("REGISTER") == [
        (0.0, "REGISTER sip:pbx.test -> udp:10.0.0.9:5080"),
        (1.0, "REGISTER sip:pbx.test -> udp:10.0.0.9:5080"),
        (2.0, "REGISTER sip:pbx.test -> udp:10.0.0.9:5080"),
        (3.0, "REGISTER sip:pbx.test -> udp:10.0.0.9:5080"),
        (4.0, "REGISTER sip:pbx.test -> udp:10.0.0.9:5080"),
    ]
    froms = [str(r.headers.get("To")) for r in h.requests("REGISTER")]
    assert froms == [
        "<sip:in-0@pbx.test>",
        "<sip:in-1@pbx.test>",
        "<sip:in-2@pbx.test>",
        "<sip:out-0@pbx.test>",
        "<sip:out-1@pbx.test>",
    ]
    assert h.run.progress()["registered"] == 5


def test_calls_at_the_rate_answered_hung_up_and_the_run_ends_with_unregisters() -> None:
    h = Harness(registered_plan())
    h.start()
    h.advance_to(20)
    assert len(h.reports) == 1
    # Calls begin after the 5 s ramp-up, one every 1 / 4 s, through the registrar.
    assert h.sent("INVITE") == [
        (5.0, "INVITE sip:in-0@pbx.test -> udp:10.0.0.9:5080"),
        (5.25, "INVITE sip:in-1@pbx.test -> udp:10.0.0.9:5080"),
    ]
    # Answered at +0.1 s, hung up duration_s (2 s) later with a BYE through the stack.
    assert [t for t, w, _ in h.events if w == "send_ack"] == [5.1, 5.35]
    assert [t for t, _ in h.sent("BYE")] == [7.1, 7.35]
    # At duration_s every endpoint removes its binding (Expires: 0), then the stack closes.
    unregisters = [r for r in h.requests("REGISTER") if r.headers.get("Expires") == "0"]
    assert len(unregisters) == 5
    assert [t for t, _ in h.sent("REGISTER")][5:] == [10.0] * 5
    tail = [w for _, w, _ in h.events][-2:]
    assert tail == ["shutdown", "close"]
    # The media: offer at the INVITE, the answer applied and started at the 200, stopped at BYE.
    media = [(round(t, 3), w) for t, w, g in h.events if w.startswith("media.")]
    assert media[:3] == [(5.0, "media.offer"), (5.1, "media.apply_answer"), (5.1, "media.start")]
    assert (7.1, "media.stop") in media
    report = h.reports[0]
    calls = report["groups"]["callers"]["sip"]["calls"]
    assert (calls["attempted"], calls["established"], calls["failed"]) == (2, 2, 0)
    assert report["total"]["sip"]["register"]["succeeded"] == 5
    assert report["interrupted"] is False
    assert [c.end for c in h.run.calls] == ["local BYE", "local BYE"]


def test_listening_callees_are_called_at_shard_zeros_port() -> None:
    h = Harness(listening_plan(), shard=Shard(1, 2, (5060, 5062)))
    # Shard 1 of 2 runs no listening callee and the second half of the callers.
    assert h.run.open() == 5060
    h.run.begin((5060, 5062))
    assert h.sip.calls == [({"udp"}, False)]
    assert [w for _, w, _ in h.events if w == "add_endpoint"] == []
    h.advance_to(2)
    # Callers 1 and 2 (i / rate: 0.5 s, 1 s) call callees 1 and 0 at shard 0's port.
    assert h.sent("INVITE") == [
        (0.5, "INVITE sip:in-1@10.0.0.1:5060 -> udp:10.0.0.1:5060"),
        (1.0, "INVITE sip:in-0@10.0.0.1:5060 -> udp:10.0.0.1:5060"),
    ]
    assert h.sent("REGISTER") == []


def test_metric_windows_every_window_s() -> None:
    h = Harness(registered_plan(), window_s=2.5)
    h.start()
    h.advance_to(9.99)
    # Windows at 2.5, 5 and 7.5 s; registrations at 0, 1, 2 | 3, 4 s.
    assert [w["seq"] for w in h.windows] == [1, 2, 3]
    assert [w["total"]["sip"]["register"]["attempted"] for w in h.windows] == [3, 2, 0]
    ends = [w["end"] - h.windows[0]["start"] for w in h.windows]
    assert [round(e, 3) for e in ends] == [2.5, 5.0, 7.5]
    h.advance_to(20)
    assert [w["seq"] for w in h.windows] == [1, 2, 3, 4]  # the final one at the close
    assert sum(w["total"]["sip"]["calls"]["attempted"] for w in h.windows) == 2


def test_cancel_gives_an_interrupted_report() -> None:
    h = Harness(registered_plan())
    h.start()
    h.advance_to(5.5)
    h.run.cancel()
    h.advance_to(10)
    assert len(h.reports) == 1 and h.reports[0]["interrupted"] is True
    # The call that was up got its BYE at the cancel, the bindings their Expires: 0.
    assert [t for t, _ in h.sent("BYE")] == [5.5, 5.5]
    assert [r.headers.get("Expires") for r in h.requests("REGISTER")][5:] == ["0"] * 5
    assert h.reports[0]["pass"]["passed"] is False


def test_abort_reports_at_once_without_waiting() -> None:
    h = Harness(registered_plan())
    h.start()
    h.advance_to(5.5)
    before = len(h.stack.requests)
    h.run.abort()
    assert len(h.reports) == 1 and h.reports[0]["interrupted"] is True
    assert len(h.stack.requests) == before  # no BYE, no un-REGISTER
    assert [w for _, w, _ in h.events][-2:] == ["shutdown", "close"]


def test_a_registrar_that_never_answers_is_a_408_at_the_end() -> None:
    def silent(request: SipRequest) -> Answer:
        return None

    h = Harness(registered_plan(), answer=silent)
    h.start()
    h.advance_to(30)
    register = h.reports[0]["total"]["sip"]["register"]
    assert register["failed_by_code"] == {"408": 5} or register["failed_by_code"] == {408: 5}
    assert register["causes"] == {
        "no final answer from 10.0.0.9:5080 over UDP before the run ended (REGISTER)": 5
    }


def test_a_transport_failure_is_a_503_cause() -> None:
    def refused(request: SipRequest) -> Answer:
        return TRANSPORT_ERROR if request.method == "INVITE" else answer_all(request)

    h = Harness(registered_plan())
    h.stack.answer = refused
    h.start()
    h.advance_to(20)
    calls = h.reports[0]["groups"]["callers"]["sip"]["calls"]
    assert calls["failed"] == 2
    assert list(calls["failed_by_code"].values()) == [2]
    assert str(next(iter(calls["failed_by_code"]))) == "503"
    assert calls["causes"] == {
        "transport error to 10.0.0.9:5080 over UDP (refused or unreachable)": 2
    }
