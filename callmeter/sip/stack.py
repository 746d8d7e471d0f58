"""The SIP stack of one worker process: RFC 3261 section 8 (UA core) glue.

:class:`SipStack` sits between the transport layer (sockets) and the user agents (registrations
and calls of many endpoints).  It stamps outgoing requests with our Via and User-Agent, runs
them through client transactions, and dispatches incoming requests:

- a retransmission or the ACK of a non-2xx: absorbed by the transaction layer;
- the ACK of a 2xx, or any request with a To tag: to the dialog it names (481 when none);
- CANCEL: 200, and the INVITE it cancels ends with 487 (RFC 3261 9.2); 481 when none matches;
- any other request the UAS checks of 8.2.2-8.2.3 refuse: 416, 420, 415 or 406
  (:mod:`callmeter.sip.uas_checks`);
- OPTIONS outside a dialog: 200 with Allow and Accept (11.2), whatever the user;
- INVITE outside a dialog: to the endpoint named by the Request-URI user (404 when none);
- anything else outside a dialog: 405 with Allow, or 501 for a method we do not know.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from callmeter import __version__
from callmeter.sip.message import (
    KNOWN_METHODS,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    make_response,
    new_branch,
    new_tag,
)
from callmeter.sip.transaction import (
    DEFAULT_TIMERS,
    ClientTransaction,
    Failure,
    ServerInvite,
    ServerTransaction,
    Timers,
    TransactionLayer,
)
from callmeter.sip.transport import Origin, Target
from callmeter.sip.uas_checks import rejection
from callmeter.sip.uri import SipUri, format_host

__all__ = ["ALLOW", "DialogUser", "InviteHandler", "SipStack", "Transport"]

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"


class Transport(Protocol):
    """What the stack needs from the transport layer (SipTransportLayer provides it)."""

    ports: dict[str, int]

    def send(
        self, message: SipMessage, target: Target, on_error: Callable[[str], None] | None = None
    ) -> None: ...

    def reply(
        self, response: SipResponse, origin: Origin, on_error: Callable[[str], None] | None = None
    ) -> None: ...


class DialogUser(Protocol):
    """A call that owns a dialog: it gets the requests and stray responses addressed to it."""

    def request_received(self, request: SipRequest, transaction: ServerTransaction) -> None: ...

    def ack_received(self, ack: SipRequest) -> None: ...

    def response_received(self, response: SipResponse) -> None: ...


InviteHandler = Callable[[SipRequest, ServerInvite, Origin], "DialogUser | None"]
"""Called for a new INVITE to an endpoint; returns the call that now owns the transaction."""


class SipStack:
    """Via/Contact construction, transactions and dispatch for every endpoint of a process."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        transport: Transport,
        advertised_host: str,
        *,
        timers: Timers = DEFAULT_TIMERS,
        user_agent: str = f"callmeter-worker/{__version__}",
    ) -> None:
        self.clock = clock
        self.transport = transport
        self.advertised_host = advertised_host
        self.user_agent = user_agent
        self.transactions = TransactionLayer(clock, timers)
        self._endpoints: dict[str, InviteHandler] = {}
        self._dialogs: dict[tuple[str, str], DialogUser] = {}
        self._cancellable: dict[ServerInvite, Callable[[], None]] = {}

    # -- addresses ------------------------------------------------------------------------

    def via(self, transport: str) -> str:
        """Our Via for a new request: EXTERNAL_IP, the listening port, a fresh branch, rport."""
        port = self.transport.ports.get(transport) or self.transport.ports.get("udp") or 5060
        sent_by = format_host(self.advertised_host, port)
        return f"SIP/2.0/{transport.upper()} {sent_by};branch={new_branch()};rport"

    def contact(self, user: str, transport: str) -> str:
        """``<sip:user@EXTERNAL_IP:port;transport=...>`` for Contact headers."""
        port = self.transport.ports.get(transport) or self.transport.ports.get("udp") or 5060
        uri = SipUri(
            host=self.advertised_host,
            user=user,
            port=port,
            scheme="sips" if transport == "tls" else "sip",
            params=() if transport in ("udp", "tls") else (("transport", transport),),
        )
        return f"<{uri}>"

    # -- registration of users ------------------------------------------------------------

    def add_endpoint(self, user: str, on_invite: InviteHandler) -> None:
        self._endpoints[user] = on_invite

    def remove_endpoint(self, user: str) -> None:
        self._endpoints.pop(user, None)

    def add_dialog(self, call_id: str, local_tag: str, user: DialogUser) -> None:
        self._dialogs[(call_id, local_tag)] = user

    def remove_dialog(self, call_id: str, local_tag: str) -> None:
        self._dialogs.pop((call_id, local_tag), None)

    def on_cancel(self, transaction: ServerInvite, cancelled: Callable[[], None]) -> None:
        """Call ``cancelled`` if a CANCEL arrives for ``transaction`` (until it is answered)."""
        self._cancellable[transaction] = cancelled

    def forget_cancel(self, transaction: ServerInvite) -> None:
        self._cancellable.pop(transaction, None)

    # -- sending --------------------------------------------------------------------------

    def send_request(
        self,
        request: SipRequest,
        target: Target,
        on_response: Callable[[SipResponse], None],
        on_failure: Callable[[Failure], None],
        *,
        via: str | None = None,
    ) -> ClientTransaction:
        """Add our Via (or ``via``: a CANCEL reuses its INVITE's), send through a transaction."""
        request.headers.prepend("Via", via or self.via(target.transport))
        if "User-Agent" not in request.headers:
            request.headers.add("User-Agent", self.user_agent)
        holder: list[ClientTransaction] = []

        def transport_failed(reason: str) -> None:
            self.log.debug("transport error: {reason}", reason=reason)
            if holder:
                holder[0].transport_error()

        def send(message: SipMessage) -> None:
            self.transport.send(message, target, transport_failed)

        transaction = self.transactions.send_request(
            request, send, target.reliable, on_response, on_failure
        )
        holder.append(transaction)
        return transaction

    def send_ack(self, ack: SipRequest, target: Target) -> None:
        """An ACK for a 2xx: no transaction (RFC 3261 13.2.2.4), a fresh branch."""
        if "Via" not in ack.headers:
            ack.headers.prepend("Via", self.via(target.transport))
        self.transport.send(ack, target)

    # -- receiving ------------------------------------------------------------------------

    def on_message(self, message: SipMessage, origin: Origin) -> None:
        """The transport layer's callback for every well-formed message."""
        if isinstance(message, SipResponse):
            self._on_response(message)
        else:
            self._on_request(message, origin)

    def _on_response(self, response: SipResponse) -> None:
        if self.transactions.receive_response(response):
            return
        # No transaction: a 2xx retransmitted after the INVITE transaction ended.
        try:
            key = (response.headers.call_id(), response.headers.from_addr().tag or "")
        except SipParseError:
            return
        owner = self._dialogs.get(key)
        if owner is not None:
            owner.response_received(response)

    def _on_request(self, request: SipRequest, origin: Origin) -> None:
        def reply(message: SipMessage) -> None:
            assert isinstance(message, SipResponse)
            self.transport.reply(message, origin)

        transaction = self.transactions.receive_request(request, reply, origin.reliable)
        if transaction is None:
            if self.transactions.is_stray_ack(request):
                owner = self._dialog_of(request)
                if owner is not None:
                    owner.ack_received(request)
            return
        try:
            self._dispatch(request, transaction, origin)
        except SipParseError as error:
            transaction.respond(
                make_response(request, 400, error.reason[:1].upper() + error.reason[1:])
            )

    def _dispatch(
        self, request: SipRequest, transaction: ServerTransaction, origin: Origin
    ) -> None:
        method = request.method
        if method == "CANCEL":
            self._cancel(request, transaction)
            return
        refused = rejection(request)
        if refused is not None:
            transaction.respond(refused)
            return
        if request.headers.to_addr().tag is not None:
            owner = self._dialog_of(request)
            if owner is None:
                transaction.respond(make_response(request, 481, to_tag=None))
            else:
                owner.request_received(request, transaction)
            return
        if method == "OPTIONS":
            response = make_response(request, 200, to_tag=new_tag())
            response.headers.add("Allow", ALLOW)
            response.headers.add("Accept", "application/sdp")
            response.headers.add("User-Agent", self.user_agent)
            transaction.respond(response)
            return
        if method == "INVITE":
            user = request.uri.user if isinstance(request.uri, SipUri) else None
            handler = self._endpoints.get(user or "")
            if handler is None:
                transaction.respond(make_response(request, 404, to_tag=new_tag()))
                return
            assert isinstance(transaction, ServerInvite)
            handler(request, transaction, origin)
            return
        status = 405 if method in KNOWN_METHODS else 501
        response = make_response(request, status, to_tag=new_tag())
        response.headers.add("Allow", ALLOW)
        transaction.respond(response)

    def _cancel(self, cancel: SipRequest, transaction: ServerTransaction) -> None:
        invite = self.transactions.find_invite(cancel)
        cancelled = self._cancellable.pop(invite, None) if invite is not None else None
        if invite is None or cancelled is None:
            transaction.respond(make_response(cancel, 481))
            return
        transaction.respond(make_response(cancel, 200))
        cancelled()

    def _dialog_of(self, request: SipRequest) -> DialogUser | None:
        tag = request.headers.to_addr().tag
        if tag is None:
            return None
        return self._dialogs.get((request.headers.call_id(), tag))

    def shutdown(self) -> None:
        """Forget every transaction and dialog and stop their timers (calls should have ended
        first: this is the last step of a clean stop, not a substitute for BYE)."""
        self.transactions.abandon_all()
        self._dialogs.clear()
        self._cancellable.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "transactions": len(self.transactions),
            "dialogs": len(self._dialogs),
            "endpoints": len(self._endpoints),
        }
