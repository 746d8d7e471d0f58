"""SIP transactions: RFC 3261 section 17, with RFC 6026's Accepted state.

Four state machines, one per figure of the RFC, and a :class:`TransactionLayer` that matches
incoming messages to them (17.1.3, 17.2.3):

=============================  ==========  =============================================
class                          RFC figure  states
=============================  ==========  =============================================
:class:`ClientInvite`          Figure 5    Calling, Proceeding, Accepted, Completed
:class:`ClientNonInvite`       Figure 6    Trying, Proceeding, Completed
:class:`ServerInvite`          Figure 7    Proceeding, Accepted, Completed, Confirmed
:class:`ServerNonInvite`       Figure 8    Trying, Proceeding, Completed
=============================  ==========  =============================================

Every machine ends in Terminated.  Timers run on the ``clock`` passed in (an
``IReactorTime``: ``task.Clock`` in tests).  Retransmission timers (A, E, G) run only over
unreliable transports (UDP); the wait timers D, I, J and K are zero over reliable ones.  The
messages go out through a ``send`` callable bound to the destination when the transaction is
made: the transactions never see a socket.

RFC 6026 changes what happens after a 2xx to an INVITE: the client transaction waits in
Accepted (Timer M) so that retransmitted 2xx still reach the dialog, which re-sends its ACK; the
server transaction waits in Accepted (Timer L) and absorbs retransmitted INVITEs, while the UAS
core retransmits the 2xx itself (RFC 3261 13.3.1.4).  The ACK for a non-2xx final response is
built here (17.1.1.3); the ACK for a 2xx is the dialog's.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from callmeter.sip.headers import Headers
from callmeter.sip.message import SipMessage, SipRequest, SipResponse

__all__ = [
    "DEFAULT_TIMERS",
    "ClientInvite",
    "ClientNonInvite",
    "ClientTransaction",
    "Failure",
    "ServerInvite",
    "ServerNonInvite",
    "ServerTransaction",
    "State",
    "Timers",
    "TransactionLayer",
    "make_non2xx_ack",
]

Send = Callable[[SipMessage], None]


@dataclass(frozen=True)
class Timers:
    """RFC 3261 Table 4: T1 (RTT estimate), T2 (longest non-INVITE retransmit), T4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        """64*T1: Timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1


DEFAULT_TIMERS = Timers()


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class Failure(enum.Enum):
    """Why a transaction ended without a final response (or, for a server, without an ACK)."""

    TIMEOUT = "timeout"
    TRANSPORT_ERROR = "transport error"


class _Transaction:
    """What all four machines share: the request, the clock, named timers, termination."""

    state: State

    def __init__(
        self,
        request: SipRequest,
        send: Send,
        clock: IReactorTime,
        reliable: bool,
        timers: Timers,
        on_terminated: Callable[[_Transaction], None] | None,
    ) -> None:
        self.request = request
        self.reliable = reliable
        self.timers = timers
        self._send = send
        self._clock = clock
        self._pending: dict[str, IDelayedCall] = {}
        self._on_terminated = on_terminated
        via = request.headers.top_via()
        self.branch = via.branch or ""
        self.sent_by = via.sent_by
        self.method = request.method

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    def _start(self, timer: str, delay: float, fire: Callable[[], None]) -> None:
        self._cancel(timer)
        if delay <= 0 and timer not in ("A", "E", "G"):
            # A zero wait timer (D, I, J, K over a reliable transport) fires at once.
            fire()
            return

        def fired() -> None:
            self._pending.pop(timer, None)
            fire()

        self._pending[timer] = self._clock.callLater(delay, fired)

    def _cancel(self, *timers: str) -> None:
        for timer in timers:
            call = self._pending.pop(timer, None)
            if call is not None and call.active():
                call.cancel()

    def abandon(self) -> None:
        """Stop every timer and end silently (the process is shutting down)."""
        self._cancel(*list(self._pending))
        self.state = State.TERMINATED

    def _terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self._cancel(*list(self._pending))
        self.state = State.TERMINATED
        if self._on_terminated is not None:
            self._on_terminated(self)


# -- client transactions ---------------------------------------------------------------------


class ClientTransaction(_Transaction):
    """A client transaction: sends a request, passes responses to the TU (17.1)."""

    def __init__(
        self,
        request: SipRequest,
        send: Send,
        clock: IReactorTime,
        reliable: bool,
        on_response: Callable[[SipResponse], None],
        on_failure: Callable[[Failure], None],
        timers: Timers = Timers(),
        on_terminated: Callable[[_Transaction], None] | None = None,
    ) -> None:
        super().__init__(request, send, clock, reliable, timers, on_terminated)
        self._on_response = on_response
        self._on_failure = on_failure

    @property
    def key(self) -> tuple[str, str]:
        """17.1.3: a response matches by the top Via branch and the CSeq method."""
        return (self.branch, self.method)

    def start(self) -> None:
        raise NotImplementedError

    def receive_response(self, response: SipResponse) -> None:
        raise NotImplementedError

    def transport_error(self) -> None:
        """17.1.4: the transport could not send the request: inform the TU, terminate."""
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._on_failure(Failure.TRANSPORT_ERROR)
            self._terminate()


class ClientInvite(ClientTransaction):
    """INVITE client transaction, RFC 3261 17.1.1 (Figure 5) and RFC 6026 section 8.4."""

    state = State.CALLING

    def start(self) -> None:
        """Calling: send the INVITE, Timer A (UDP only) and Timer B."""
        self._send(self.request)
        if not self.reliable:
            self._retransmit_after(self.timers.t1)
        self._start("B", self.timers.timeout, self._timer_b)

    def _retransmit_after(self, interval: float) -> None:
        """Timer A: retransmit at T1, 2*T1, 4*T1, ... (17.1.1.2; not capped at T2)."""

        def timer_a() -> None:
            if self.state is State.CALLING:
                self._send(self.request)
                self._retransmit_after(interval * 2)

        self._start("A", interval, timer_a)

    def _timer_b(self) -> None:
        if self.state is State.CALLING:
            self._on_failure(Failure.TIMEOUT)
            self._terminate()

    def receive_response(self, response: SipResponse) -> None:
        status = response.status
        if self.state in (State.CALLING, State.PROCEEDING):
            if status < 200:
                self.state = State.PROCEEDING
                self._cancel("A", "B")
                self._on_response(response)
            elif status < 300:
                self.state = State.ACCEPTED
                self._cancel("A", "B")
                self._start("M", self.timers.timeout, self._terminate)
                self._on_response(response)
            else:
                self.state = State.COMPLETED
                self._cancel("A", "B")
                self._send(make_non2xx_ack(self.request, response))
                self._start("D", 0 if self.reliable else 32.0, self._terminate)
                self._on_response(response)
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            self._on_response(response)  # a retransmitted 2xx: the dialog ACKs it again
        elif self.state is State.COMPLETED and status >= 300:
            self._send(make_non2xx_ack(self.request, response))


class ClientNonInvite(ClientTransaction):
    """Non-INVITE client transaction, RFC 3261 17.1.2 (Figure 6)."""

    state = State.TRYING

    def start(self) -> None:
        """Trying: send the request, Timer E (UDP only) and Timer F."""
        self._send(self.request)
        if not self.reliable:
            self._start("E", self.timers.t1, lambda: self._timer_e(self.timers.t1))
        self._start("F", self.timers.timeout, self._timer_f)

    def _timer_e(self, interval: float) -> None:
        """Retransmit; next at min(2*interval, T2) in Trying, at T2 in Proceeding (17.1.2.2)."""
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self._send(self.request)
        if self.state is State.TRYING:
            following = min(2 * interval, self.timers.t2)
        else:
            following = self.timers.t2
        self._start("E", following, lambda: self._timer_e(following))

    def _timer_f(self) -> None:
        if self.state in (State.TRYING, State.PROCEEDING):
            self._on_failure(Failure.TIMEOUT)
            self._terminate()

    def receive_response(self, response: SipResponse) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return  # Completed absorbs retransmitted final responses
        if response.status < 200:
            self.state = State.PROCEEDING
            self._on_response(response)
            return
        self.state = State.COMPLETED
        self._cancel("E", "F")
        self._start("K", 0 if self.reliable else self.timers.t4, self._terminate)
        self._on_response(response)


def make_non2xx_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """The ACK for a 300-699 response to ``invite``, RFC 3261 section 17.1.1.3.

    Same Request-URI, Call-ID, From and CSeq number as the INVITE, the To of the response (it
    carries the tag), one Via equal to the INVITE's top Via, and the INVITE's Route headers.
    """
    source = invite.headers
    headers = Headers()
    headers.add("Via", str(source.top_via()))
    for route in source.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", source.get("From") or "")
    headers.add("To", response.headers.get("To") or source.get("To") or "")
    headers.add("Call-ID", source.call_id())
    headers.add("CSeq", f"{source.cseq().number} ACK")
    return SipRequest("ACK", invite.uri, headers)


# -- server transactions ---------------------------------------------------------------------


class ServerTransaction(_Transaction):
    """A server transaction: absorbs retransmitted requests, (re)sends the TU's responses."""

    def __init__(
        self,
        request: SipRequest,
        send: Send,
        clock: IReactorTime,
        reliable: bool,
        on_failure: Callable[[Failure], None] | None = None,
        timers: Timers = Timers(),
        on_terminated: Callable[[_Transaction], None] | None = None,
    ) -> None:
        super().__init__(request, send, clock, reliable, timers, on_terminated)
        self._on_failure = on_failure
        self.last_response: SipResponse | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """17.2.3: branch, sent-by of the top Via, and the method (ACK counts as INVITE)."""
        return (self.branch, self.sent_by, self.method)

    def receive_request(self, request: SipRequest) -> None:
        """A retransmission of the request (or, for an INVITE, its ACK)."""
        raise NotImplementedError

    def respond(self, response: SipResponse) -> None:
        """Send the TU's response."""
        raise NotImplementedError

    def transport_error(self) -> None:
        """17.2.4: a response could not be sent: inform the TU, terminate."""
        if not self.terminated:
            if self._on_failure is not None:
                self._on_failure(Failure.TRANSPORT_ERROR)
            self._terminate()

    def _transmit(self, response: SipResponse) -> None:
        self.last_response = response
        self._send(response)


class ServerInvite(ServerTransaction):
    """INVITE server transaction, RFC 3261 17.2.1 (Figure 7) and RFC 6026 section 8.5-8.7."""

    state = State.PROCEEDING

    def receive_request(self, request: SipRequest) -> None:
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                self._cancel("G", "H")
                self._start("I", 0 if self.reliable else self.timers.t4, self._terminate)
            return  # Confirmed (and Accepted) absorb ACKs
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            self._send(self.last_response)  # a retransmitted INVITE gets the last response

    def respond(self, response: SipResponse) -> None:
        status = response.status
        if self.state is State.PROCEEDING:
            self._transmit(response)
            if status < 200:
                return
            if status < 300:
                self.state = State.ACCEPTED
                self._start("L", self.timers.timeout, self._terminate)
                return
            self.state = State.COMPLETED
            if not self.reliable:
                self._start("G", self.timers.t1, lambda: self._timer_g(self.timers.t1))
            self._start("H", self.timers.timeout, self._timer_h)
        elif self.state is State.ACCEPTED and 200 <= status < 300:
            self._send(response)  # the UAS core retransmitting its 2xx (13.3.1.4)

    def _timer_g(self, interval: float) -> None:
        """Retransmit the final response at T1, 2*T1, ... capped at T2 (17.2.1)."""
        if self.state is not State.COMPLETED or self.last_response is None:
            return
        self._send(self.last_response)
        following = min(2 * interval, self.timers.t2)
        self._start("G", following, lambda: self._timer_g(following))

    def _timer_h(self) -> None:
        """No ACK arrived in 64*T1: tell the TU (the peer never confirmed), terminate."""
        if self.state is State.COMPLETED:
            if self._on_failure is not None:
                self._on_failure(Failure.TIMEOUT)
            self._terminate()


class ServerNonInvite(ServerTransaction):
    """Non-INVITE server transaction, RFC 3261 17.2.2 (Figure 8)."""

    state = State.TRYING

    def receive_request(self, request: SipRequest) -> None:
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            self._send(self.last_response)  # Trying absorbs; later states resend

    def respond(self, response: SipResponse) -> None:
        if self.state not in (State.TRYING, State.PROCEEDING):
            return
        self._transmit(response)
        if response.status < 200:
            self.state = State.PROCEEDING
            return
        self.state = State.COMPLETED
        self._start("J", 0 if self.reliable else self.timers.timeout, self._terminate)


# -- matching --------------------------------------------------------------------------------


class TransactionLayer:
    """Creates transactions and matches incoming messages to them (17.1.3, 17.2.3).

    Only RFC 3261 branches (the ``z9hG4bK`` cookie) are matched; an RFC 2543 peer's request
    without one still gets a server transaction keyed by its branch-less Via, which is enough for
    the retransmission handling we need.
    """

    def __init__(self, clock: IReactorTime, timers: Timers = Timers()) -> None:
        self._clock = clock
        self.timers = timers
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        self._servers: dict[tuple[str, str, str], ServerTransaction] = {}

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def send_request(
        self,
        request: SipRequest,
        send: Send,
        reliable: bool,
        on_response: Callable[[SipResponse], None],
        on_failure: Callable[[Failure], None],
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` (not for an ACK: that has none)."""
        if request.method == "ACK":
            raise ValueError("an ACK is sent without a transaction")
        kind = ClientInvite if request.method == "INVITE" else ClientNonInvite
        transaction = kind(
            request, send, self._clock, reliable, on_response, on_failure, self.timers, self._forget
        )
        if transaction.key in self._clients:
            raise ValueError(f"branch {transaction.branch} is already in use")
        self._clients[transaction.key] = transaction
        transaction.start()
        return transaction

    def receive_response(self, response: SipResponse) -> bool:
        """Hand ``response`` to its client transaction; False when none matches (17.1.3).

        An unmatched response is the core's: typically a 2xx retransmitted after the INVITE
        transaction ended, which the dialog answers with its ACK again.
        """
        try:
            branch = response.headers.top_via().branch or ""
            method = response.headers.cseq().method
        except ValueError:
            return False
        transaction = self._clients.get((branch, method))
        if transaction is None:
            return False
        transaction.receive_response(response)
        return True

    def receive_request(
        self,
        request: SipRequest,
        reply: Send,
        reliable: bool,
        on_failure: Callable[[Failure], None] | None = None,
    ) -> ServerTransaction | None:
        """Match ``request`` to a server transaction, or make one for a new request.

        Returns the new transaction for the TU to answer, or None when the request was
        absorbed: a retransmission, or an ACK of a non-2xx response.  An ACK that matches no
        transaction (the ACK of a 2xx) also returns None here; :meth:`is_stray_ack` tells the
        core which ACKs are its own to handle.
        """
        key = self._server_key(request)
        existing = self._servers.get(key)
        if existing is not None:
            existing.receive_request(request)
            return None
        if request.method == "ACK":
            return None
        kind = ServerInvite if request.method == "INVITE" else ServerNonInvite
        transaction = kind(
            request, reply, self._clock, reliable, on_failure, self.timers, self._forget
        )
        self._servers[key] = transaction
        return transaction

    def abandon_all(self) -> None:
        """Shut down: every transaction stops its timers and is forgotten, nothing is sent."""
        for transaction in [*self._clients.values(), *self._servers.values()]:
            transaction.abandon()
        self._clients.clear()
        self._servers.clear()

    def is_stray_ack(self, request: SipRequest) -> bool:
        """True for an ACK that no server transaction absorbs: the ACK of a 2xx (13.3.1.4)."""
        return request.method == "ACK" and self._server_key(request) not in self._servers

    def find_invite(self, cancel: SipRequest) -> ServerInvite | None:
        """The INVITE server transaction a CANCEL targets (RFC 3261 9.2: same branch)."""
        via = cancel.headers.top_via()
        found = self._servers.get((via.branch or "", via.sent_by, "INVITE"))
        return found if isinstance(found, ServerInvite) else None

    @staticmethod
    def _server_key(request: SipRequest) -> tuple[str, str, str]:
        via = request.headers.top_via()
        method = "INVITE" if request.method == "ACK" else request.method
        return (via.branch or "", via.sent_by, method)

    def _forget(self, transaction: _Transaction) -> None:
        if isinstance(transaction, ClientTransaction):
            self._clients.pop(transaction.key, None)
        elif isinstance(transaction, ServerTransaction):
            self._servers.pop(transaction.key, None)
