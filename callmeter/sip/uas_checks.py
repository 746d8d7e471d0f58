"""What a UAS checks before it acts on a request: RFC 3261 section 8.2.

Sans-IO: :func:`rejection` takes a request and returns the response that refuses it, or None
when the request may go on.  The order is the RFC's (8.2.1 method inspection is the stack's
dispatch; 8.2.2 header inspection; 8.2.3 content processing), so the first reason found wins.

- 8.2.2.1: a Request-URI scheme we do not understand -> 416 (Unsupported URI Scheme).
- 8.2.2.3: an option tag in Require we do not support -> 420 (Bad Extension) with the tags in
  Unsupported (a MUST); not for ACK and CANCEL, whose Require is ignored.
- 8.2.3: a body whose Content-Type or Content-Encoding we do not understand -> 415 (Unsupported
  Media Type) with Accept / Accept-Encoding listing what we take (a MUST).
- 21.4.7: an INVITE whose Accept excludes application/sdp, the only body we can answer with ->
  406 (Not Acceptable).
"""

from __future__ import annotations

from callmeter.sip.message import SipRequest, SipResponse, make_response, new_tag
from callmeter.sip.uri import SipUri

__all__ = ["ACCEPT", "SUPPORTED", "rejection"]

#: Option tags we support (none yet: 100rel, timer, replaces... are not implemented).
SUPPORTED: frozenset[str] = frozenset()
#: Body types we understand, and for which methods (INFO bodies belong to the dialog's user).
ACCEPT = "application/sdp"
_BODY_METHODS = frozenset({"INVITE", "ACK", "UPDATE", "PRACK", "OPTIONS", "BYE"})
_SCHEMES = frozenset({"sip", "sips"})


def rejection(request: SipRequest) -> SipResponse | None:
    """The response refusing ``request`` under RFC 3261 8.2.2-8.2.3, or None."""
    method = request.method
    if method in ("ACK", "CANCEL"):
        return None
    tag = None if request.headers.to_addr().tag else new_tag()
    if not isinstance(request.uri, SipUri) or request.uri.scheme.lower() not in _SCHEMES:
        return make_response(request, 416, to_tag=tag)
    unknown = [
        option
        for option in request.headers.get_all("Require")
        if option.strip() and option.strip().lower() not in SUPPORTED
    ]
    if unknown:
        response = make_response(request, 420, to_tag=tag)
        response.headers.add("Unsupported", ", ".join(option.strip() for option in unknown))
        return response
    if request.body and method in _BODY_METHODS:
        content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        encodings = [e.strip().lower() for e in request.headers.get_all("Content-Encoding")]
        if content_type != ACCEPT or any(e not in ("", "identity") for e in encodings):
            response = make_response(request, 415, to_tag=tag)
            response.headers.add("Accept", ACCEPT)
            response.headers.add("Accept-Encoding", "identity")
            return response
    if method == "INVITE" and not _accepts_sdp(request.headers.get_all("Accept")):
        response = make_response(request, 406, to_tag=tag)
        response.headers.add("Accept", ACCEPT)
        return response
    return None


def _accepts_sdp(accept: list[str]) -> bool:
    """20.1: no Accept means application/sdp; otherwise a matching range with q > 0."""
    if not accept:
        return True
    for entry in accept:
        media, *params = (part.strip() for part in entry.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and media.lower() in ("*/*", "application/*", ACCEPT):
            return True
    return False
