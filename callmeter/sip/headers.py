"""SIP header fields: an ordered, case-insensitive container and typed values.

RFC 3261 section 7.3: header names are case-insensitive, compact forms (7.3.3)
mean the same as the long names, a header line may be folded onto several lines
(7.3.1, LWS continuation) and a comma-separated list may be written as one line
or as several header lines of the same name.  :class:`Headers` normalizes all of
that on the way in -- compact names become long names, folded lines are joined,
list headers are split into one entry per value -- and otherwise keeps order and
the original spelling of names for output.  Only the headers whose grammar is a
comma list are split: never WWW-Authenticate, Authorization, Proxy-Authenticate,
Proxy-Authorization or Date, whose values contain commas of their own.

Typed values: :class:`Via` (section 20.42, RFC 3581 ``rport``) and
:class:`CSeq` (section 20.16); Content-Length, Max-Forwards and Expires as ints.
Typed accessors parse once and cache the result until the headers change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar, cast

from callmeter.sip.uri import (
    TOKEN_RE,
    NameAddr,
    Params,
    ParamsMixin,
    SipParseError,
    drop_param,
    format_host,
    format_params,
    parse_hostport,
    parse_name_addr,
    parse_params,
    set_param,
)

__all__ = [
    "COMPACT_FORMS",
    "LIST_HEADERS",
    "CSeq",
    "Headers",
    "Via",
    "parse_cseq",
    "parse_header_block",
    "parse_header_lines",
    "parse_via",
    "split_list",
]

_LWS = " \t"
_T = TypeVar("_T")

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",  # RFC 3841
    "b": "Referred-By",  # RFC 3892
    "c": "Content-Type",
    "d": "Request-Disposition",  # RFC 3841
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",  # RFC 3841
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",  # RFC 6665
    "r": "Refer-To",  # RFC 3515
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",  # RFC 6665
    "v": "Via",
    "x": "Session-Expires",  # RFC 4028
}
"""RFC 3261 section 7.3.3 and later RFCs: compact name -> long name."""

LIST_HEADERS: frozenset[str] = frozenset(
    {
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-associated-uri",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "require",
        "route",
        "security-client",
        "security-server",
        "security-verify",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)
"""Lower-case names of headers whose grammar is ``#(element)`` (RFC 3261 7.3.1)."""

_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 512


def _key_and_name(name: str) -> tuple[str, str]:
    """(lookup key, output name) for a header name; raises ValueError if not a token."""
    cached = _NAME_CACHE.get(name)
    if cached is not None:
        return cached
    if TOKEN_RE.fullmatch(name) is None:
        raise ValueError(f"invalid header name {name!r}")
    lowered = name.lower()
    long_name = COMPACT_FORMS.get(lowered)
    result = (lowered, name) if long_name is None else (long_name.lower(), long_name)
    if len(_NAME_CACHE) < _NAME_CACHE_MAX:
        _NAME_CACHE[name] = result
    return result


def _lookup_key(name: str) -> str:
    lowered = name.lower()
    long_name = COMPACT_FORMS.get(lowered)
    return lowered if long_name is None else long_name.lower()


# A list element is made of runs of plain text, quoted-strings and <...> spans.
# The alternatives start with different characters, so matching never backtracks
# more than one element; an unterminated quote or '<' matches the last branch.
_LIST_TOKEN_RE = re.compile(r'[^,"<]+|"(?:[^"\\]|\\.)*"|<[^>]*>|,|["<]', re.DOTALL)


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quoted-strings and ``<...>`` (7.3.1).

    Elements are stripped; empty elements are dropped unless the value is empty.
    """
    if "," not in value:
        return [value]
    if '"' not in value and "<" not in value:
        raw = value.split(",")
    else:
        raw = []
        current: list[str] = []
        for match in _LIST_TOKEN_RE.finditer(value):
            token = match.group()
            if token == ",":
                raw.append("".join(current))
                current = []
            elif token == '"' or token == "<":
                # Unterminated: the rest is one element (and keeps this linear).
                current.append(value[match.start() :])
                break
            else:
                current.append(token)
        raw.append("".join(current))
    pieces = [piece.strip(_LWS) for piece in raw]
    return [piece for piece in pieces if piece] or [""]


class Headers:
    """Ordered header fields with case-insensitive, compact-form-aware lookup.

    Iteration yields ``(name, value)`` in order.  ``add`` splits list headers
    into one field per element, so ``Via: a, b`` is stored (and written) as two
    Via fields, which RFC 3261 section 7.3.1 defines as equivalent.
    """

    __slots__ = ("_cache", "_fields")

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields: list[tuple[str, str, str]] = []
        self._cache: dict[str, object] = {}
        for name, value in fields:
            self.add(name, value)

    # --- mutation -------------------------------------------------------------

    def add(self, name: str, value: str) -> None:
        """Append a header (a list header's elements become separate fields)."""
        key, out_name = _key_and_name(name)
        self._append(key, out_name, _check_value(value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header before all others (a new top Via, RFC 3261 8.1.1.7)."""
        key, out_name = _key_and_name(name)
        value = _check_value(value)
        pieces = split_list(value) if key in LIST_HEADERS else [value]
        self._fields[0:0] = [(key, out_name, piece) for piece in pieces]
        self._cache.clear()

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` by ``value``, at the first one's place."""
        key, out_name = _key_and_name(name)
        value = _check_value(value)
        pieces = split_list(value) if key in LIST_HEADERS else [value]
        new = [(key, out_name, piece) for piece in pieces]
        fields = self._fields
        for index, field in enumerate(fields):
            if field[0] == key:
                fields[index : index + 1] = new
                break
        else:
            fields.extend(new)
            self._cache.clear()
            return
        start = index + len(new)
        fields[start:] = [field for field in fields[start:] if field[0] != key]
        self._cache.clear()

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many were removed."""
        key = _lookup_key(name)
        before = len(self._fields)
        self._fields = [field for field in self._fields if field[0] != key]
        self._cache.clear()
        return before - len(self._fields)

    def _append(self, key: str, name: str, value: str) -> None:
        if key in LIST_HEADERS and "," in value:
            self._fields.extend((key, name, piece) for piece in split_list(value))
        else:
            self._fields.append((key, name, value))
        if self._cache:
            self._cache.clear()

    # --- lookup ---------------------------------------------------------------

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first field called ``name`` (or a compact form of it)."""
        key = _lookup_key(name)
        for field in self._fields:
            if field[0] == key:
                return field[2]
        return default

    def get_all(self, name: str) -> list[str]:
        """Values of every field called ``name``, in order."""
        key = _lookup_key(name)
        return [field[2] for field in self._fields if field[0] == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _lookup_key(name)
        return any(field[0] == key for field in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((field[1], field[2]) for field in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({[(field[1], field[2]) for field in self._fields]!r})"

    def copy(self) -> Headers:
        """An independent copy."""
        twin = Headers()
        twin._fields = list(self._fields)
        return twin

    def subset(self, names: Iterable[str]) -> Headers:
        """A new container holding only the fields called one of ``names``, in order."""
        keys = {_lookup_key(name) for name in names}
        twin = Headers()
        twin._fields = [field for field in self._fields if field[0] in keys]
        return twin

    def to_text(self, content_length: int | None = None) -> str:
        """Header lines, each ending in CRLF (no blank line after them).

        With ``content_length`` the first Content-Length field carries that value
        (further ones are dropped) or, if there is none, one is appended last.
        """
        out: list[str] = []
        done = content_length is None
        for key, name, value in self._fields:
            if key == "content-length" and content_length is not None:
                if done:
                    continue
                value = str(content_length)
                done = True
            out.append(f"{name}: {value}\r\n")
        if not done:
            out.append(f"Content-Length: {content_length}\r\n")
        return "".join(out)

    # --- typed accessors (RFC 3261 section 20) ---------------------------------

    def _cached(self, key: str, build: Callable[[], _T]) -> _T:
        try:
            return cast(_T, self._cache[key])
        except KeyError:
            value = build()
            self._cache[key] = value
            return value

    def _required(self, name: str) -> str:
        key = name.lower()
        for field in self._fields:
            if field[0] == key:
                return field[2]
        raise SipParseError(f"missing {name} header")

    def vias(self) -> list[Via]:
        """Every Via, top first."""
        return self._cached("vias", lambda: [parse_via(v) for v in self.get_all("via")])

    def top_via(self) -> Via:
        """The top Via (the one a response is routed with)."""
        return self._cached("top-via", lambda: parse_via(self._required("Via")))

    def cseq(self) -> CSeq:
        """The CSeq header."""
        return self._cached("cseq", lambda: parse_cseq(self._required("CSeq")))

    def call_id(self) -> str:
        """The Call-ID header."""
        return self._cached("call-id", lambda: _check_call_id(self._required("Call-ID")))

    def from_addr(self) -> NameAddr:
        """The From header."""
        return self._cached("from", lambda: parse_name_addr(self._required("From")))

    def to_addr(self) -> NameAddr:
        """The To header."""
        return self._cached("to", lambda: parse_name_addr(self._required("To")))

    def contacts(self) -> list[NameAddr]:
        """Every Contact (``Contact: *`` raises; see ``contact_is_wildcard``)."""
        return self._cached(
            "contacts", lambda: [parse_name_addr(v) for v in self.get_all("contact")]
        )

    def contact_is_wildcard(self) -> bool:
        """True for ``Contact: *`` (RFC 3261 section 10.2.2, remove all bindings)."""
        return self.get_all("contact") == ["*"]

    def routes(self) -> list[NameAddr]:
        """Every Route, in order."""
        return self._cached("routes", lambda: [parse_name_addr(v) for v in self.get_all("route")])

    def record_routes(self) -> list[NameAddr]:
        """Every Record-Route, in order."""
        return self._cached(
            "record-routes", lambda: [parse_name_addr(v) for v in self.get_all("record-route")]
        )

    def content_length(self) -> int | None:
        """Content-Length in bytes, None when absent (RFC 3261 section 20.14)."""
        return self._int_header("Content-Length", 2**32 - 1)

    def max_forwards(self) -> int | None:
        """Max-Forwards (0-255), None when absent (RFC 3261 section 20.22)."""
        return self._int_header("Max-Forwards", 255)

    def expires(self) -> int | None:
        """Expires in seconds, None when absent (RFC 3261 section 20.19)."""
        return self._int_header("Expires", 2**32 - 1)

    def _int_header(self, name: str, max_value: int) -> int | None:
        values = self.get_all(name)
        if not values:
            return None
        numbers = {_parse_digits(value, name, 10) for value in values}
        if len(numbers) != 1:
            raise SipParseError(f"conflicting {name} headers")
        number = numbers.pop()
        if number > max_value:
            raise SipParseError(f"invalid {name} header")
        return number


def _check_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("header values cannot contain CR or LF")
    return value.strip(_LWS)


def _check_call_id(value: str) -> str:
    # callid = word [ "@" word ]: no whitespace; be liberal about the characters.
    if not value or any(ch in value for ch in " \t"):
        raise SipParseError("invalid Call-ID header")
    return value


def _parse_digits(value: str, name: str, max_digits: int) -> int:
    if not (0 < len(value) <= max_digits and value.isascii() and value.isdigit()):
        raise SipParseError(f"invalid {name} header")
    return int(value)


# --- Via (RFC 3261 section 20.42, RFC 3581) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Via(ParamsMixin):
    """One Via value: ``SIP/2.0/UDP host:port;branch=z9hG4bK...;rport``.

    ``host`` is stored without IPv6 brackets (``sent_by`` adds them back).
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as written in the Via."""
        return format_host(self.host, self.port)

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (transaction id, RFC 3261 section 17.2.3)."""
        return self.get_param("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 section 18.2.1)."""
        return self.get_param("received")

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter."""
        return self.get_param("maddr")

    @property
    def ttl(self) -> int | None:
        """The ``ttl`` parameter."""
        value = self.get_param("ttl")
        return None if value is None else _parse_digits(value, "Via ttl", 3)

    @property
    def has_rport(self) -> bool:
        """True if ``rport`` is present, as a flag or with a value (RFC 3581)."""
        return self.has_param("rport")

    @property
    def rport(self) -> int | None:
        """The ``rport`` value, None when absent or a bare flag (RFC 3581 section 4)."""
        value = self.get_param("rport")
        return None if value is None else _parse_digits(value, "Via rport", 5)

    def with_param(self, name: str, value: str | None = None) -> Via:
        """A copy with parameter ``name`` set (``value=None`` for a flag)."""
        return replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: str) -> Via:
        """A copy without parameter ``name``."""
        return replace(self, params=drop_param(self.params, name))


_VIA_HEAD_RE = re.compile(
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
)


def parse_via(value: str) -> Via:
    """Parse one via-parm (``sent-protocol LWS sent-by *( SEMI via-params )``)."""
    head = _VIA_HEAD_RE.match(value)
    if head is None:
        raise SipParseError("invalid Via header")
    name, version, transport = head.groups()
    rest = value[head.end() :]
    semi = rest.find(";")
    sent_by = (rest if semi < 0 else rest[:semi]).rstrip(_LWS)
    if not sent_by:
        raise SipParseError("invalid Via header")
    host, port = parse_hostport(sent_by)
    params = parse_params(rest[semi + 1 :]) if semi >= 0 else ()
    return Via(transport, host, port, params, f"{name}/{version}")


# --- CSeq (RFC 3261 section 20.16) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: 4711 INVITE``: a sequence number below 2**31 and a method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    """Parse a CSeq value."""
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError("invalid CSeq header")
    number_text, method = parts
    number = _parse_digits(number_text, "CSeq", 10)
    if number >= 2**31 or TOKEN_RE.fullmatch(method) is None:
        raise SipParseError("invalid CSeq header")
    return CSeq(number, method)


# --- header block (RFC 3261 sections 7.3, 7.3.1) ------------------------------------


def _unfold(lines: list[str]) -> tuple[list[str], str | None]:
    """Join continuation lines (starting with SP or HT) to their header, one SP between."""
    logical: list[list[str]] = []
    error: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t"):
            if logical:
                logical[-1].append(line.strip(_LWS))
            else:
                error = error or "continuation line without a header"
        else:
            logical.append([line])
    return [parts[0] if len(parts) == 1 else " ".join(parts) for parts in logical], error


def parse_header_block(
    text: str, *, max_headers: int, max_line_length: int
) -> tuple[Headers, str | None]:
    """Parse the header lines of a message (the text between start line and blank line).

    The common case -- CRLF line ends, nothing folded, within the limits -- is
    recognised on the whole block at once and parsed in one tight loop; anything
    else goes through :func:`parse_header_lines`.
    """
    if not text:
        return Headers(), None
    lines = text.split("\r\n")
    if (
        len(text) > max_line_length
        or len(lines) > max_headers
        or "\n" in text.replace("\r\n", "")
        or text.count("\r") != len(lines) - 1
        or "\r\n " in text
        or "\r\n\t" in text
        or text[0] in " \t"
    ):
        if "\n" in text.replace("\r\n", ""):
            lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        return parse_header_lines(lines, max_headers=max_headers, max_line_length=max_line_length)
    headers = Headers()
    fields = headers._fields
    cache_get = _NAME_CACHE.get
    list_headers = LIST_HEADERS
    error: str | None = None
    for line in lines:
        name, colon, value = line.partition(":")
        key_name = cache_get(name)
        if key_name is None:
            if not colon:
                error = error or "header line without a colon"
                continue
            try:
                key_name = _key_and_name(name.rstrip(_LWS))
            except ValueError:
                error = error or "invalid header name"
                continue
        value = value.strip(_LWS)
        key = key_name[0]
        if key in list_headers and "," in value:
            fields.extend((key, key_name[1], piece) for piece in split_list(value))
        else:
            fields.append((key, key_name[1], value))
    return headers, error


def parse_header_lines(
    lines: list[str], *, max_headers: int, max_line_length: int
) -> tuple[Headers, str | None]:
    """Parse header lines (line ends already removed) into :class:`Headers`.

    Folded lines are joined with one space (RFC 3261 7.3.1).  A bad line does
    not stop parsing, so the caller still gets every good header (to answer
    400, RFC 3261 8.2); the reason of the first problem is returned alongside.
    More than ``max_headers`` header fields (logical lines) stop parsing there.
    """
    error: str | None = None
    if any(line[:1] in (" ", "\t") for line in lines):
        if any(len(line) > max_line_length for line in lines):
            error = "header line too long"
        lines, error2 = _unfold(lines)
        error = error or error2
    headers = Headers()
    fields = headers._fields
    cache_get = _NAME_CACHE.get
    list_headers = LIST_HEADERS
    for count, line in enumerate(lines, 1):
        if count > max_headers:
            return headers, error or "too many headers"
        if len(line) > max_line_length:
            error = error or "header line too long"
            continue
        if "\r" in line:
            error = error or "bare CR in header"
            continue
        colon = line.find(":")
        if colon < 0:
            error = error or "header line without a colon"
            continue
        name = line[:colon]
        key_name = cache_get(name)
        if key_name is None:
            try:
                key_name = _key_and_name(name.rstrip(_LWS))
            except ValueError:
                error = error or "invalid header name"
                continue
        key = key_name[0]
        value = line[colon + 1 :].strip(_LWS)
        if key in list_headers and "," in value:
            fields.extend((key, key_name[1], piece) for piece in split_list(value))
        else:
            fields.append((key, key_name[1], value))
    return headers, error
