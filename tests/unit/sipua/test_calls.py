"""Calls between two SIP stacks over an in-memory network, on task.Clock."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.sip.call import CallEnd, CallFailed, IncomingCall, OutgoingCall
from callmeter.sip.message import SipMessage, SipRequest, SipResponse, make_response
from callmeter.sip.stack import SipStack
from callmeter.sip.transaction import ServerInvite
from callmeter.sip.transport import Origin, Target
from callmeter.sip.uri import parse_uri

from .memory_network import MemoryNetwork
from .sdp_media import SdpOnlyMedia

UAC_PORT, UAS_PORT = 5061, 5062


class Callee:
    """An endpoint answering every INVITE after ``answer_delay`` seconds."""

    def __init__(
        self,
        stack: SipStack,
        user: str = "bob",
        answer_delay: float = 0.5,
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
        ring: bool = True,
    ) -> None:
        self.calls: list[IncomingCall] = []
        self.ring = ring
        self.stack = stack
        self.answer_delay = answer_delay
        self.codecs = codecs
        stack.add_endpoint(user, self.on_invite)

    def on_invite(self, request: SipRequest, tx: ServerInvite, origin: Origin) -> IncomingCall:
        call = IncomingCall(
            self.stack,
            SdpOnlyMedia(41000, self.codecs),
            request,
            tx,
            origin,
            user="bob",
            answer_delay=self.answer_delay,
            ring=self.ring,
        )
        self.calls.append(call)
        call.start()
        return call


def setup(
    answer_delay: float = 0.5, latency: float = 0.01, **callee: Any
) -> tuple[Clock, MemoryNetwork, SipStack, Callee]:
    clock = Clock()
    network = MemoryNetwork(clock, latency)
    uac = network.attach(UAC_PORT)
    uas = network.attach(UAS_PORT)
    return clock, network, uac, Callee(uas, answer_delay=answer_delay, **callee)


def dial(
    uac: SipStack, media: SdpOnlyMedia | None = None, user: str = "bob", **kwargs: Any
) -> OutgoingCall:
    call = OutgoingCall(
        uac,
        media or SdpOnlyMedia(),
        user="alice",
        from_uri="sip:alice@127.0.0.1",
        to_uri=f"sip:{user}@127.0.0.1:{UAS_PORT}",
        target=Target("udp", "127.0.0.1", UAS_PORT),
        **kwargs,
    )
    call.start()
    return call


def outcome(deferred: Any) -> Any:
    results: list[Any] = []
    deferred.addBoth(results.append)
    return results[0] if results else None


def test_call_setup_times_and_bye() -> None:
    clock, network, uac, callee = setup(answer_delay=0.5)
    media = SdpOnlyMedia()
    call = dial(uac, media)
    clock.pump([0.01] * 60)
    assert outcome(call.established) is call
    lines = network.lines()
    assert lines[0].startswith("INVITE") and "SIP/2.0 180 Ringing" in lines
    assert lines.index("SIP/2.0 180 Ringing") < lines.index("SIP/2.0 200 OK")
    assert any(line.startswith("ACK ") for line in lines)
    # One way latency 10 ms: 180 after 20 ms, 200 after 500 + 20 ms.
    assert call.times.pdd_ms == pytest.approx(20, abs=1)
    assert call.times.setup_ms == pytest.approx(520, abs=1)
    assert media.negotiated_codec == "PCMU" and media.events == ["answer", "start"]
    incoming = callee.calls[0]
    assert incoming.times.confirmed is not None

    call.hangup()
    clock.pump([0.01] * 10)
    assert outcome(call.ended) is CallEnd.LOCAL_BYE
    assert outcome(incoming.ended) is CallEnd.REMOTE_BYE
    assert "SIP/2.0 200 OK" in network.lines()[-1]
    assert media.events[-1] == "stop"
    clock.advance(40)
    assert len(uac.transactions) == 0 and len(callee.stack.transactions) == 0
    assert uac.stats()["dialogs"] == 0 and callee.stack.stats()["dialogs"] == 0


def test_callee_hangs_up() -> None:
    clock, network, uac, callee = setup(answer_delay=0)
    call = dial(uac)
    clock.pump([0.01] * 10)
    callee.calls[0].hangup()
    clock.pump([0.01] * 10)
    assert outcome(call.ended) is CallEnd.REMOTE_BYE
    assert outcome(callee.calls[0].ended) is CallEnd.LOCAL_BYE


def test_cancel_before_answer_gives_487() -> None:
    clock, network, uac, callee = setup(answer_delay=5)
    call = dial(uac)
    clock.pump([0.01] * 100)
    call.hangup()
    clock.pump([0.01] * 100)
    failure = outcome(call.established)
    assert isinstance(failure.value, CallFailed) and failure.value.code == 487
    assert outcome(call.ended) is CallEnd.CANCELLED
    assert outcome(callee.calls[0].ended) is CallEnd.CANCELLED
    lines = network.lines()
    assert any(line.startswith("CANCEL ") for line in lines)
    assert "SIP/2.0 487 Request Terminated" in lines
    assert lines.count("SIP/2.0 200 OK") == 1  # the CANCEL's
    clock.advance(10)
    assert callee.calls[0].times.answered is None  # never answered after the CANCEL


def test_cancel_waits_for_a_provisional_response() -> None:
    """RFC 3261 9.1: no CANCEL before a provisional response arrived."""
    clock, network, uac, callee = setup(answer_delay=5, latency=0.2)
    call = dial(uac)
    clock.advance(0.1)
    call.hangup()
    assert not any(line.startswith("CANCEL") for line in network.lines())
    clock.pump([0.05] * 20)
    assert any(line.startswith("CANCEL") for line in network.lines())
    clock.pump([0.05] * 40)
    assert outcome(call.established).value.code == 487
    assert outcome(call.ended) is CallEnd.CANCELLED


def test_busy_callee_fails_the_call_with_its_code() -> None:
    clock = Clock()
    network = MemoryNetwork(clock)
    uac = network.attach(UAC_PORT)
    uas = network.attach(UAS_PORT)

    def busy(request: SipRequest, tx: ServerInvite, origin: Origin) -> None:
        tx.respond(make_response(request, 486, to_tag="t1"))

    uas.add_endpoint("bob", busy)
    call = dial(uac)
    clock.pump([0.01] * 10)
    failure = outcome(call.established)
    assert failure.value.code == 486 and call.times.final_code == 486
    assert outcome(call.ended) is CallEnd.FAILED
    assert any(line.startswith("ACK") for line in network.lines())  # the transaction's ACK


def test_unknown_user_is_404_and_no_answer_is_408() -> None:
    clock, network, uac, _ = setup()
    call = dial(uac, user="nobody")
    clock.pump([0.01] * 10)
    assert outcome(call.established).value.code == 404

    clock2 = Clock()
    lonely = MemoryNetwork(clock2)
    stack = lonely.attach(UAC_PORT)
    lonely.attach(UAS_PORT)
    lonely.drop = lambda message, port: port == UAS_PORT  # nothing arrives
    silent = dial(stack)
    clock2.pump([0.5] * 70)
    failure = outcome(silent.established)
    assert failure.value.code == 408 and failure.value.reason == "timeout"
    assert len([line for line in lonely.lines() if line.startswith("INVITE")]) == 7


def test_lost_ack_makes_the_callee_retransmit_200_and_the_caller_ack_again() -> None:
    clock, network, uac, callee = setup(answer_delay=0)
    dropped: list[int] = []

    def drop_first_ack(message: SipMessage, port: int) -> bool:
        if isinstance(message, SipRequest) and message.method == "ACK" and not dropped:
            dropped.append(1)
            return True
        return False

    network.drop = drop_first_ack
    call = dial(uac)
    clock.pump([0.01] * 100)
    assert outcome(call.established) is call
    assert network.lines().count("SIP/2.0 200 OK") == 2  # retransmitted at T1
    assert sum(line.startswith("ACK") for line in network.lines()) == 2
    assert callee.calls[0].times.confirmed is not None and call.active


def test_no_ack_at_all_ends_the_call_with_bye_after_64_t1() -> None:
    clock, network, uac, callee = setup(answer_delay=0)
    network.drop = lambda m, p: isinstance(m, SipRequest) and m.method == "ACK"
    dial(uac)
    clock.pump([0.25] * 140)
    incoming = callee.calls[0]
    assert outcome(incoming.ended) is CallEnd.NO_ACK
    oks = [t for t, src, _, line in network.trace if line == "SIP/2.0 200 OK" and src == UAS_PORT]
    # 2xx at 0 and then T1, 2T1, 4T1, T2, T2 ... (13.3.1.4) until 64*T1.
    gaps = [round(b - a, 2) for a, b in itertools.pairwise(oks)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and set(gaps[4:-1]) == {4.0}
    assert oks[-1] - oks[0] <= 32.0
    assert any(line.startswith("BYE") for line in network.lines())


def test_no_common_codec_is_488() -> None:
    clock, network, uac, _ = setup(codecs=("G722",))
    call = dial(uac, SdpOnlyMedia(codecs=("PCMU",)))
    clock.pump([0.01] * 10)
    assert outcome(call.established).value.code == 488


def test_reinvite_is_answered_with_sdp() -> None:
    clock, network, uac, callee = setup(answer_delay=0)
    call = dial(uac)
    clock.pump([0.01] * 10)
    assert call.dialog is not None
    reinvite = call.dialog.create_request("INVITE", contact="<sip:alice@127.0.0.1:5061>")
    reinvite.headers.add("Content-Type", "application/sdp")
    reinvite.body = SdpOnlyMedia().local_offer()
    answers: list[SipResponse] = []
    uac.send_request(reinvite, Target("udp", "127.0.0.1", UAS_PORT), answers.append, lambda f: None)
    clock.pump([0.01] * 10)
    assert answers[-1].status == 200 and b"m=audio 41000" in answers[-1].body


def test_options_and_unknown_methods_outside_a_dialog() -> None:
    clock, network, uac, _ = setup()
    got: list[SipResponse] = []
    for method in ("OPTIONS", "SUBSCRIBE", "FOO"):
        request = SipRequest(method, parse_uri(f"sip:bob@127.0.0.1:{UAS_PORT}"))
        request.headers.add("Max-Forwards", "70")
        request.headers.add("From", "<sip:alice@127.0.0.1>;tag=x")
        request.headers.add("To", "<sip:bob@127.0.0.1>")
        request.headers.add("Call-ID", f"opt-{method}")
        request.headers.add("CSeq", f"1 {method}")
        uac.send_request(request, Target("udp", "127.0.0.1", UAS_PORT), got.append, lambda f: None)
    clock.pump([0.01] * 10)
    assert [r.status for r in got] == [200, 405, 501]
    assert "INVITE" in (got[0].headers.get("Allow") or "")


def test_bye_for_an_unknown_dialog_is_481() -> None:
    clock, network, uac, callee = setup(answer_delay=0)
    call = dial(uac)
    clock.pump([0.01] * 10)
    assert call.dialog is not None
    bye = call.dialog.create_request("BYE")
    bye.headers.set("Call-ID", "not-a-call")
    got: list[SipResponse] = []
    uac.send_request(bye, Target("udp", "127.0.0.1", UAS_PORT), got.append, lambda f: None)
    clock.pump([0.01] * 10)
    assert [r.status for r in got] == [481]


def test_a_200_crossing_our_cancel_is_acked_byed_and_reported_as_cancelled() -> None:
    clock, network, uac, callee = setup(answer_delay=0.05, latency=0.1)
    call = dial(uac)
    clock.pump([0.01] * 15)  # 100/180 arrived (t=0.15), the 200 is already on its way
    call.hangup()
    clock.pump([0.01] * 100)
    assert outcome(call.established).value.code == 487
    lines = network.lines()
    assert any(line.startswith("CANCEL") for line in lines)
    assert any(line.startswith("ACK") for line in lines)
    assert any(line.startswith("BYE") for line in lines)
    assert outcome(callee.calls[0].ended) in (CallEnd.REMOTE_BYE, CallEnd.CANCELLED)


# -- issue 12 -------------------------------------------------------------------------------


class Recording:
    """A host that only records what reaches it (a proxy's address, for routing checks)."""

    def __init__(self, network: MemoryNetwork, port: int) -> None:
        self.messages: list[SipMessage] = []
        network.stacks[port] = self  # type: ignore[assignment]

    def on_message(self, message: SipMessage, origin: Origin) -> None:
        self.messages.append(message)


def raw_invite(from_addr: str = "<sip:alice@127.0.0.1>;tag=a1", **extra: str) -> SipRequest:
    request = SipRequest("INVITE", parse_uri(f"sip:bob@127.0.0.1:{UAS_PORT}"))
    for name, value in extra.items():
        request.headers.add(name.replace("_", "-"), value)
    request.headers.add("Max-Forwards", "70")
    request.headers.add("From", from_addr)
    request.headers.add("To", "<sip:bob@127.0.0.1>")
    request.headers.add("Call-ID", "raw-1")
    request.headers.add("CSeq", "1 INVITE")
    request.headers.add("Contact", f"<sip:alice@127.0.0.1:{UAC_PORT}>")
    request.headers.add("Content-Type", "application/sdp")
    request.body = SdpOnlyMedia().local_offer()
    return request


def test_hanging_up_an_unanswered_incoming_call_rejects_it_at_once() -> None:
    """Issue 12: the INVITE gets a final answer (480, 13.3.1.3) and ``ended`` fires now."""
    clock, network, uac, callee = setup(answer_delay=30)
    call = dial(uac)
    clock.pump([0.01] * 10)
    incoming = callee.calls[0]
    ended = incoming.hangup()
    assert outcome(ended) is CallEnd.REJECTED and incoming.times.final_code == 480
    clock.pump([0.01] * 10)
    failure = outcome(call.established)
    assert failure.value.code == 480 and outcome(call.ended) is CallEnd.FAILED
    clock.advance(60)
    assert "SIP/2.0 200 OK" not in network.lines()  # never answered after all
    assert incoming.times.answered is None


def test_hanging_up_an_incoming_call_before_its_ring() -> None:
    clock, network, uac, callee = setup(answer_delay=30, ring=False)
    dial(uac)
    clock.pump([0.01] * 10)
    assert outcome(callee.calls[0].hangup()) is CallEnd.REJECTED
    assert "SIP/2.0 480 Temporarily Unavailable" in network.lines()


def test_record_route_is_copied_and_used_as_the_callee_route_set() -> None:
    """12.1.1: the 180 and 200 copy the Record-Route in order; the callee's BYE goes to the
    first route with Route headers in that order (12.2.1.1, loose routing 16.12)."""
    clock, network, uac, callee = setup(answer_delay=0.1)
    near, far = Recording(network, 5064), Recording(network, 5063)
    routes = ["<sip:127.0.0.1:5064;lr>", "<sip:127.0.0.1:5063;lr>"]
    invite = raw_invite()
    for route in routes:
        invite.headers.add("Record-Route", route)
    got: list[SipResponse] = []
    uac.send_request(invite, Target("udp", "127.0.0.1", UAS_PORT), got.append, lambda f: None)
    clock.pump([0.01] * 30)
    assert [r.status for r in got] == [180, 200]
    for response in got:
        assert response.headers.get_all("Record-Route") == routes
    incoming = callee.calls[0]
    assert incoming.dialog is not None
    assert [str(r) for r in incoming.dialog.route_set] == routes
    incoming.ack_received(invite)  # the caller's ACK (through the proxies) reached it
    incoming.hangup()
    clock.pump([0.01] * 5)
    assert far.messages == []
    (bye,) = near.messages
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert bye.headers.get_all("Route") == routes
    assert str(bye.uri) == f"sip:alice@127.0.0.1:{UAC_PORT}"  # the remote target (loose)


def test_the_caller_routes_its_ack_and_bye_by_the_record_route() -> None:
    """12.1.2: the route set of the UAC is the 2xx's Record-Route reversed."""
    clock = Clock()
    network = MemoryNetwork(clock)
    uac = network.attach(UAC_PORT)
    uas = network.attach(UAS_PORT)
    proxy = Recording(network, 5063)

    def answer(request: SipRequest, tx: ServerInvite, origin: Origin) -> None:
        ok = make_response(request, 200, to_tag="t1")
        ok.headers.add("Record-Route", "<sip:127.0.0.1:5063;lr>")
        ok.headers.add("Contact", f"<sip:bob@127.0.0.1:{UAS_PORT}>")
        ok.headers.add("Content-Type", "application/sdp")
        ok.body = SdpOnlyMedia().answer_offer(request.body)
        tx.respond(ok)

    uas.add_endpoint("bob", answer)
    call = dial(uac)
    clock.pump([0.01] * 10)
    assert outcome(call.established) is call
    call.hangup()
    clock.pump([0.01] * 5)
    methods = [m.method for m in proxy.messages if isinstance(m, SipRequest)]
    assert methods == ["ACK", "BYE"]
    assert proxy.messages[1].headers.get_all("Route") == ["<sip:127.0.0.1:5063;lr>"]


def test_an_invite_without_from_tag_is_answered() -> None:
    """RFC 2543 (RFC 3261 12.2.2 / 8.2.6.2): no From tag is a null tag, not a 400."""
    clock, network, uac, callee = setup(answer_delay=0.1)
    invite = raw_invite(from_addr="<sip:alice@127.0.0.1>")
    got: list[SipResponse] = []
    uac.send_request(invite, Target("udp", "127.0.0.1", UAS_PORT), got.append, lambda f: None)
    clock.pump([0.01] * 30)
    assert [r.status for r in got] == [180, 200]
    incoming = callee.calls[0]
    assert incoming.dialog is not None and incoming.dialog.remote_tag == ""
    bye = incoming.dialog.create_request("BYE")
    assert bye.headers.to_addr().tag is None
    assert bye.headers.from_addr().tag == incoming.local_tag


def test_setup_timeout_is_408_and_cancels() -> None:
    clock, network, uac, callee = setup(answer_delay=30)
    call = dial(uac, setup_timeout=5)
    clock.pump([0.1] * 52)
    failure = outcome(call.established)
    assert failure.value.code == 408 and "setup_timeout_s" in failure.value.reason
    assert outcome(call.ended) is CallEnd.FAILED and call.times.final_code == 408
    clock.pump([0.01] * 10)
    assert any(line.startswith("CANCEL") for line in network.lines())
    assert outcome(callee.calls[0].ended) is CallEnd.CANCELLED
    assert call.times.final_code == 408  # the 487 that follows does not reclassify it


def test_setup_timeout_before_any_provisional_cancels_once_one_comes() -> None:
    """9.1: the CANCEL waits for a provisional even after the call counted as 408."""
    clock, network, uac, callee = setup(answer_delay=30, latency=1.0)
    call = dial(uac, setup_timeout=0.5)
    clock.pump([0.1] * 10)
    assert outcome(call.established).value.code == 408
    assert not any(line.startswith("CANCEL") for line in network.lines())
    clock.pump([0.1] * 40)
    assert any(line.startswith("CANCEL") for line in network.lines())
    assert outcome(callee.calls[0].ended) is CallEnd.CANCELLED


def test_transport_error_is_503() -> None:
    clock = Clock()
    network = MemoryNetwork(clock)
    uac = network.attach(UAC_PORT)  # nobody at UAS_PORT: the transport reports an error
    call = dial(uac)
    clock.pump([0.01] * 5)
    failure = outcome(call.established)
    assert failure.value.code == 503 and outcome(call.ended) is CallEnd.FAILED


def test_callee_hangup_before_the_ack_waits_for_it() -> None:
    """15: the callee MUST NOT send a BYE before the ACK of its 2xx (or its timeout)."""
    clock, network, uac, callee = setup(answer_delay=0, latency=0.1)
    call = dial(uac)
    clock.pump([0.05] * 5)  # the 200 went out at 0.1 s, the ACK arrives at 0.3 s
    incoming = callee.calls[0]
    assert incoming.times.answered is not None and incoming.times.confirmed is None
    incoming.hangup()
    assert not any(line.startswith("BYE") for line in network.lines())
    clock.pump([0.05] * 10)
    assert any(line.startswith("BYE") for line in network.lines())
    assert outcome(incoming.ended) is CallEnd.LOCAL_BYE
    assert outcome(call.ended) is CallEnd.REMOTE_BYE


def test_hangup_of_a_call_never_started() -> None:
    clock, network, uac, callee = setup()
    call = OutgoingCall(
        uac,
        SdpOnlyMedia(),
        user="alice",
        from_uri="sip:alice@127.0.0.1",
        to_uri=f"sip:bob@127.0.0.1:{UAS_PORT}",
        target=Target("udp", "127.0.0.1", UAS_PORT),
    )
    assert outcome(call.hangup()) is CallEnd.CANCELLED
    assert outcome(call.established).value.code == 487 and network.lines() == []
