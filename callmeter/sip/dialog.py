"""Dialogs: RFC 3261 section 12.

A :class:`Dialog` is the state two user agents share after a 2xx (or 101-199 with a To tag) to
an INVITE: Call-ID, local and remote tags, local and remote CSeq numbers, local and remote URIs,
the remote target (the peer's Contact) and the route set (Record-Route).  It builds the requests
sent inside it (12.2.1.1) and checks the requests received (12.2.2).  Sans-IO: no transport, no
clock.  Routing assumes loose routers (``;lr``, RFC 3261 16.12.1.1); a strict router in the route
set is used as the next hop with the remote target appended as the last Route, as 12.2.1.1 says.

A peer of RFC 2543 may send an INVITE without a From tag, or answer without a To tag: its tag
is then null (12.1.1, 12.1.2, 12.2.2), kept as ``""`` here, and the requests we send in the
dialog carry no tag for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from callmeter.sip.headers import Headers
from callmeter.sip.message import SipRequest, SipResponse
from callmeter.sip.uri import NameAddr, SipParseError, SipUri, Uri, parse_name_addr

__all__ = ["Dialog", "DialogError", "target_of"]


class DialogError(ValueError):
    """A message cannot create or belong to a dialog (e.g. a 2xx without Contact)."""


@dataclass
class Dialog:
    """The dialog state of RFC 3261 section 12.1, seen from our side."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    route_set: list[NameAddr] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False

    @property
    def id(self) -> tuple[str, str, str]:
        """12: Call-ID, local tag, remote tag."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # -- creation ---------------------------------------------------------------------------

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """12.1.2: the dialog a 2xx (or 1xx with a tag) to our INVITE creates.

        The route set is the response's Record-Route in reverse order; the remote target its
        Contact; the local sequence number the INVITE's CSeq.  A To without tag (RFC 2543) is
        a null remote tag.
        """
        headers = response.headers
        remote = headers.to_addr()
        local = request.headers.from_addr()
        if local.tag is None:
            raise DialogError("request has no From tag")
        contacts = _contacts(headers)
        routes = list(reversed(headers.record_routes()))
        return cls(
            call_id=request.headers.call_id(),
            local_tag=local.tag,
            remote_tag=remote.tag or "",
            local_uri=local.without_param("tag"),
            remote_uri=remote.without_param("tag"),
            remote_target=contacts[0].uri,
            route_set=routes,
            local_seq=request.headers.cseq().number,
            secure=_is_sips(request.uri),
        )

    @classmethod
    def as_uas(cls, request: SipRequest, local_tag: str) -> Dialog:
        """12.1.1: the dialog our 2xx to ``request`` creates.

        The route set is the request's Record-Route in order; the remote target its Contact;
        the remote sequence number its CSeq.  A From without tag (RFC 2543) is a null remote
        tag: the dialog is made all the same.  An RFC 2543 INVITE may also lack the Contact
        (RFC 4475 3.4.1): the remote target is then its From URI, where RFC 2543 sent
        subsequent requests.
        """
        headers = request.headers
        remote = headers.from_addr()
        contacts = _contacts(headers) if "Contact" in headers else [remote]
        return cls(
            call_id=headers.call_id(),
            local_tag=local_tag,
            remote_tag=remote.tag or "",
            local_uri=headers.to_addr().without_param("tag"),
            remote_uri=remote.without_param("tag"),
            remote_target=contacts[0].uri,
            route_set=list(headers.record_routes()),
            remote_seq=headers.cseq().number,
            secure=_is_sips(request.uri),
        )

    # -- requests within the dialog ---------------------------------------------------------

    def create_request(self, method: str, contact: str | None = None) -> SipRequest:
        """12.2.1.1: a request inside the dialog (the caller adds the Via and sends it).

        Every method but ACK and CANCEL takes the next local CSeq number.
        """
        if method not in ("ACK", "CANCEL"):
            self.local_seq += 1
        headers = Headers()
        uri: Uri = self.remote_target
        routes = list(self.route_set)
        if routes and not _loose(routes[0]):
            uri = routes[0].uri
            routes = [*routes[1:], NameAddr(self.remote_target)]
        for route in routes:
            headers.add("Route", str(route))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        remote = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        headers.add("To", str(remote))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{self.local_seq} {method}")
        if contact is not None and method not in ("BYE", "CANCEL", "ACK"):
            headers.add("Contact", contact)
        return SipRequest(method, uri, headers)

    def create_ack(self, invite_cseq: int) -> SipRequest:
        """13.2.2.4: the ACK for a 2xx carries the INVITE's CSeq number."""
        ack = self.create_request("ACK")
        ack.headers.set("CSeq", f"{invite_cseq} ACK")
        return ack

    def accepts(self, request: SipRequest) -> bool:
        """12.2.2: a request inside the dialog is in order (CSeq above the last one seen).

        ACK and CANCEL reuse the CSeq number of the request they belong to and always pass.
        A request out of order is to be answered with 500.
        """
        number = request.headers.cseq().number
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and number <= self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def next_hop(self) -> Uri:
        """Where the next request of the dialog goes: the first Route, else the remote target."""
        return self.route_set[0].uri if self.route_set else self.remote_target


def target_of(uri: Uri, default_transport: str = "udp") -> tuple[str, str, int]:
    """(transport, host, port) to send a request for ``uri`` to (RFC 3263 without DNS SRV).

    ``maddr`` wins over the host, ``transport=`` over the default; the port defaults to 5061
    for TLS and sips:, else 5060.
    """
    if not isinstance(uri, SipUri):
        raise DialogError(f"cannot route to a {uri} URI")
    params = {name.lower(): value for name, value in uri.params}
    transport = (params.get("transport") or default_transport).lower()
    if uri.scheme == "sips":
        transport = "tls"
    host = params.get("maddr") or uri.host
    port = uri.port or (5061 if transport == "tls" else 5060)
    return transport, host, port


def _contacts(headers: Headers) -> list[NameAddr]:
    try:
        contacts = headers.contacts()
    except SipParseError as error:
        raise DialogError(f"invalid Contact: {error.reason}") from None
    if not contacts:
        raise DialogError("no Contact to use as the remote target")
    return contacts


def _loose(route: NameAddr) -> bool:
    return isinstance(route.uri, SipUri) and any(
        name.lower() == "lr" for name, _ in route.uri.params
    )


def _is_sips(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.scheme == "sips"


def parse_contact(value: str) -> NameAddr:
    """Parse one Contact value (a convenience for the user agent)."""
    return parse_name_addr(value)
