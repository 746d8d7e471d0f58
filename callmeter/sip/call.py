"""Calls: INVITE sessions as caller (UAC, RFC 3261 13.2) and callee (UAS, 13.3), BYE (15),
CANCEL (9) and re-INVITE (14).

The SDP offer/answer is not done here: a call talks to its media through the narrow
:class:`MediaSession` interface (our offer, their answer; their offer, our answer; start; stop),
so the SIP layer never knows about RTP.  Every step's time is kept in :class:`CallTimes` for the
metrics of SPEC.md: PDD is INVITE to the first 180/183, setup time INVITE to the 200.

Each call is a thin shell around a :class:`~callmeter.sip.call_state.CallMachine`: the shell
turns messages, timers and API calls into inputs, and the machine's transition table (the
UAC's and the UAS's, in :mod:`callmeter.sip.call_state`) says which outputs run.  The outputs
are the methods below named in the tables; none of them decides on the call's state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from callmeter.sip.call_state import (
    UAC_TABLE,
    UAS_TABLE,
    CallInput,
    CallMachine,
    CallState,
)
from callmeter.sip.dialog import Dialog, DialogError, target_of
from callmeter.sip.digest import AuthDecision, DigestClient, DigestError
from callmeter.sip.headers import Headers
from callmeter.sip.message import (
    SipRequest,
    SipResponse,
    make_response,
    new_call_id,
    new_tag,
)
from callmeter.sip.stack import ALLOW, SipStack
from callmeter.sip.transaction import ClientTransaction, Failure, ServerInvite, ServerTransaction
from callmeter.sip.transport import Origin, Target
from callmeter.sip.uri import NameAddr, parse_uri

__all__ = [
    "CallEnd",
    "CallEvent",
    "CallFailed",
    "CallTimes",
    "IncomingCall",
    "MediaSession",
    "MediaUnavailable",
    "OutgoingCall",
]

SDP = "application/sdp"
MAX_AUTH_ROUNDS = 3
#: 13.3.1.3: what an incoming call we hang up before answering gets (the endpoint is going
#: away, e.g. the run ends: "temporarily unavailable", not "busy").
HANGUP_BEFORE_ANSWER = (480, "Temporarily Unavailable")


class MediaSession(Protocol):
    """What a call needs from its media (RFC 3264 offer/answer, and the streams)."""

    def local_offer(self) -> bytes:
        """Our SDP offer for an outgoing INVITE."""

    def apply_answer(self, answer: bytes) -> None:
        """Their SDP answer to our offer; raises ValueError when it cannot be used."""

    def answer_offer(self, offer: bytes) -> bytes:
        """Our SDP answer to their offer; raises ValueError when nothing is acceptable (488)."""

    def start(self) -> None:
        """The call is up: start sending and receiving."""

    def stop(self) -> None:
        """The call is over: stop the streams and release their ports."""


class MediaUnavailable(ValueError):
    """The media could not be set up for lack of resources (RTP ports): a 503, not a 488."""


class CallFailed(Exception):
    """A call that did not reach 200: ``code`` is the final status (408 timeout, 503 transport
    error, 487 when we cancelled it)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class CallEnd(enum.Enum):
    LOCAL_BYE = "local BYE"
    REMOTE_BYE = "remote BYE"
    CANCELLED = "cancelled"
    FAILED = "failed"
    NO_ACK = "no ACK"
    REJECTED = "rejected"  # an incoming call we hung up before answering it


@dataclass
class CallTimes:
    """Clock times (seconds) of a call's steps; None for a step that did not happen."""

    invite: float
    first_provisional: float | None = None
    answered: float | None = None
    confirmed: float | None = None
    ended: float | None = None
    final_code: int | None = None
    end: CallEnd | None = None

    @property
    def pdd_ms(self) -> float | None:
        """Post-dial delay: INVITE to the first 180/183."""
        if self.first_provisional is None:
            return None
        return (self.first_provisional - self.invite) * 1000

    @property
    def setup_ms(self) -> float | None:
        """Setup time: INVITE to 200 OK."""
        return None if self.answered is None else (self.answered - self.invite) * 1000


@dataclass
class CallEvent:
    """What came with an input: the message, its transaction, the dialog a 2xx makes, or the
    status code and reason of an ending."""

    response: SipResponse | None = None
    request: SipRequest | None = None
    transaction: ServerTransaction | None = None
    dialog: Dialog | None = None
    code: int = 0
    reason: str = ""


def _ignore(_: Any) -> None:
    return None


class _Call:
    """What both directions share: the stack, the media, the dialog, in-dialog requests and
    the endings.  Subclasses give the table and the role's outputs."""

    log = Logger()
    table = UAC_TABLE

    def __init__(self, stack: SipStack, media: MediaSession, transport: str) -> None:
        self.stack = stack
        self.media = media
        self.transport = transport
        self.dialog: Dialog | None = None
        self.times = CallTimes(invite=stack.clock.seconds())
        self.ended: defer.Deferred[CallEnd] = defer.Deferred()
        self.machine = CallMachine(self.table, self)
        self._media_started = False

    @property
    def state(self) -> CallState:
        return self.machine.state

    @property
    def active(self) -> bool:
        return self.times.end is None

    def hangup(self) -> defer.Deferred[CallEnd]:
        """End the call, whatever its state: BYE, CANCEL, or a rejection of the INVITE."""
        self.machine.feed(CallInput.HANGUP, CallEvent())
        return self.ended

    # -- from the stack -------------------------------------------------------------------

    def request_received(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """A request inside the dialog (12.2.2): out of order is 500, else the table's."""
        if self.dialog is not None and not self.dialog.accepts(request):
            transaction.respond(make_response(request, 500, "Out of Order CSeq"))
            return
        name = {"BYE": CallInput.BYE_RECEIVED, "INVITE": CallInput.REINVITE}.get(
            request.method, CallInput.REQUEST
        )
        self.machine.feed(name, CallEvent(request=request, transaction=transaction))

    def ack_received(self, ack: SipRequest) -> None:
        self.machine.feed(CallInput.ACK_RECEIVED, CallEvent(request=ack))

    def response_received(self, response: SipResponse) -> None:
        return None

    # -- outputs both roles share -----------------------------------------------------------

    def send_bye(self, event: CallEvent) -> None:
        """15.1.1: BYE inside the dialog (to its route set's first hop)."""
        if self.dialog is None:
            return
        bye = self.dialog.create_request("BYE")
        self.stack.send_request(bye, self._target_of(self.dialog), _ignore, _ignore)

    def answer_bye(self, event: CallEvent) -> None:
        """15.1.2: 200 to the BYE."""
        assert event.request is not None and event.transaction is not None
        event.transaction.respond(make_response(event.request, 200))

    def answer_reinvite(self, event: CallEvent) -> None:
        """14.2: a new offer gets our answer, an empty one our last SDP; 488 if unusable."""
        request, transaction = event.request, event.transaction
        assert request is not None and transaction is not None
        response = make_response(request, 200)
        response.headers.add("Contact", self._contact())
        try:
            body = self.media.answer_offer(request.body) if request.body else self._last_sdp()
        except ValueError:
            transaction.respond(make_response(request, 488))
            return
        response.headers.add("Content-Type", SDP)
        response.body = body
        transaction.respond(response)

    def answer_request(self, event: CallEvent) -> None:
        """INFO, UPDATE, OPTIONS, NOTIFY inside the dialog: 200; other methods 405."""
        request, transaction = event.request, event.transaction
        assert request is not None and transaction is not None
        if request.method in ("INFO", "UPDATE", "OPTIONS", "NOTIFY"):
            transaction.respond(make_response(request, 200))
            return
        response = make_response(request, 405)
        response.headers.add("Allow", ALLOW)
        transaction.respond(response)

    def refuse_481(self, event: CallEvent) -> None:
        """12.2.2: no dialog of ours to take the request (not yet, or no longer)."""
        if event.request is not None and event.transaction is not None:
            event.transaction.respond(make_response(event.request, 481))

    def end_local_bye(self, event: CallEvent) -> None:
        self._finish(CallEnd.LOCAL_BYE)

    def end_remote_bye(self, event: CallEvent) -> None:
        self._finish(CallEnd.REMOTE_BYE)

    # -- helpers --------------------------------------------------------------------------

    def _target_of(self, dialog: Dialog) -> Target:
        transport, host, port = target_of(dialog.next_hop(), self.transport)
        return Target(transport, host, port)

    def _dialog_target(self) -> Target:
        assert self.dialog is not None
        return self._target_of(self.dialog)

    def _last_sdp(self) -> bytes:
        return b""

    def _contact(self) -> str:
        return self.stack.contact(self._user(), self.transport)

    def _user(self) -> str:
        raise NotImplementedError

    def _start_media(self) -> None:
        if not self._media_started:
            self._media_started = True
            self.media.start()

    def _finish(self, how: CallEnd) -> None:
        """The call's one ending: the first classification wins, later ones do nothing."""
        if not self.active:
            return
        self.times.end = how
        self.times.ended = self.stack.clock.seconds()
        self.media.stop()  # idempotent: also releases the ports of media never started
        if self.dialog is not None:
            self.stack.remove_dialog(self.dialog.call_id, self.dialog.local_tag)
        self._cleanup()
        self.ended.callback(how)

    def _cleanup(self) -> None:
        return None


class OutgoingCall(_Call):
    """A call we make (UAC, RFC 3261 13.2): INVITE with our offer, ACK, BYE or CANCEL.

    Its states and transitions are :data:`~callmeter.sip.call_state.UAC_TABLE`.
    """

    table = UAC_TABLE

    def __init__(
        self,
        stack: SipStack,
        media: MediaSession,
        *,
        user: str,
        from_uri: str,
        to_uri: str,
        target: Target,
        credentials: DigestClient | None = None,
        setup_timeout: float = 60.0,
        display_name: str | None = None,
    ) -> None:
        super().__init__(stack, media, target.transport)
        self.user = user
        self.target = target
        self.credentials = credentials
        self.setup_timeout = setup_timeout
        self.call_id = new_call_id()
        self.local_tag = new_tag()
        self.from_addr = f"<{from_uri}>;tag={self.local_tag}"
        if display_name:
            self.from_addr = f'"{display_name}" {self.from_addr}'
        self.to_addr = f"<{to_uri}>"
        self.request_uri = to_uri
        self.cseq = 0
        self.established: defer.Deferred[OutgoingCall] = defer.Deferred()
        self._invite: SipRequest | None = None
        self._transaction: ClientTransaction | None = None
        self._rounds = 0  # digest rounds of the current INVITE (22.2)
        self._ack: SipRequest | None = None
        self._timeout: IDelayedCall | None = None
        self._offer = b""

    def start(self) -> defer.Deferred[OutgoingCall]:
        """Send the INVITE; fires when the call is up, fails with CallFailed otherwise."""
        self._offer = self.media.local_offer()
        self.times.invite = self.stack.clock.seconds()
        self.stack.add_dialog(self.call_id, self.local_tag, self)
        self.machine.feed(CallInput.START, CallEvent())
        return self.established

    # -- inputs: what the INVITE transaction reports --------------------------------------

    def _on_response(self, response: SipResponse, invite: SipRequest, rounds: int) -> None:
        """Classify a response to our INVITE as an input of the table."""
        self.machine.feed(*self._classify(response, invite, rounds))

    def _classify(
        self, response: SipResponse, invite: SipRequest, rounds: int
    ) -> tuple[CallInput, CallEvent]:
        status = response.status
        event = CallEvent(response=response, request=invite, code=status, reason=response.reason)
        if status < 200:
            return CallInput.PROVISIONAL, event
        if status < 300:
            try:
                event.dialog = Dialog.as_uac(invite, response)
            except (DialogError, ValueError) as error:
                self.log.warn("unusable 2xx: {error}", error=str(error))
                event.code, event.reason = 502, f"unusable 2xx: {error}"
                return CallInput.FAILURE, event
            return CallInput.SUCCESS, event
        if status in (401, 407) and self._can_answer(response, invite, rounds):
            self._rounds = rounds + 1
            return CallInput.CHALLENGE, event
        return CallInput.FAILURE, event

    def _can_answer(self, response: SipResponse, invite: SipRequest, rounds: int) -> bool:
        """22.2: a challenge we have credentials for, once per nonce, a few rounds at most."""
        if self.credentials is None or rounds >= MAX_AUTH_ROUNDS:
            return False
        try:
            decision = self.credentials.on_response(response, invite)
        except DigestError:
            return False
        return decision is not AuthDecision.REJECTED

    def _on_failure(self, failure: Failure) -> None:
        """8.1.3.1: a timeout is a 408, a transport error a 503."""
        if failure is Failure.TIMEOUT:
            self.machine.feed(CallInput.TIMEOUT, CallEvent(code=408, reason=failure.value))
        else:
            self.machine.feed(CallInput.TRANSPORT_ERROR, CallEvent(code=503, reason=failure.value))

    def response_received(self, response: SipResponse) -> None:
        """A 2xx retransmitted after the INVITE transaction ended: the table ACKs it again."""
        if (
            200 <= response.status < 300
            and self._invite is not None
            and response.headers.cseq().method == "INVITE"
        ):
            self._on_response(response, self._invite, self._rounds)

    def _setup_timed_out(self) -> None:
        self._timeout = None
        self.machine.feed(
            CallInput.SETUP_TIMEOUT,
            CallEvent(
                code=408, reason=f"no answer within {self.setup_timeout:g} s (setup_timeout_s)"
            ),
        )

    # -- outputs (UAC_TABLE) ----------------------------------------------------------------

    def send_invite(self, event: CallEvent) -> None:
        """13.2.1: the INVITE with our offer (and our credentials after a challenge)."""
        rounds = self._rounds
        self.cseq += 1
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", self.from_addr)
        headers.add("To", self.to_addr)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} INVITE")
        headers.add("Contact", self._contact())
        headers.add("Allow", ALLOW)
        headers.add("Content-Type", SDP)
        if self.credentials is not None:
            for name, value in self.credentials.authorization_headers(
                "INVITE", self.request_uri, self._offer
            ):
                headers.add(name, value)
        invite = SipRequest("INVITE", parse_uri(self.request_uri), headers, self._offer)
        self._invite = invite
        self._transaction = self.stack.send_request(
            invite,
            self.target,
            lambda response: self._on_response(response, invite, rounds),
            self._on_failure,
        )

    def arm_setup_timer(self, event: CallEvent) -> None:
        self._timeout = self.stack.clock.callLater(self.setup_timeout, self._setup_timed_out)

    def note_provisional(self, event: CallEvent) -> None:
        """PDD: the first 180/183."""
        if event.code in (180, 183) and self.times.first_provisional is None:
            self.times.first_provisional = self.stack.clock.seconds()

    def adopt_dialog(self, event: CallEvent) -> None:
        """12.1.2: the first 2xx makes the dialog; its ACK is built once (13.2.2.4)."""
        assert event.dialog is not None and event.response is not None
        if self.dialog is not None:
            return
        self.dialog = event.dialog
        if self.active:
            self.times.answered = self.stack.clock.seconds()
            self.times.final_code = event.response.status
        self._cancel_timeout()
        self._ack = self.dialog.create_ack(self.dialog.local_seq)

    def send_ack(self, event: CallEvent) -> None:
        assert self._ack is not None
        ack = SipRequest(self._ack.method, self._ack.uri, self._ack.headers.copy())
        self.stack.send_ack(ack, self._dialog_target())

    def ack_again(self, event: CallEvent) -> None:
        """13.2.2.4: every 2xx gets an ACK.  A retransmission of ours is ACKed again; a 2xx
        from another fork (another To tag) or one we no longer want is ACKed and BYEd."""
        other = event.dialog
        if other is None:
            return
        if self.dialog is not None and other.remote_tag == self.dialog.remote_tag:
            self.send_ack(event)
            return
        ack = other.create_ack(other.local_seq)
        target = self._target_of(other)
        self.stack.send_ack(ack, target)
        self.stack.send_request(other.create_request("BYE"), target, _ignore, _ignore)

    def start_session(self, event: CallEvent) -> None:
        """The call is up: apply the SDP answer and start the media; an unusable answer is
        the ANSWER_REJECTED input (BYE, 488)."""
        assert event.response is not None
        self.times.confirmed = self.stack.clock.seconds()
        try:
            self.media.apply_answer(event.response.body)
        except ValueError as error:
            self.log.warn("unusable SDP answer: {error}", error=str(error))
            self.machine.feed(
                CallInput.ANSWER_REJECTED,
                CallEvent(code=488, reason=f"unusable SDP answer: {error}"),
            )
            return
        self._start_media()
        self.established.callback(self)

    def send_cancel(self, event: CallEvent) -> None:
        """9.1: CANCEL with the INVITE's Request-URI, Call-ID, To, From, CSeq number, Route
        and top Via."""
        if self._invite is None:
            return
        invite = self._invite
        headers = Headers()
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("Max-Forwards", "70")
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", invite.headers.get("To") or "")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{invite.headers.cseq().number} CANCEL")
        cancel = SipRequest("CANCEL", invite.uri, headers)
        self.stack.send_request(
            cancel, self.target, _ignore, _ignore, via=str(invite.headers.top_via())
        )

    def fail(self, event: CallEvent) -> None:
        """13.2.2.3: a final 3xx-6xx ends the attempt with its code."""
        self._fail(event.code, event.reason, CallEnd.FAILED)

    def fail_timeout(self, event: CallEvent) -> None:
        """8.1.3.1: no final response (Timer B) counts as 408."""
        self._fail(408, event.reason or "timeout", CallEnd.FAILED)

    def fail_transport(self, event: CallEvent) -> None:
        """8.1.3.1: a transport error counts as 503."""
        self._fail(503, event.reason or "transport error", CallEnd.FAILED)

    def fail_setup_timeout(self, event: CallEvent) -> None:
        """No answer within setup_timeout: 408 now (the CANCEL follows per the table)."""
        self._fail(408, event.reason, CallEnd.FAILED)

    def fail_cancelled(self, event: CallEvent) -> None:
        """The final response to a cancelled INVITE: 487 is CANCELLED; a 2xx that crossed
        the CANCEL (ACKed and BYEd) is reported as 487 too; another code as itself."""
        if event.response is not None and 200 <= event.response.status < 300:
            self._fail(487, "cancelled by the caller", CallEnd.CANCELLED)
        elif event.code == 487:
            self._fail(487, event.reason, CallEnd.CANCELLED)
        else:
            self._fail(event.code, event.reason, CallEnd.FAILED)

    def fail_answer(self, event: CallEvent) -> None:
        self._fail(event.code, event.reason, CallEnd.FAILED)

    def end_unsent(self, event: CallEvent) -> None:
        self._fail(487, "hung up before the INVITE was sent", CallEnd.CANCELLED)

    # -- helpers --------------------------------------------------------------------------

    def _fail(self, code: int, reason: str, how: CallEnd) -> None:
        """Classify the attempt (once) and end the call."""
        if not self.active:
            return
        if self.times.final_code is None:
            self.times.final_code = code
        if not self.established.called:
            self.established.errback(CallFailed(code, reason))
        self._finish(how)

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def _cleanup(self) -> None:
        self._cancel_timeout()
        if not self.established.called:
            self.established.errback(CallFailed(self.times.final_code or 500, "ended"))
        self.stack.remove_dialog(self.call_id, self.local_tag)

    def _user(self) -> str:
        return self.user

    def _last_sdp(self) -> bytes:
        return self._offer


class IncomingCall(_Call):
    """A call we answer (UAS, RFC 3261 13.3): 180, then 200 with our answer after a delay,
    the 2xx retransmitted until the ACK (13.3.1.4); 487 when cancelled first, 480 when hung
    up before the answer.  Its 1xx and 2xx carry the INVITE's Record-Route (12.1.1).

    Its states and transitions are :data:`~callmeter.sip.call_state.UAS_TABLE`.
    """

    table = UAS_TABLE

    def __init__(
        self,
        stack: SipStack,
        media: MediaSession,
        request: SipRequest,
        transaction: ServerInvite,
        origin: Origin,
        *,
        user: str,
        answer_delay: float = 0.0,
        ring: bool = True,
        on_end: Callable[[IncomingCall], None] | None = None,
    ) -> None:
        super().__init__(stack, media, origin.transport)
        self.request = request
        self.transaction = transaction
        self.origin = origin
        self.user = user
        self.answer_delay = answer_delay
        self.ring = ring
        self.local_tag = new_tag()
        self.remote: NameAddr = request.headers.from_addr()
        self._answer_sdp = b""
        self._ok: SipResponse | None = None
        self._pending: IDelayedCall | None = None
        self._retransmit_interval = stack.transactions.timers.t1
        self._retransmit_deadline = 0.0
        self._on_end = on_end

    def start(self) -> None:
        """Take the INVITE: check it (offer, Contact), ring, answer after ``answer_delay``."""
        refusal = self._check_invite()
        if refusal is not None:
            self.machine.feed(CallInput.BAD_INVITE, refusal)
            return
        self.machine.feed(CallInput.INVITE, CallEvent())
        if self.ring:
            self.machine.feed(CallInput.RING, CallEvent())

    def _check_invite(self) -> CallEvent | None:
        """13.3.1: what makes us refuse an INVITE before ringing; None when it is usable."""
        request = self.request
        if not request.body:
            return CallEvent(code=488, reason="Not Acceptable Here")  # we need an offer
        try:
            self.dialog = Dialog.as_uas(request, self.local_tag)
        except (DialogError, ValueError):
            return CallEvent(code=400, reason="Bad Request (no usable Contact)")
        try:
            self._answer_sdp = self.media.answer_offer(request.body)
        except MediaUnavailable as error:
            self.log.warn("incoming call refused: {error}", error=str(error))
            return CallEvent(code=503, reason="Service Unavailable")  # out of ports
        except ValueError:
            return CallEvent(code=488, reason="Not Acceptable Here")
        return None

    # -- inputs ---------------------------------------------------------------------------

    def _cancelled(self) -> None:
        """A CANCEL arrived before we answered (the stack said 200 to it, 9.2)."""
        self.machine.feed(CallInput.CANCEL_RECEIVED, CallEvent())

    def _answer_due(self) -> None:
        self._pending = None
        self.machine.feed(CallInput.ANSWER, CallEvent())

    def _retransmit_ok(self) -> None:
        """13.3.1.4: resend the 2xx at T1, 2*T1 ... capped at T2, until the ACK or 64*T1."""
        self._pending = None
        if self._ok is None:
            return
        if self.stack.clock.seconds() >= self._retransmit_deadline:
            self._no_ack()
            return
        self.transaction.respond(self._ok)
        timers = self.stack.transactions.timers
        self._retransmit_interval = min(2 * self._retransmit_interval, timers.t2)
        remaining = self._retransmit_deadline - self.stack.clock.seconds()
        self._pending = self.stack.clock.callLater(
            min(self._retransmit_interval, remaining), self._retransmit_ok
        )

    def _no_ack(self) -> None:
        self._pending = None
        self.machine.feed(CallInput.ACK_TIMEOUT, CallEvent())

    # -- outputs (UAS_TABLE) ----------------------------------------------------------------

    def accept_invite(self, event: CallEvent) -> None:
        """Watch for its CANCEL, take the requests of its (early) dialog, arm the answer."""
        assert self.dialog is not None
        self.stack.on_cancel(self.transaction, self._cancelled)
        self.stack.add_dialog(self.dialog.call_id, self.local_tag, self)
        self._pending = self.stack.clock.callLater(self.answer_delay, self._answer_due)

    def send_ringing(self, event: CallEvent) -> None:
        """13.3.1.1: 180 with our tag and Contact: an early dialog, so Record-Route too."""
        ringing = self._response(180)
        self.transaction.respond(ringing)

    def send_ok(self, event: CallEvent) -> None:
        """13.3.1.4: 200 with our answer; retransmitted until the ACK (UDP), or an ACK timer
        (reliable transports), 64*T1 either way."""
        self.stack.forget_cancel(self.transaction)
        ok = self._response(200)
        ok.headers.add("Allow", ALLOW)
        ok.headers.add("Content-Type", SDP)
        ok.body = self._answer_sdp
        self._ok = ok
        self.times.answered = self.stack.clock.seconds()
        self.times.final_code = 200
        self.transaction.respond(ok)
        self._start_media()
        timers = self.stack.transactions.timers
        if not self.origin.reliable:
            self._retransmit_deadline = self.times.answered + timers.timeout
            self._pending = self.stack.clock.callLater(
                self._retransmit_interval, self._retransmit_ok
            )
        else:
            self._pending = self.stack.clock.callLater(timers.timeout, self._no_ack)

    def confirm(self, event: CallEvent) -> None:
        """The ACK came: the dialog is confirmed, the 2xx is no longer retransmitted."""
        self.times.confirmed = self.stack.clock.seconds()
        self._cancel_pending()

    def reject(self, event: CallEvent) -> None:
        self._reject(event.code, event.reason)

    def decline(self, event: CallEvent) -> None:
        """Hung up before the answer: the INVITE gets its final answer now, 480 (13.3.1.3)."""
        self._reject(*HANGUP_BEFORE_ANSWER)

    def reject_terminated(self, event: CallEvent) -> None:
        """9.2 / 15.1.2: the INVITE, cancelled or BYEd in its early dialog, gets a 487."""
        self._reject(487, "Request Terminated")

    def refuse_500(self, event: CallEvent) -> None:
        """14.2: a re-INVITE before our final response to the INVITE: 500, Retry-After."""
        assert event.request is not None and event.transaction is not None
        response = make_response(event.request, 500, "Server Internal Error")
        response.headers.add("Retry-After", "1")
        event.transaction.respond(response)

    def end_failed(self, event: CallEvent) -> None:
        self._finish(CallEnd.FAILED)

    def end_rejected(self, event: CallEvent) -> None:
        self._finish(CallEnd.REJECTED)

    def end_cancelled(self, event: CallEvent) -> None:
        self._finish(CallEnd.CANCELLED)

    def end_no_ack(self, event: CallEvent) -> None:
        self._finish(CallEnd.NO_ACK)

    def end_transport(self, event: CallEvent) -> None:
        """8.1.3.1: a transport error is a 503."""
        if self.times.final_code is None:
            self.times.final_code = 503
        self._finish(CallEnd.FAILED)

    # -- helpers --------------------------------------------------------------------------

    def _response(self, status: int) -> SipResponse:
        """A 1xx/2xx of the dialog: our tag, Contact, and the INVITE's Record-Route in
        order (12.1.1), so the caller's ACK and BYE come through the record-routing proxy."""
        response = make_response(self.request, status, to_tag=self.local_tag)
        for route in self.request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", route)
        response.headers.add("Contact", self._contact())
        return response

    def _reject(self, code: int, reason: str) -> None:
        self.times.final_code = code
        self.transaction.respond(make_response(self.request, code, reason, to_tag=self.local_tag))

    def _cancel_pending(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None

    def _cleanup(self) -> None:
        self._cancel_pending()
        self.stack.forget_cancel(self.transaction)
        if self._on_end is not None:
            self._on_end(self)

    def _user(self) -> str:
        return self.user

    def _last_sdp(self) -> bytes:
        return self._answer_sdp
