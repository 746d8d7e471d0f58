"""REGISTER client: RFC 3261 section 10.2, with digest authentication (section 22).

One :class:`Registration` binds one endpoint's Contact to its address-of-record at a registrar:
it registers (answering 401/407 challenges once per nonce, retrying at once on ``stale=true``,
and honouring ``423 Interval Too Brief`` with its Min-Expires), refreshes before the granted
expiry, and removes the binding with ``Expires: 0`` when stopped.  The Call-ID stays the same and
the CSeq grows for every REGISTER of the registration (10.2.4).  The time from the first
REGISTER to the 200 is the register time of SPEC.md's metrics.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from callmeter.sip.digest import AuthDecision, DigestClient, DigestError
from callmeter.sip.headers import Headers
from callmeter.sip.message import SipRequest, SipResponse, new_call_id, new_tag
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
        self.registered = False
        self.granted: int | None = None
        self.register_time_ms: float | None = None
        self.refreshes = 0
        self.refresh_failures = 0
        self._refresh: IDelayedCall | None = None
        self._first: defer.Deferred[float] | None = None
        self._started_at = 0.0
        self._stopping = False

    # -- public ---------------------------------------------------------------------------

    def start(self) -> defer.Deferred[float]:
        """Register; fires with the register time in ms, or fails with RegistrationFailed."""
        if self._first is not None:
            raise RuntimeError("registration already started")
        self._first = defer.Deferred()
        self._started_at = self.stack.clock.seconds()
        self._send(self.expires)
        return self._first

    def stop(self) -> defer.Deferred[None]:
        """Remove the binding (Expires: 0); fires when the registrar answered (or gave up)."""
        self._stopping = True
        self._cancel_refresh()
        done: defer.Deferred[None] = defer.Deferred()
        if not self.registered:
            done.callback(None)
            return done
        self.registered = False

        def finished(_: Any = None) -> None:
            if not done.called:
                done.callback(None)

        self._send(0, on_final=finished)
        return done

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

    def _send(self, expires: int, rounds: int = 0, on_final: Any = None) -> None:
        request = self._request(expires)

        def on_response(response: SipResponse) -> None:
            if response.status < 200:
                return
            self._final(response, request, expires, rounds, on_final)

        def on_failure(failure: Failure) -> None:
            code = 408 if failure is Failure.TIMEOUT else 503
            self._failed(code, failure.value, expires, on_final)

        self.stack.send_request(request, self.target, on_response, on_failure)

    def _final(
        self, response: SipResponse, request: SipRequest, expires: int, rounds: int, on_final: Any
    ) -> None:
        status = response.status
        if status in (401, 407) and self.credentials is not None and rounds < MAX_AUTH_ROUNDS:
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            sent_header = "Authorization" if status == 401 else "Proxy-Authorization"
            try:
                decision = self.credentials.on_challenge(
                    response.headers.get_all(header),
                    proxy=status == 407,
                    sent=request.headers.get_all(sent_header),
                )
            except DigestError as error:
                self._failed(status, f"unusable challenge: {error}", expires, on_final)
                return
            if decision is not AuthDecision.REJECTED:
                self._send(expires, rounds + 1, on_final)
                return
            self._failed(status, f"{response.reason} (credentials rejected)", expires, on_final)
            return
        if status == 423 and expires and rounds < MAX_AUTH_ROUNDS:
            minimum = response.headers.get("Min-Expires")
            if minimum and minimum.isdigit() and int(minimum) > expires:
                self.expires = int(minimum)
                self._send(self.expires, rounds + 1, on_final)
                return
        if 200 <= status < 300:
            self._succeeded(response, expires, on_final)
            return
        self._failed(status, response.reason, expires, on_final)

    def _succeeded(self, response: SipResponse, expires: int, on_final: Any) -> None:
        if on_final is not None:
            on_final()
        if expires == 0 or self._stopping:
            return
        self.granted = self._granted(response, expires)
        self.registered = True
        if self.register_time_ms is None:
            self.register_time_ms = (self.stack.clock.seconds() - self._started_at) * 1000
            assert self._first is not None
            self._first.callback(self.register_time_ms)
        else:
            self.refreshes += 1
        self._schedule_refresh(refresh_delay(self.granted))

    def _failed(self, code: int, reason: str, expires: int, on_final: Any) -> None:
        if on_final is not None:
            on_final()
            return
        if self._stopping:
            return
        if self.register_time_ms is None:
            assert self._first is not None
            if not self._first.called:
                self._first.errback(RegistrationFailed(code, reason))
            return
        # A refresh failed: the binding may lapse.  Try again soon; count it.
        self.refresh_failures += 1
        self.registered = False
        self.log.warn(
            "re-REGISTER of {aor} failed: {code} {reason}",
            aor=str(self.aor),
            code=code,
            reason=reason,
        )
        self._schedule_refresh(min(30.0, max(1.0, (self.granted or expires) / 4)))

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
        self._refresh = self.stack.clock.callLater(delay, self._send, self.expires)

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
