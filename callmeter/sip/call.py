"""Calls: INVITE sessions as caller (UAC, RFC 3261 13.2) and callee (UAS, 13.3), BYE (15),
CANCEL (9) and re-INVITE (14).

The SDP offer/answer is not done here: a call talks to its media through the narrow
:class:`MediaSession` interface (our offer, their answer; their offer, our answer; start; stop),
so the SIP layer never knows about RTP.  Every step's time is kept in :class:`CallTimes` for the
metrics of SPEC.md: PDD is INVITE to the first 180/183, setup time INVITE to the 200.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

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
from callmeter.sip.stack import SipStack
from callmeter.sip.transaction import ClientTransaction, Failure, ServerInvite, ServerTransaction
from callmeter.sip.transport import Origin, Target
from callmeter.sip.uri import NameAddr, parse_uri

__all__ = [
    "CallEnd",
    "CallFailed",
    "CallTimes",
    "IncomingCall",
    "MediaSession",
    "MediaUnavailable",
    "OutgoingCall",
]

SDP = "application/sdp"
MAX_AUTH_ROUNDS = 3


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


class _Call:
    """What both directions share: the stack, the media, the dialog, BYE in both directions."""

    log = Logger()

    def __init__(self, stack: SipStack, media: MediaSession, transport: str) -> None:
        self.stack = stack
        self.media = media
        self.transport = transport
        self.dialog: Dialog | None = None
        self.times = CallTimes(invite=stack.clock.seconds())
        self.ended: defer.Deferred[CallEnd] = defer.Deferred()
        self._media_started = False

    @property
    def active(self) -> bool:
        return self.times.end is None

    def hangup(self) -> defer.Deferred[CallEnd]:
        """End the call: BYE when it is up (a subclass handles the unanswered case)."""
        if self.active and self.dialog is not None:
            self._send_bye()
        return self.ended

    def _send_bye(self, how: CallEnd = CallEnd.LOCAL_BYE) -> None:
        assert self.dialog is not None
        bye = self.dialog.create_request("BYE")
        self._finish(how)

        def ignore(_: Any) -> None:
            return None

        self.stack.send_request(bye, self._dialog_target(), ignore, ignore)

    def _dialog_target(self) -> Target:
        assert self.dialog is not None
        transport, host, port = target_of(self.dialog.next_hop(), self.transport)
        return Target(transport, host, port)

    def request_received(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """A request inside the dialog: BYE ends the call, re-INVITE is answered, others 200."""
        if self.dialog is None or not self.dialog.accepts(request):
            transaction.respond(make_response(request, 500, "Out of Order CSeq"))
            return
        if request.method == "BYE":
            transaction.respond(make_response(request, 200))
            self._finish(CallEnd.REMOTE_BYE)
        elif request.method == "INVITE":
            self._reinvite(request, transaction)
        elif request.method in ("INFO", "UPDATE", "OPTIONS", "NOTIFY"):
            transaction.respond(make_response(request, 200))
        else:
            response = make_response(request, 405)
            response.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE")
            transaction.respond(response)

    def _reinvite(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """14.2: answer a re-INVITE; a new offer gets our answer, an empty one our last SDP."""
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

    def _last_sdp(self) -> bytes:
        return b""

    def _contact(self) -> str:
        raise NotImplementedError

    def ack_received(self, ack: SipRequest) -> None:
        return None

    def response_received(self, response: SipResponse) -> None:
        return None

    def _start_media(self) -> None:
        if not self._media_started:
            self._media_started = True
            self.media.start()

    def _finish(self, how: CallEnd) -> None:
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
    """A call we make (UAC, RFC 3261 13.2): INVITE with our offer, ACK, BYE or CANCEL."""

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
        self._provisional = False
        self._cancel_wanted = False
        self._cancelled = False
        self._ack: SipRequest | None = None
        self._timeout: IDelayedCall | None = None
        self._offer = b""

    def start(self) -> defer.Deferred[OutgoingCall]:
        """Send the INVITE; fires when the call is up, fails with CallFailed otherwise."""
        self._offer = self.media.local_offer()
        self.times.invite = self.stack.clock.seconds()
        self.stack.add_dialog(self.call_id, self.local_tag, self)
        self._send_invite(rounds=0)
        self._timeout = self.stack.clock.callLater(self.setup_timeout, self._setup_timed_out)
        return self.established

    def hangup(self) -> defer.Deferred[CallEnd]:
        if not self.active:
            return self.ended
        if self.dialog is not None and self._ack is not None:
            self._send_bye()
        elif not self._cancel_wanted:
            self._cancel_wanted = True
            if self._provisional:
                self._send_cancel()
        return self.ended

    # -- INVITE ---------------------------------------------------------------------------

    def _send_invite(self, rounds: int, previous: SipRequest | None = None) -> None:
        self.cseq += 1
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", self.from_addr)
        headers.add("To", self.to_addr)
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} INVITE")
        headers.add("Contact", self._contact())
        headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE")
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

    def _on_failure(self, failure: Failure) -> None:
        code = 408 if failure is Failure.TIMEOUT else 503
        self._failed(code, failure.value)

    def _on_response(self, response: SipResponse, invite: SipRequest, rounds: int) -> None:
        if not self.active and not (200 <= response.status < 300):
            return
        status = response.status
        if status < 200:
            if status in (180, 183) and self.times.first_provisional is None:
                self.times.first_provisional = self.stack.clock.seconds()
            if not self._provisional:
                self._provisional = True  # 9.1: a CANCEL may go once a provisional came
                if self._cancel_wanted:
                    self._send_cancel()
            return
        if status < 300:
            self._answered(response, invite)
            return
        if status in (401, 407) and self._retry_with_auth(response, invite, rounds):
            return
        self._failed(status, response.reason)

    def _retry_with_auth(self, response: SipResponse, invite: SipRequest, rounds: int) -> bool:
        if self.credentials is None or rounds >= MAX_AUTH_ROUNDS or self._cancel_wanted:
            return False
        proxy = response.status == 407
        try:
            decision = self.credentials.on_challenge(
                response.headers.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate"),
                proxy=proxy,
                sent=invite.headers.get_all("Proxy-Authorization" if proxy else "Authorization"),
            )
        except DigestError:
            return False
        if decision is AuthDecision.REJECTED:
            return False
        self._provisional = False
        self._send_invite(rounds + 1)
        return True

    def _answered(self, response: SipResponse, invite: SipRequest) -> None:
        """13.2.2.4: every 2xx gets an ACK; the first one makes the dialog."""
        if self.dialog is None:
            try:
                self.dialog = Dialog.as_uac(invite, response)
            except (DialogError, ValueError) as error:
                self.log.warn("unusable 2xx: {error}", error=str(error))
                self._failed(502, f"unusable 2xx: {error}")
                return
            self.times.answered = self.stack.clock.seconds()
            self.times.final_code = response.status
            self._cancel_timeout()
            self._ack = self.dialog.create_ack(invite.headers.cseq().number)
        assert self._ack is not None
        ack = SipRequest(self._ack.method, self._ack.uri, self._ack.headers.copy())
        self.stack.send_ack(ack, self._dialog_target())
        if self.times.confirmed is not None or not self.active:
            return  # a retransmitted 2xx: ACKed again, nothing else
        self.times.confirmed = self.stack.clock.seconds()
        if self._cancel_wanted:
            self._send_bye()  # the 200 crossed our CANCEL: end it properly
            return
        try:
            self.media.apply_answer(response.body)
        except ValueError as error:
            self.log.warn("unusable SDP answer: {error}", error=str(error))
            self._send_bye()
            self._fail_established(488, f"unusable SDP answer: {error}")
            return
        self._start_media()
        self.established.callback(self)

    def response_received(self, response: SipResponse) -> None:
        """A 2xx retransmitted after the INVITE transaction ended: ACK it again."""
        if (
            200 <= response.status < 300
            and self._invite is not None
            and response.headers.cseq().method == "INVITE"
        ):
            self._answered(response, self._invite)

    # -- CANCEL (RFC 3261 section 9.1) --------------------------------------------------------

    def _send_cancel(self) -> None:
        if self._cancelled or self._invite is None:
            return
        self._cancelled = True
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

        def ignore(_: Any) -> None:
            return None

        self.stack.send_request(
            cancel, self.target, ignore, ignore, via=str(invite.headers.top_via())
        )

    def _setup_timed_out(self) -> None:
        self._timeout = None
        if self.times.answered is None and self.active:
            self._cancel_wanted = True
            self._send_cancel()
            self._failed(408, f"no answer within {self.setup_timeout:g} s (setup_timeout_s)")

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    # -- endings --------------------------------------------------------------------------

    def _failed(self, code: int, reason: str) -> None:
        if not self.active:
            return
        self.times.final_code = code
        self._fail_established(code, reason)
        self._finish(CallEnd.CANCELLED if self._cancel_wanted and code == 487 else CallEnd.FAILED)

    def _fail_established(self, code: int, reason: str) -> None:
        if not self.established.called:
            self.established.errback(CallFailed(code, reason))

    def _cleanup(self) -> None:
        self._cancel_timeout()
        if not self.established.called:
            if self._cancel_wanted:
                # We hung up first: the call never became ours, whatever crossed the CANCEL.
                self.established.errback(CallFailed(487, "cancelled by the caller"))
            else:
                self.established.errback(CallFailed(self.times.final_code or 500, "ended"))
        self.stack.remove_dialog(self.call_id, self.local_tag)

    def _contact(self) -> str:
        return self.stack.contact(self.user, self.transport)

    def _last_sdp(self) -> bytes:
        return self._offer


class IncomingCall(_Call):
    """A call we answer (UAS, RFC 3261 13.3): 180, then 200 with our answer after a delay,
    the 2xx retransmitted until the ACK (13.3.1.4); 487 when cancelled first."""

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
        """Answer the INVITE: check its offer, ring, and answer after ``answer_delay``."""
        request = self.request
        if not request.body:
            self._reject(488, "Not Acceptable Here")  # we need an offer in the INVITE
            return
        try:
            self._answer_sdp = self.media.answer_offer(request.body)
        except MediaUnavailable as error:
            self._reject(503, "Service Unavailable")  # out of ports: our problem, not the offer
            self.log.warn("incoming call refused: {error}", error=str(error))
            return
        except ValueError:
            self._reject(488, "Not Acceptable Here")
            return
        self.stack.on_cancel(self.transaction, self._cancelled)
        if self.ring:
            ringing = make_response(request, 180, to_tag=self.local_tag)
            ringing.headers.add("Contact", self._contact())
            self.transaction.respond(ringing)
        self._pending = self.stack.clock.callLater(self.answer_delay, self._answer)

    def _answer(self) -> None:
        self._pending = None
        if not self.active:
            return
        self.stack.forget_cancel(self.transaction)
        ok = make_response(self.request, 200, to_tag=self.local_tag)
        ok.headers.add("Contact", self._contact())
        ok.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE")
        ok.headers.add("Content-Type", SDP)
        ok.body = self._answer_sdp
        try:
            self.dialog = Dialog.as_uas(self.request, self.local_tag)
        except (DialogError, ValueError):
            self._reject(400, "Bad Request (no usable Contact)")
            return
        self.stack.add_dialog(self.dialog.call_id, self.local_tag, self)
        self._ok = ok
        self.times.answered = self.stack.clock.seconds()
        self.times.final_code = 200
        self.transaction.respond(ok)
        self._start_media()
        if not self.origin.reliable:
            self._retransmit_deadline = self.times.answered + self.stack.transactions.timers.timeout
            self._pending = self.stack.clock.callLater(
                self._retransmit_interval, self._retransmit_ok
            )
        else:
            self._pending = self.stack.clock.callLater(
                self.stack.transactions.timers.timeout, self._no_ack
            )

    def _retransmit_ok(self) -> None:
        """13.3.1.4: resend the 2xx at T1, 2*T1 ... capped at T2, until the ACK or 64*T1."""
        self._pending = None
        if self._ok is None or self.times.confirmed is not None or not self.active:
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
        """No ACK in 64*T1: the dialog is confirmed and then ended with a BYE (13.3.1.4)."""
        self._pending = None
        if self.times.confirmed is None and self.active:
            self._send_bye(CallEnd.NO_ACK)

    def ack_received(self, ack: SipRequest) -> None:
        if self.times.confirmed is None:
            self.times.confirmed = self.stack.clock.seconds()
            self._cancel_pending()

    def _cancelled(self) -> None:
        """A CANCEL arrived before we answered: 487 for the INVITE (RFC 3261 9.2)."""
        if self.times.answered is None and self.active:
            self._reject(487, "Request Terminated", CallEnd.CANCELLED)

    def _reject(self, code: int, reason: str, how: CallEnd = CallEnd.FAILED) -> None:
        self.times.final_code = code
        self.transaction.respond(make_response(self.request, code, reason, to_tag=self.local_tag))
        self._finish(how)

    def _cancel_pending(self) -> None:
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None

    def _cleanup(self) -> None:
        self._cancel_pending()
        self.stack.forget_cancel(self.transaction)
        if self._on_end is not None:
            self._on_end(self)

    def _contact(self) -> str:
        return self.stack.contact(self.user, self.transport)

    def _last_sdp(self) -> bytes:
        return self._answer_sdp
