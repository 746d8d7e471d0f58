"""SIP requests and responses: parse one datagram, serialize, build responses.

RFC 3261 section 7 (message format), 8.2 (UAS request checks: a request that
cannot be understood gets a 400 naming the problem), 8.2.6 (building a
response from a request), 17.2.3 (branch ids with the ``z9hG4bK`` magic cookie)
and 18.3 (framing: on UDP the body is the rest of the datagram and a
Content-Length, when present, must not exceed it).  Stream transports frame with
:class:`callmeter.sip.framing.StreamFramer` and hand each frame to
:func:`parse_message`.

Header text is UTF-8, bodies stay bytes.  :meth:`SipRequest.to_bytes` and
:meth:`SipResponse.to_bytes` always write a Content-Length equal to the body.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from callmeter.sip.headers import Headers, parse_header_block
from callmeter.sip.uri import TOKEN_RE, SipParseError, Uri, parse_name_addr, parse_uri

__all__ = [
    "DEFAULT_LIMITS",
    "KNOWN_METHODS",
    "MAGIC_COOKIE",
    "REASON_PHRASES",
    "ParseLimits",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "find_header_end",
    "is_rfc3261_branch",
    "make_error_response",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
]

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 section 8.1.1.7: every branch we generate starts with this."""

KNOWN_METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    ]
)
"""Methods of RFC 3261 and its extensions: the others are answered 501 (RFC 3261 8.2.1)."""

RESPONSE_COPIED_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
"""Headers a response copies from its request (RFC 3261 section 8.2.6.2)."""

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
"""RFC 3261 section 21 (and a few later RFCs): default reason phrases."""


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on what the parser accepts from a peer.

    ``max_message_size`` is also the largest UDP datagram (RFC 3261 18.1.1
    leaves the figure to us) and the largest message a stream may frame.
    """

    max_message_size: int = 64 * 1024
    max_headers: int = 200
    max_line_length: int = 8 * 1024


DEFAULT_LIMITS = ParseLimits()


def _check_line_text(text: str, what: str) -> None:
    if "\r" in text or "\n" in text:
        raise ValueError(f"{what} cannot contain CR or LF")


@dataclass(slots=True)
class SipRequest:
    """A SIP request (RFC 3261 section 7.1)."""

    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def start_line(self) -> str:
        """``METHOD Request-URI SIP/2.0``."""
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def to_bytes(self) -> bytes:
        """The request on the wire, with a correct Content-Length."""
        if TOKEN_RE.fullmatch(self.method) is None:
            raise ValueError(f"invalid method {self.method!r}")
        text = f"{self.start_line}\r\n{self.headers.to_text(len(self.body))}\r\n"
        return text.encode("utf-8") + self.body


@dataclass(slots=True)
class SipResponse:
    """A SIP response (RFC 3261 section 7.2)."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def start_line(self) -> str:
        """``SIP/2.0 code reason``."""
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def to_bytes(self) -> bytes:
        """The response on the wire, with a correct Content-Length."""
        if not 100 <= self.status <= 699:
            raise ValueError(f"invalid status code {self.status}")
        _check_line_text(self.reason, "reason phrase")
        text = f"{self.start_line}\r\n{self.headers.to_text(len(self.body))}\r\n"
        return text.encode("utf-8") + self.body


SipMessage = SipRequest | SipResponse


# --- parsing ------------------------------------------------------------------------


def find_header_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """(end of the header block, start of the body) at or after ``start``.

    The header block ends at the first empty line: CRLF CRLF as RFC 3261 7
    requires, or a bare LF LF from a sloppy peer.  (-1, -1) if there is none yet.
    """
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start, len(data) if crlf < 0 else crlf)
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 4
    return -1, -1


def _partial(headers: Headers) -> Headers:
    """The Via/From/To/Call-ID/CSeq of a bad request; Via only if the top one parses."""
    partial = headers.subset(RESPONSE_COPIED_HEADERS)
    if "via" in partial:
        try:
            partial.top_via()
        except SipParseError:
            partial.remove("via")
    return partial


def parse_message(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> SipRequest | SipResponse:
    """Parse one complete message: a UDP datagram or a frame from a stream.

    Raises :class:`SipParseError` for anything malformed.  For a request the
    error carries what is needed to answer it (``can_respond``, ``partial``);
    requests must carry Via, From, To, Call-ID and CSeq (RFC 3261 8.1.1), with
    the CSeq method equal to the request method; Max-Forwards may be absent.
    """
    if len(data) > limits.max_message_size:
        raise SipParseError("message too large", status=513)
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 7.5: ignore leading CRLFs
        start += 2
    head_end, body_start = find_header_end(data, start)
    error: str | None = None
    if head_end < 0:
        head_end = body_start = len(data)
        error = "missing empty line after headers"
    raw_head = data[start:head_end]
    try:
        text = raw_head.decode("utf-8")
    except UnicodeDecodeError:
        text = raw_head.decode("utf-8", "replace")
        error = "headers are not valid UTF-8"
    line_end = text.find("\n")
    start_line = text if line_end < 0 else text[:line_end]
    if start_line.endswith("\r"):
        start_line = start_line[:-1]
    if not start_line:
        raise SipParseError("empty message")
    headers, header_error = parse_header_block(
        "" if line_end < 0 else text[line_end + 1 :],
        max_headers=limits.max_headers,
        max_line_length=limits.max_line_length,
    )
    error = error or header_error
    if start_line.startswith("SIP/"):
        return _finish_response(start_line, headers, data, body_start, error)
    return _finish_request(start_line, headers, data, body_start, error, limits)


def _body(headers: Headers, data: bytes, body_start: int) -> bytes:
    length = headers.content_length()
    available = len(data) - body_start
    if length is None or length == available:
        return data[body_start:]
    if length > available:
        raise SipParseError("Content-Length larger than the message")
    return data[body_start : body_start + length]  # RFC 3261 18.3: discard the excess


SINGLE_HEADERS = ("From", "To", "Call-ID", "CSeq", "Max-Forwards")
"""Headers a message carries at most once (RFC 3261 7.3.1: only list headers may repeat;
RFC 4475 3.3.8 expects a 400 for a request with two of these)."""


def _check_common(headers: Headers) -> None:
    headers.top_via()
    headers.from_addr()
    headers.to_addr()
    headers.call_id()
    headers.cseq()
    for name in SINGLE_HEADERS:
        if len(headers.get_all(name)) > 1:
            raise SipParseError(f"multiple {name} headers")


def _finish_request(
    start_line: str,
    headers: Headers,
    data: bytes,
    body_start: int,
    error: str | None,
    limits: ParseLimits,
) -> SipRequest:
    parts = start_line.split(" ")
    method = parts[0]
    if TOKEN_RE.fullmatch(method) is None or len(parts) < 2:
        raise SipParseError("invalid request line")
    status = 400
    uri: Uri | None = None
    if len(parts) != 3 or not parts[1]:
        error = "invalid request line"
    elif len(start_line) > limits.max_line_length:
        error = "request line too long"
    elif parts[2].upper() != SIP_VERSION:
        if parts[2].upper().startswith("SIP/"):
            error, status = "SIP version not supported", 505
        else:
            error = "invalid request line"
    elif "\r" in start_line:
        error = "bare CR in request line"
    else:
        try:
            uri = parse_uri(parts[1])
        except SipParseError as exc:
            error = f"invalid Request-URI: {exc.reason}"
    try:
        if error is not None:
            raise SipParseError(error, status=status)
        _check_common(headers)
        if headers.cseq().method != method:
            if method not in KNOWN_METHODS:  # RFC 4475 3.1.2.18 prefers 501 to 400
                raise SipParseError("method not implemented", status=501)
            raise SipParseError("CSeq method does not match the request method")
        headers.max_forwards()
        if not headers.contact_is_wildcard():
            headers.contacts()  # a Contact we could not use later is a 400 now (8.2.2)
        body = _body(headers, data, body_start)
    except SipParseError as exc:
        raise SipParseError(
            exc.reason, status=exc.status, method=method, partial=_partial(headers)
        ) from None
    assert uri is not None
    return SipRequest(method, uri, headers, body)


def _finish_response(
    start_line: str, headers: Headers, data: bytes, body_start: int, error: str | None
) -> SipResponse:
    parts = start_line.split(" ", 2)
    if (
        len(parts) < 2
        or parts[0].upper() != SIP_VERSION
        or len(parts[1]) != 3
        or not parts[1].isascii()
        or not parts[1].isdigit()
        or not 100 <= int(parts[1]) <= 699
        or "\r" in start_line
    ):
        raise SipParseError("invalid status line")
    if error is not None:
        raise SipParseError(error)
    _check_common(headers)
    body = _body(headers, data, body_start)
    return SipResponse(int(parts[1]), parts[2] if len(parts) == 3 else "", headers, body)


# --- building responses and identifiers ----------------------------------------------


def new_branch() -> str:
    """A fresh RFC 3261 branch id: the magic cookie and 96 random bits (17.2.3)."""
    return MAGIC_COOKIE + secrets.token_hex(12)


def is_rfc3261_branch(branch: str | None) -> bool:
    """True if ``branch`` was made by an RFC 3261 element (has the magic cookie)."""
    return branch is not None and branch.startswith(MAGIC_COOKIE)


def new_tag() -> str:
    """A fresh From/To tag with 64 random bits (RFC 3261 section 19.3)."""
    return secrets.token_hex(8)


def new_call_id(host: str | None = None) -> str:
    """A fresh Call-ID with 128 random bits, ``@host`` appended when given (8.1.1.4)."""
    value = secrets.token_hex(16)
    return value if host is None else f"{value}@{host}"


def _to_with_tag(to_value: str, to_tag: str) -> str:
    """``to_value`` with ``;tag=`` appended unless it already has a tag."""
    try:
        if parse_name_addr(to_value).tag is not None:
            return to_value
    except SipParseError:
        return to_value
    return f"{to_value};tag={to_tag}"


def make_response(
    request: SipRequest, status: int, reason: str | None = None, to_tag: str | None = None
) -> SipResponse:
    """A response to ``request`` per RFC 3261 section 8.2.6.

    Via (all, in order), From, To, Call-ID and CSeq are copied unchanged; when
    ``to_tag`` is given and the To has no tag yet, it is added (8.2.6.2: the UAS
    must add one to every response but 100 Trying).  The reason defaults to
    the phrase of section 21.  Other headers (Contact, Record-Route for a
    dialog, ...) are the caller's.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"invalid status code {status}")
    if to_tag is not None and TOKEN_RE.fullmatch(to_tag) is None:
        raise ValueError(f"invalid tag {to_tag!r}")
    return SipResponse(
        status,
        reason if reason is not None else REASON_PHRASES.get(status, "Unknown"),
        _copied_headers(request.headers, to_tag),
    )


def _copied_headers(source: Headers, to_tag: str | None) -> Headers:
    headers = Headers()
    for name, value in source.subset(RESPONSE_COPIED_HEADERS):
        if to_tag is not None and name.lower() == "to":
            value = _to_with_tag(value, to_tag)
        headers.add(name, value)
    return headers


def make_error_response(error: SipParseError, to_tag: str | None = None) -> SipResponse:
    """The 400 (or ``error.status``) answer to a request that failed to parse.

    The reason phrase is ``error.reason`` (it names the problem, RFC 3261
    8.2.2 style); the headers are those recovered in ``error.partial``.  A To
    tag is added (a fresh one unless ``to_tag`` is given).  Raises ValueError
    if the error is not answerable (see ``SipParseError.can_respond``).
    """
    if not error.can_respond or error.partial is None:
        raise ValueError("this parse error cannot be answered")
    reason = error.reason[:1].upper() + error.reason[1:]
    return SipResponse(error.status, reason, _copied_headers(error.partial, to_tag or new_tag()))
