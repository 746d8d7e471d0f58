"""RFC 3261 section 17 transactions on task.Clock: the exact retransmission and timeout times."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from callmeter.sip.message import SipMessage, SipRequest, SipResponse, make_response, parse_message
from callmeter.sip.transaction import (
    ClientInvite,
    Failure,
    ServerInvite,
    State,
    TransactionLayer,
    make_non2xx_ack,
)

BRANCH = "z9hG4bK74bf9"


def request(method: str = "INVITE", branch: str = BRANCH, cseq: int = 1) -> SipRequest:
    text = (
        f"{method} sip:bob@biloxi.example.com SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch={branch}\r\n"
        "Route: <sip:proxy.example.com;lr>\r\n"
        "Max-Forwards: 70\r\n"
        "From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n"
        "To: Bob <sip:bob@biloxi.example.com>\r\n"
        "Call-ID: 3848276298220188511@atlanta.example.com\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def response_to(req: SipRequest, status: int) -> SipResponse:
    return make_response(req, status, to_tag=None if status == 100 else "8321234356")


class Recorder:
    """Collects what a transaction sends and tells its TU, with the clock time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, SipMessage]] = []
        self.responses: list[int] = []
        self.failures: list[tuple[float, Failure]] = []

    def send(self, message: SipMessage) -> None:
        self.sent.append((self.clock.seconds(), message))

    def on_response(self, response: SipResponse) -> None:
        self.responses.append(response.status)

    def on_failure(self, failure: Failure) -> None:
        self.failures.append((self.clock.seconds(), failure))

    def send_times(self, method: str | None = None) -> list[float]:
        return [
            t
            for t, m in self.sent
            if method is None or (isinstance(m, SipRequest) and m.method == method)
        ]


def client(method: str = "INVITE", reliable: bool = False):  # type: ignore[no-untyped-def]
    clock = Clock()
    layer = TransactionLayer(clock)
    rec = Recorder(clock)
    tx = layer.send_request(request(method), rec.send, reliable, rec.on_response, rec.on_failure)
    return clock, layer, rec, tx


# -- INVITE client transaction (17.1.1, Figure 5) -------------------------------------------


def test_invite_client_timer_a_doubles_and_timer_b_times_out_at_64_t1() -> None:
    clock, layer, rec, tx = client()
    clock.pump([0.25] * 140)
    # Timer A: T1, 2T1, 4T1, ... (not capped at T2); Timer B = 64*T1 = 32 s.
    assert rec.send_times("INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert rec.failures == [(32.0, Failure.TIMEOUT)]
    assert tx.state is State.TERMINATED and len(layer) == 0
    assert not clock.getDelayedCalls()


def test_invite_client_over_tcp_never_retransmits() -> None:
    clock, _, rec, _tx = client(reliable=True)
    clock.pump([1.0] * 40)
    assert rec.send_times() == [0.0]
    assert rec.failures == [(32.0, Failure.TIMEOUT)]


def test_provisional_stops_retransmission_and_timer_b() -> None:
    clock, layer, rec, tx = client()
    clock.pump([0.5, 0.1])  # one retransmission at 0.5
    assert layer.receive_response(response_to(tx.request, 180))
    assert tx.state is State.PROCEEDING
    clock.pump([1.0] * 100)
    assert rec.send_times("INVITE") == [0.0, 0.5]
    assert rec.responses == [180] and rec.failures == []
    assert tx.state is State.PROCEEDING  # the UA core's own timer decides to CANCEL


def test_non2xx_final_is_acked_by_the_transaction_and_absorbed_after() -> None:
    clock, layer, rec, tx = client()
    busy = response_to(tx.request, 486)
    layer.receive_response(busy)
    assert tx.state is State.COMPLETED and rec.responses == [486]
    acks = [m for _, m in rec.sent if isinstance(m, SipRequest) and m.method == "ACK"]
    assert len(acks) == 1
    layer.receive_response(busy)  # retransmitted 486: ACK again, the TU does not see it
    assert len(rec.send_times("ACK")) == 2 and rec.responses == [486]
    clock.advance(31.9)
    assert tx.state is State.COMPLETED  # Timer D: 32 s over UDP
    clock.advance(0.1)
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_non2xx_over_tcp_terminates_at_once() -> None:
    _, layer, _, tx = client(reliable=True)
    layer.receive_response(response_to(tx.request, 503))
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_2xx_enters_accepted_and_passes_retransmissions_to_the_tu() -> None:
    """RFC 6026 section 8.4: Accepted, Timer M = 64*T1."""
    clock, layer, rec, tx = client()
    ok = response_to(tx.request, 200)
    layer.receive_response(ok)
    assert tx.state is State.ACCEPTED
    layer.receive_response(ok)
    assert rec.responses == [200, 200]
    assert rec.send_times("ACK") == []  # the 2xx ACK is the dialog's
    clock.advance(32)
    assert tx.state is State.TERMINATED
    assert not layer.receive_response(ok)  # now a stray 2xx for the core


def test_ack_for_non2xx_follows_17_1_1_3() -> None:
    invite = request()
    ack = make_non2xx_ack(invite, response_to(invite, 404))
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.headers.get_all("Via") == [str(invite.headers.top_via())]
    assert ack.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=8321234356"
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.headers.call_id() == invite.headers.call_id()
    assert str(ack.headers.cseq()) == "1 ACK"
    assert ack.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]


def test_transport_error_informs_the_tu() -> None:
    _, layer, rec, tx = client()
    tx.transport_error()
    assert [f for _, f in rec.failures] == [Failure.TRANSPORT_ERROR]
    assert len(layer) == 0


# -- non-INVITE client transaction (17.1.2, Figure 6) ---------------------------------------


def test_non_invite_client_timer_e_caps_at_t2_and_timer_f_times_out() -> None:
    clock, _, rec, tx = client("REGISTER")
    clock.pump([0.25] * 140)
    assert rec.send_times() == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert rec.failures == [(32.0, Failure.TIMEOUT)]
    assert tx.state is State.TERMINATED


def test_non_invite_client_in_proceeding_retransmits_every_t2() -> None:
    clock, layer, rec, tx = client("OPTIONS")
    clock.advance(0.5)  # the first retransmission, then a 100 Trying at the same instant
    layer.receive_response(response_to(tx.request, 100))
    assert tx.state is State.PROCEEDING
    clock.pump([0.25] * 140)
    # E fired at 0.5; next at min(2*0.5, T2) = 1.5 (scheduled in Trying); then every T2.
    assert rec.send_times() == [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert rec.failures == [(32.0, Failure.TIMEOUT)]


def test_non_invite_final_response_then_timer_k() -> None:
    clock, layer, rec, tx = client("BYE")
    clock.pump([0.5, 1.0, 2.0, 0.1])
    final = response_to(tx.request, 200)
    layer.receive_response(final)
    layer.receive_response(final)  # absorbed in Completed
    assert rec.responses == [200] and tx.state is State.COMPLETED
    clock.advance(4.9)
    assert tx.state is State.COMPLETED
    clock.advance(0.1)  # Timer K = T4
    assert tx.state is State.TERMINATED
    assert rec.send_times() == [0.0, 0.5, 1.5, 3.5]  # retransmissions stopped at the final


# -- INVITE server transaction (17.2.1, Figure 7) -------------------------------------------


def server(method: str = "INVITE", reliable: bool = False):  # type: ignore[no-untyped-def]
    clock = Clock()
    layer = TransactionLayer(clock)
    rec = Recorder(clock)
    tx = layer.receive_request(request(method), rec.send, reliable, rec.on_failure)
    assert tx is not None
    return clock, layer, rec, tx


def test_server_invite_resends_last_provisional_on_retransmission() -> None:
    _, layer, rec, tx = server()
    tx.respond(response_to(tx.request, 180))
    assert layer.receive_request(request(), rec.send, False) is None
    assert [m.status for _, m in rec.sent if isinstance(m, SipResponse)] == [180, 180]


def test_server_invite_timer_g_and_timer_h_without_ack() -> None:
    clock, layer, rec, tx = server()
    tx.respond(response_to(tx.request, 486))
    clock.pump([0.25] * 140)
    assert [t for t, _ in rec.sent] == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert rec.failures == [(32.0, Failure.TIMEOUT)]
    assert tx.state is State.TERMINATED and len(layer) == 0


def test_server_invite_ack_confirms_then_timer_i() -> None:
    clock, layer, rec, tx = server()
    tx.respond(response_to(tx.request, 603))
    clock.advance(0.6)  # one retransmission of the 603
    assert layer.receive_request(request("ACK"), rec.send, False) is None
    assert tx.state is State.CONFIRMED
    assert layer.receive_request(request("ACK"), rec.send, False) is None  # absorbed
    clock.advance(4.9)
    assert tx.state is State.CONFIRMED
    clock.advance(0.1)
    assert tx.state is State.TERMINATED
    assert len(rec.sent) == 2 and rec.failures == []


def test_server_invite_over_tcp_has_no_timer_g_and_no_wait_in_confirmed() -> None:
    clock, layer, rec, tx = server(reliable=True)
    tx.respond(response_to(tx.request, 486))
    clock.advance(10)
    assert len(rec.sent) == 1
    layer.receive_request(request("ACK"), rec.send, True)
    assert tx.state is State.TERMINATED


def test_server_invite_2xx_accepted_absorbs_invites_and_timer_l() -> None:
    """RFC 6026 section 8.7: retransmitted INVITEs are absorbed; the core resends the 2xx."""
    clock, layer, rec, tx = server()
    ok = response_to(tx.request, 200)
    tx.respond(ok)
    assert tx.state is State.ACCEPTED
    layer.receive_request(request(), rec.send, False)
    assert len(rec.sent) == 1
    tx.respond(ok)  # the UAS core's retransmission of its 2xx goes out
    assert len(rec.sent) == 2
    ack_of_2xx = request("ACK", branch="z9hG4bKnew")
    assert layer.is_stray_ack(ack_of_2xx)
    clock.advance(32)
    assert tx.state is State.TERMINATED


def test_cancel_finds_its_invite() -> None:
    _, layer, rec, tx = server()
    cancel = request("CANCEL")
    cancel_tx = layer.receive_request(cancel, rec.send, False)
    assert cancel_tx is not None and cancel_tx is not tx
    assert layer.find_invite(cancel) is tx
    assert isinstance(tx, ServerInvite)
    assert layer.find_invite(request("CANCEL", branch="z9hG4bKother")) is None


# -- non-INVITE server transaction (17.2.2, Figure 8) ---------------------------------------


def test_server_non_invite_absorbs_in_trying_and_resends_final() -> None:
    clock, layer, rec, tx = server("OPTIONS")
    assert layer.receive_request(request("OPTIONS"), rec.send, False) is None
    assert rec.sent == []
    tx.respond(response_to(tx.request, 200))
    layer.receive_request(request("OPTIONS"), rec.send, False)
    assert len(rec.sent) == 2
    clock.advance(31.9)
    assert tx.state is State.COMPLETED
    clock.advance(0.1)  # Timer J = 64*T1 over UDP
    assert tx.state is State.TERMINATED
    # After J the same branch is a new request again.
    assert layer.receive_request(request("OPTIONS"), rec.send, False) is not None


def test_server_non_invite_over_tcp_terminates_at_final() -> None:
    _, layer, _, tx = server("REGISTER", reliable=True)
    tx.respond(response_to(tx.request, 200))
    assert tx.state is State.TERMINATED and len(layer) == 0


# -- matching (17.1.3, 17.2.3) --------------------------------------------------------------


def test_response_matching_needs_branch_and_method() -> None:
    _, layer, rec, _tx = client()
    other_branch = response_to(request(branch="z9hG4bKzzz"), 200)
    assert not layer.receive_response(other_branch)
    cancel_response = response_to(request("CANCEL"), 200)  # same branch, method CANCEL
    assert not layer.receive_response(cancel_response)
    assert rec.responses == []


def test_a_branch_cannot_be_reused_while_its_transaction_lives() -> None:
    clock = Clock()
    layer = TransactionLayer(clock)
    rec = Recorder(clock)
    layer.send_request(request(), rec.send, False, rec.on_response, rec.on_failure)
    with pytest.raises(ValueError, match="already in use"):
        layer.send_request(request(), rec.send, False, rec.on_response, rec.on_failure)
    with pytest.raises(ValueError, match="without a transaction"):
        layer.send_request(request("ACK"), rec.send, False, rec.on_response, rec.on_failure)


def test_client_invite_class() -> None:
    _, _, _, tx = client()
    assert isinstance(tx, ClientInvite) and tx.key == (BRANCH, "INVITE")


def test_abandon_all_stops_every_timer_silently() -> None:
    clock, layer, rec, tx = client()
    layer.receive_request(request("OPTIONS", branch="z9hG4bKsrv"), rec.send, False)
    layer.abandon_all()
    assert len(layer) == 0 and not clock.getDelayedCalls()
    clock.advance(100)
    assert rec.send_times() == [0.0] and rec.failures == []
