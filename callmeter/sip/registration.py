"""REGISTER client: RFC 3261 section 10.2, with digest authentication (section 22).

One :class:`Registration` binds one endpoint's Contact to its address-of-record at a registrar:
it registers (answering 401/407 challenges once per nonce, retrying at once on ``stale=true``,
and honouring ``423 Interval Too Brief`` with its Min-Expires), refreshes before the granted
expiry, and removes the binding with ``Expires: 0`` when stopped.  The Call-ID stays the same and
the CSeq grows for every REGISTER of the registration (10.2.4).  The time from the first
REGISTER to the 200 is the register time of SPEC.md's metrics.

Its states and transitions are :data:`~callmeter.sip.registration_state.REGISTRATION_TABLE`:
this class turns responses and timers into the table's inputs and carries out its outputs.
stop() during the first REGISTER fails the start() Deferred at once, and removes the binding
if that REGISTER is granted after all; stop() during a refresh waits for its answer, then
removes the binding.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from callmeter.sip.digest import AuthDecision, DigestClient, DigestError
from callmeter.sip.headers import Headers
from callmeter.sip.message import SipRequest, SipResponse, new_call_id, new_tag
from callmeter.sip.registration_state import (
    RegistrationInput,
    RegistrationMachine,
    RegistrationState,
)
from callmeter.sip.stack import SipStack
from callmeter.sip.transaction import Failure
from callmeter.sip.transport import Target
from callmeter.sip.uri import NameAddr, SipParseError, parse_uri

__all__ = ["Registration", "RegistrationFailed", "refresh_delay"]

MAX_AUTH_ROUNDS = 3


class RegistrationFailed(Exception):
    """The registrar refused (``code`` is its final status; 408 for a timeout, 503 for a
    transport error, as RFC 3261 8.1.3.1 has the UA treat them)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def refresh_delay(granted: int) -> float:
    """When to refresh a binding granted for ``granted`` seconds: well before it lapses.

    Half the interval for short bindings, 30 s before expiry for long ones (never sooner than
    1 s), so a lost refresh still has the whole retransmission window (64*T1 = 32 s).
    """
    if granted <= 60:
        return max(1.0, granted / 2)
    return float(granted - 30)


@dataclass
class RegisterEvent:
    """What came with an input: the response, or the code and reason of a failure."""

    response: SipResponse | None = None
    code: int = 0
    reason: str = ""


class Registration:
    """Keeps ``aor`` registered at ``target`` while running (RFC 3261 10.2)."""

    log = Logger()

    def __init__(
        self,
        stack: SipStack,
        aor: str,
        target: Target,
        *,
        user: str,
        credentials: DigestClient | None = None,
        expires: int = 3600,
        registrar_uri: str | None = None,
    ) -> None:
        self.stack = stack
        self.aor = parse_uri(aor)
        self.target = target
        self.user = user
        self.credentials = credentials
        self.expires = expires
        domain = getattr(self.aor, "host", target.host)
        self.registrar_uri = parse_uri(registrar_uri or f"sip:{domain}")
        self.call_id = new_call_id()
        self.from_tag = new_tag()
        self.cseq = 0
        self.granted: int | None = None
        self.register_time_ms: float | None = None
        self.refreshes = 0
        self.refresh_failures = 0
        self.machine = RegistrationMachine(self)
        self._refresh: IDelayedCall | None = None
        self._first: defer.Deferred[float] | None = None
        self._stopped: defer.Deferred[None] = defer.Deferred()
        self._started_at = 0.0
        self._current: SipRequest | None = None  # the REGISTER we wait for
        self._rounds = 0  # digest and 423 rounds of the current REGISTER (22.2, 10.2.8)
        self._why = ""  # why a challenge could not be answered

    @property
    def state(self) -> RegistrationState:
        return self.machine.state

    @property
    def registered(self) -> bool:
        """A binding is granted and current (a refresh may be out)."""
        return self.state in (RegistrationState.REGISTERED, RegistrationState.REFRESHING)

    # -- public ---------------------------------------------------------------------------

    def start(self) -> defer.Deferred[float]:
        """Register; fires with the register time in ms, or fails with RegistrationFailed
        (also when stop() comes first)."""
        if self._first is not None:
            raise RuntimeError("registration already started")
        self._first = defer.Deferred()
        self._started_at = self.stack.clock.seconds()
        self.machine.feed(RegistrationInput.START, RegisterEvent())
        return self._first

    def stop(self) -> defer.Deferred[None]:
        """Remove the binding (Expires: 0); fires when that is done (or given up), at once
        when there is nothing to remove.  Never fails."""
        self.machine.feed(RegistrationInput.STOP, RegisterEvent())
        done: defer.Deferred[None] = defer.Deferred()
        if self._stopped.called:
            done.callback(None)
        else:
            self._stopped.addBoth(lambda _: done.callback(None))
        return done

    # -- inputs: what the REGISTER transaction reports ------------------------------------

    def _on_response(self, request: SipRequest, response: SipResponse) -> None:
        if response.status < 200 or request is not self._current:
            return  # provisional, or an answer to a REGISTER we no longer wait for
        self._current = None
        self.machine.feed(self._classify(request, response), RegisterEvent(response=response))

    def _classify(self, request: SipRequest, response: SipResponse) -> RegistrationInput:
        status = response.status
        if 200 <= status < 300:
            return RegistrationInput.SUCCESS
        expires = request.headers.expires() or 0
        if status in (401, 407) and self._can_answer(request, response):
            self._rounds += 1
            return RegistrationInput.CHALLENGE
        if status == 423 and expires and self._rounds < MAX_AUTH_ROUNDS:
            minimum = response.headers.get("Min-Expires")
            if minimum and minimum.isdigit() and int(minimum) > expires:
                self.expires = int(minimum)
                self._rounds += 1
                return RegistrationInput.TOO_BRIEF
        return RegistrationInput.FAILURE

    def _can_answer(self, request: SipRequest, response: SipResponse) -> bool:
        if self.credentials is None or self._rounds >= MAX_AUTH_ROUNDS:
            return False
        try:
            decision = self.credentials.on_response(response, request)
        except DigestError as error:
            self._why = f"unusable challenge: {error}"
            return False
        if decision is AuthDecision.REJECTED:
            self._why = f"{response.reason} (credentials rejected)"
            return False
        return True

    def _on_failure(self, request: SipRequest, failure: Failure) -> None:
        """8.1.3.1: a timeout is a 408, a transport error a 503."""
        if request is not self._current:
            return
        self._current = None
        if failure is Failure.TIMEOUT:
            self.machine.feed(RegistrationInput.TIMEOUT, RegisterEvent(code=408, reason="timeout"))
        else:
            self.machine.feed(
                RegistrationInput.TRANSPORT_ERROR, RegisterEvent(code=503, reason=failure.value)
            )

    def _refresh_due(self) -> None:
        self._refresh = None
        self.machine.feed(RegistrationInput.REFRESH_DUE, RegisterEvent())

    # -- outputs (REGISTRATION_TABLE) -------------------------------------------------------

    def send_register(self, event: RegisterEvent) -> None:
        """A REGISTER for ``expires`` (the first, or a refresh): a new round count."""
        self._rounds = 0
        self._send(self.expires)

    def resend_register(self, event: RegisterEvent) -> None:
        """After a challenge (with credentials) or a 423 (with the Min-Expires)."""
        self._send(self.expires)

    def send_unregister(self, event: RegisterEvent) -> None:
        """10.2.2: the binding removed with Expires: 0."""
        self._rounds = 0
        self._send(0)

    def resend_unregister(self, event: RegisterEvent) -> None:
        self._send(0)

    def note_registered(self, event: RegisterEvent) -> None:
        """The first 2xx: the granted expiry (10.2.4), the register time, start() fires."""
        assert event.response is not None and self._first is not None
        self.granted = self._granted(event.response, self.expires)
        self.register_time_ms = (self.stack.clock.seconds() - self._started_at) * 1000
        self._first.callback(self.register_time_ms)

    def arm_refresh(self, event: RegisterEvent) -> None:
        assert self.granted is not None
        self._schedule_refresh(refresh_delay(self.granted))

    def arm_retry(self, event: RegisterEvent) -> None:
        """A refresh failed: try again soon (the binding may lapse meanwhile)."""
        self._schedule_refresh(min(30.0, max(1.0, (self.granted or self.expires) / 4)))

    def refreshed(self, event: RegisterEvent) -> None:
        assert event.response is not None
        self.granted = self._granted(event.response, self.expires)
        self.refreshes += 1

    def refresh_failed(self, event: RegisterEvent) -> None:
        code, reason = self._failure(event)
        self.refresh_failures += 1
        self.log.warn(
            "re-REGISTER of {aor} failed: {code} {reason}",
            aor=str(self.aor),
            code=code,
            reason=reason,
        )

    def fail_first(self, event: RegisterEvent) -> None:
        self._fail_first(*self._failure(event))

    def fail_first_stopped(self, event: RegisterEvent) -> None:
        """stop() before the registrar answered (or before start()): unanswered, a 408."""
        self._fail_first(408, "stopped before the registrar answered")

    def cancel_refresh(self, event: RegisterEvent) -> None:
        self._cancel_refresh()

    def stopped(self, event: RegisterEvent) -> None:
        self._cancel_refresh()
        if not self._stopped.called:
            self._stopped.callback(None)

    # -- REGISTER -------------------------------------------------------------------------

    def _request(self, expires: int) -> SipRequest:
        self.cseq += 1
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{self.aor}>;tag={self.from_tag}")
        headers.add("To", f"<{self.aor}>")
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.cseq} REGISTER")
        headers.add("Contact", self.stack.contact(self.user, self.target.transport))
        headers.add("Expires", str(expires))
        request = SipRequest("REGISTER", self.registrar_uri, headers)
        if self.credentials is not None:
            for name, value in self.credentials.authorization_headers(
                "REGISTER", str(self.registrar_uri)
            ):
                headers.add(name, value)
        return request

    def _send(self, expires: int) -> None:
        request = self._request(expires)
        self._current = request
        self._why = ""
        self.stack.send_request(
            request,
            self.target,
            lambda response: self._on_response(request, response),
            lambda failure: self._on_failure(request, failure),
        )

    def _failure(self, event: RegisterEvent) -> tuple[int, str]:
        if event.response is not None:
            return event.response.status, self._why or event.response.reason
        return event.code, event.reason

    def _fail_first(self, code: int, reason: str) -> None:
        assert self._first is not None
        if not self._first.called:
            self._first.errback(RegistrationFailed(code, reason))

    def _granted(self, response: SipResponse, asked: int) -> int:
        """10.2.4: the expiry of our binding, from its Contact's expires, else Expires."""
        ours = self.stack.contact(self.user, self.target.transport)
        try:
            for contact in response.headers.contacts():
                if _same_contact(contact, ours) and contact.expires is not None:
                    return contact.expires
            header = response.headers.expires()
        except SipParseError:
            return asked
        return header if header is not None else asked

    def _schedule_refresh(self, delay: float) -> None:
        self._cancel_refresh()
        self._refresh = self.stack.clock.callLater(delay, self._refresh_due)

    def _cancel_refresh(self) -> None:
        if self._refresh is not None and self._refresh.active():
            self._refresh.cancel()
        self._refresh = None


def _same_contact(contact: NameAddr, ours: str) -> bool:
    try:
        mine = parse_uri(ours.strip("<>"))
    except SipParseError:
        return False
    theirs = contact.uri
    return (getattr(theirs, "user", None), getattr(theirs, "host", None)) == (
        getattr(mine, "user", None),
        getattr(mine, "host", None),
    )
