"""SIP and SIPS URIs and name-addr values (RFC 3261 sections 19.1, 20.10 and 25.1).

Everything here is a pure function or a frozen value object: parse text into a
:class:`SipUri` / :class:`NameAddr`, serialize it back with ``str()``.  Components
hold *decoded* text (``%41`` becomes ``A``); serialization escapes whatever the
grammar of RFC 3261 section 25.1 does not allow unescaped, so
``parse_uri(str(uri)) == uri`` for every valid URI.

Parsing is linear: string methods and regular expressions whose alternatives
never overlap (no backtracking traps).  Malformed input raises
:class:`SipParseError`, the one error type of the SIP message layer.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from callmeter.sip.headers import Headers

__all__ = [
    "TOKEN_RE",
    "AbsoluteUri",
    "NameAddr",
    "Params",
    "ParamsMixin",
    "SipParseError",
    "SipUri",
    "Uri",
    "drop_param",
    "find_param",
    "format_host",
    "format_params",
    "parse_host",
    "parse_hostport",
    "parse_name_addr",
    "parse_params",
    "parse_sip_uri",
    "parse_uri",
    "quote_string",
    "set_param",
    "split_outside_quotes",
    "unquote_string",
]

Params = tuple[tuple[str, str | None], ...]
"""Ordered ``;name[=value]`` parameters; a flag parameter (``;lr``) has value ``None``."""


class SipParseError(ValueError):
    """The peer sent something that is not valid SIP (RFC 3261 section 25).

    ``reason`` says what is wrong in a few words and never echoes peer data, so
    it is safe to use as a response's reason phrase.  ``status`` is the response
    code a server should answer with (400, 505 for a wrong SIP version, 513 for a
    message too large).  When a *request* was understood well enough to be
    answered (RFC 3261 section 8.2: its request line parsed and its top Via is
    usable) ``method`` is its method and ``partial`` holds its Via, From, To,
    Call-ID and CSeq headers as far as they parsed; see ``can_respond`` and
    :func:`callmeter.sip.message.make_error_response`.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int = 400,
        method: str | None = None,
        partial: Headers | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.method = method
        self.partial = partial

    @property
    def can_respond(self) -> bool:
        """True when a 400 (or ``status``) response can be built and routed back.

        Never for ACK (RFC 3261 section 17.2: ACK gets no response), and only
        when a usable Via was recovered to route the response with.
        """
        return (
            self.method is not None
            and self.method != "ACK"
            and self.partial is not None
            and "via" in self.partial
        )


# --- character classes of RFC 3261 section 25.1 ------------------------------------

_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"
_USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")
_PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")
_PARAMCHAR_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")
_HNV_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")
_HNAME_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})+")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_IPV6_CHARS_RE = re.compile(r"[0-9A-Fa-f:.]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_OPAQUE_RE = re.compile(r"[^\s<>\"]+")
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
"""RFC 3261 ``token``."""
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~\[\]:]+")
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.DOTALL)

# quote() always leaves ASCII letters, digits and "_.-~" alone; these are the extra
# characters each component may carry unescaped.
_USER_SAFE = "!*'()&=+$,;?/"
_PASSWORD_SAFE = "!*'()&=+$,"
_PARAM_SAFE = "!*'()[]/:&+$"
_HEADER_SAFE = "!*'()[]/?:+$"

_LWS = " \t"


def _decode(text: str, pattern: re.Pattern[str], what: str) -> str:
    if pattern.fullmatch(text) is None:
        raise SipParseError(f"invalid characters in URI {what}")
    if "%" not in text:
        return text
    try:
        return unquote(text, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise SipParseError(f"URI {what} escapes are not UTF-8") from None


def _parse_port(text: str) -> int:
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        raise SipParseError("invalid port")
    port = int(text)
    if port > 65535:
        raise SipParseError("invalid port")
    return port


def parse_host(text: str) -> str:
    """Validate an RFC 3261 ``host`` and return it, IPv6 literals *without* brackets."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise SipParseError("unterminated IPv6 reference")
        address = text[1:-1]
        if _IPV6_CHARS_RE.fullmatch(address) is None:
            raise SipParseError("invalid IPv6 reference")
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise SipParseError("invalid IPv6 reference") from None
        return address
    if _HOSTNAME_RE.fullmatch(text) is None:
        raise SipParseError("invalid host")
    return text


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` (RFC 3261 ``hostport`` / ``sent-by``) into host and port."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError("unterminated IPv6 reference")
        host = parse_host(text[: close + 1])
        rest = text[close + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError("invalid host")
        return host, _parse_port(rest[1:].strip(_LWS))
    host_text, colon, port_text = text.partition(":")
    host = parse_host(host_text.rstrip(_LWS))
    if not colon:
        return host, None
    return host, _parse_port(port_text.strip(_LWS))


def format_host(host: str, port: int | None = None) -> str:
    """``host[:port]`` with an IPv6 literal put back in brackets."""
    text = f"[{host}]" if ":" in host else host
    return text if port is None else f"{text}:{port}"


# --- quoted strings and generic parameters (RFC 3261 section 25.1) -----------------


def _quoted_end(text: str, start: int) -> int:
    """Index just past the quoted-string opening at ``text[start]``.

    A quote is escaped when an odd run of backslashes precedes it; every
    backslash belongs to exactly one run, so this is linear.
    """
    pos = start + 1
    while True:
        close = text.find('"', pos)
        if close < 0:
            raise SipParseError("unterminated quoted string")
        run = 0
        back = close - 1
        while back > start and text[back] == "\\":
            run += 1
            back -= 1
        if run % 2 == 0:
            return close + 1
        pos = close + 1


def unquote_string(text: str) -> str:
    """Content of a complete quoted-string (quotes included), quoted-pairs undone."""
    if len(text) < 2 or text[0] != '"' or _quoted_end(text, 0) != len(text):
        raise SipParseError("malformed quoted string")
    inner = text[1:-1]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def quote_string(text: str) -> str:
    """``text`` as an RFC 3261 quoted-string (backslash and double quote escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split ``text`` on ``separator`` where it is not inside a quoted-string."""
    if '"' not in text:
        return text.split(separator)
    pieces: list[str] = []
    begin = 0
    pos = 0
    while True:
        sep = text.find(separator, pos)
        quote_at = text.find('"', pos)
        if sep < 0:
            if quote_at >= 0:
                _quoted_end(text, quote_at)  # raises when unterminated
            pieces.append(text[begin:])
            return pieces
        if 0 <= quote_at < sep:
            pos = _quoted_end(text, quote_at)
            continue
        pieces.append(text[begin:sep])
        begin = pos = sep + 1


def parse_params(text: str) -> Params:
    """Parse ``name[=value]`` pieces separated by ``;`` (``text`` has no leading ``;``).

    Header parameters (RFC 3261 ``generic-param``): names are tokens, values are
    a token, a host or a quoted-string, kept as written (quotes included).
    """
    params: list[tuple[str, str | None]] = []
    for piece in split_outside_quotes(text, ";"):
        name, equals, value = piece.partition("=")
        name = name.strip(_LWS)
        if TOKEN_RE.fullmatch(name) is None:
            raise SipParseError("invalid parameter name")
        if not equals:
            params.append((name, None))
            continue
        value = value.strip(_LWS)
        if value.startswith('"'):
            unquote_string(value)  # validates
        elif _GEN_VALUE_RE.fullmatch(value) is None:
            raise SipParseError("invalid parameter value")
        params.append((name, value))
    return tuple(params)


def format_params(params: Params) -> str:
    """``;name=value;flag`` for header parameters (values written as stored)."""
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def find_param(params: Params, name: str) -> tuple[str, str | None] | None:
    """The first parameter called ``name`` (case-insensitive), or None."""
    lowered = name.lower()
    for item in params:
        if item[0].lower() == lowered:
            return item
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    """``params`` with ``name`` set to ``value``: replaced in place, else appended."""
    lowered = name.lower()
    out: list[tuple[str, str | None]] = []
    done = False
    for item in params:
        if item[0].lower() == lowered:
            if not done:
                out.append((name, value))
                done = True
        else:
            out.append(item)
    if not done:
        out.append((name, value))
    return tuple(out)


def drop_param(params: Params, name: str) -> Params:
    """``params`` without any parameter called ``name`` (case-insensitive)."""
    lowered = name.lower()
    return tuple(item for item in params if item[0].lower() != lowered)


class ParamsMixin:
    """Case-insensitive parameter access for the value objects below."""

    params: Params

    def has_param(self, name: str) -> bool:
        """True if parameter ``name`` is present, with or without a value."""
        return find_param(self.params, name) is not None

    def get_param(self, name: str) -> str | None:
        """Value of parameter ``name``; None when absent or a flag (see ``has_param``)."""
        item = find_param(self.params, name)
        return None if item is None else item[1]


# --- URIs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SipUri(ParamsMixin):
    """A ``sip:`` or ``sips:`` URI (RFC 3261 section 19.1.1).

    ``host`` is a hostname, an IPv4 address or an IPv6 address (stored without
    brackets; ``str()`` adds them back).  ``params`` are the uri-parameters in
    order (``transport``, ``lr``, ``maddr``, ...; ``lr`` is ``("lr", None)``),
    ``headers`` the ``?name=value&...`` part.  All text is decoded.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    scheme: str = "sip"
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(quote(self.user, safe=_USER_SAFE))
            if self.password is not None:
                out.append(":")
                out.append(quote(self.password, safe=_PASSWORD_SAFE))
            out.append("@")
        out.append(format_host(self.host, self.port))
        for name, value in self.params:
            out.append(";")
            out.append(quote(name, safe=_PARAM_SAFE))
            if value is not None:
                out.append("=")
                out.append(quote(value, safe=_PARAM_SAFE))
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{quote(name, safe=_HEADER_SAFE)}={quote(value, safe=_HEADER_SAFE)}"
                    for name, value in self.headers
                )
            )
        return "".join(out)

    @property
    def host_port(self) -> str:
        """``host[:port]`` with IPv6 brackets, as written in a URI or a Via."""
        return format_host(self.host, self.port)

    @property
    def transport(self) -> str | None:
        """The ``transport`` parameter, lower-cased (``udp``, ``tcp``, ``tls``...)."""
        value = self.get_param("transport")
        return None if value is None else value.lower()

    @property
    def lr(self) -> bool:
        """True for a loose-routing URI (``;lr``, RFC 3261 section 16.12.1.1)."""
        return self.has_param("lr")

    @property
    def maddr(self) -> str | None:
        """The ``maddr`` parameter."""
        return self.get_param("maddr")

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """A copy with uri-parameter ``name`` set (``value=None`` for a flag)."""
        return replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        """A copy without uri-parameter ``name``."""
        return replace(self, params=drop_param(self.params, name))


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other URI scheme (``tel:``, ``urn:``, ``mailto:``...), kept opaque.

    RFC 3261 allows an absoluteURI in the Request-URI and in name-addr; the UA
    answers 416 to schemes it does not support, so the parser must carry them.
    """

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | AbsoluteUri


# The common case in one match: no escapes, no URI headers, hostname or IPv4 host.
# Each group's character class excludes the character that ends it, and the
# optional user group can fail only once, so matching stays linear.
_SIMPLE_SIP_RE = re.compile(
    r"(?:([A-Za-z0-9\-_.!~*'()&=+$,]+)@)?"
    r"([A-Za-z0-9_][A-Za-z0-9_.\-]*)(?::([0-9]{1,5}))?"
    r"((?:;[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+(?:=[A-Za-z0-9\-_.!~*'()\[\]/:&+$]+)?)*)"
)


def _parse_simple_sip(scheme: str, rest: str) -> SipUri | None:
    match = _SIMPLE_SIP_RE.fullmatch(rest)
    if match is None:
        return None
    user, host, port_text, param_text = match.groups()
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise SipParseError("invalid port")
    params: Params = ()
    if param_text:
        items: list[tuple[str, str | None]] = []
        for piece in param_text[1:].split(";"):
            name, equals, value = piece.partition("=")
            items.append((name, value if equals else None))
        params = tuple(items)
    return SipUri(host=host, user=user, port=port, scheme=scheme, params=params)


def _parse_sip_rest(scheme: str, rest: str) -> SipUri:
    if "%" not in rest:
        simple = _parse_simple_sip(scheme, rest)
        if simple is not None:
            return simple
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user_text, colon, password_text = userinfo.partition(":")
        user = _decode(user_text, _USER_RE, "user")
        if colon:
            password = _decode(password_text, _PASSWORD_RE, "password")
    cut = len(rest)
    for mark in ";?":
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    host, port = parse_hostport(rest[:cut])
    rest = rest[cut:]
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    query = rest.find("?")
    param_text = rest if query < 0 else rest[:query]
    if param_text:
        items: list[tuple[str, str | None]] = []
        for piece in param_text[1:].split(";"):
            name, equals, value = piece.partition("=")
            items.append(
                (
                    _decode(name, _PARAMCHAR_RE, "parameter"),
                    _decode(value, _PARAMCHAR_RE, "parameter") if equals else None,
                )
            )
        params = tuple(items)
    if query >= 0:
        pairs: list[tuple[str, str]] = []
        for piece in rest[query + 1 :].split("&"):
            name, equals, value = piece.partition("=")
            if not equals:
                raise SipParseError("invalid URI header")
            pairs.append((_decode(name, _HNAME_RE, "header"), _decode(value, _HNV_RE, "header")))
        headers = tuple(pairs)
    return SipUri(
        host=host,
        user=user,
        password=password,
        port=port,
        scheme=scheme,
        params=params,
        headers=headers,
    )


def parse_uri(text: str) -> Uri:
    """Parse a Request-URI or the URI of a name-addr (RFC 3261 section 19.1, 25.1).

    ``sip:``/``sips:`` give a :class:`SipUri`; any other well-formed scheme an
    :class:`AbsoluteUri`.  Surrounding whitespace is an error: the caller strips.
    """
    scheme_text, colon, rest = text.partition(":")
    if not colon or _SCHEME_RE.fullmatch(scheme_text) is None:
        raise SipParseError("invalid URI scheme")
    scheme = scheme_text.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip_rest(scheme, rest)
    if _OPAQUE_RE.fullmatch(rest) is None:
        raise SipParseError("invalid URI")
    return AbsoluteUri(scheme, rest)


def parse_sip_uri(text: str) -> SipUri:
    """Like :func:`parse_uri` but only ``sip:``/``sips:`` are accepted."""
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise SipParseError("not a SIP URI")
    return uri


# --- name-addr ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NameAddr(ParamsMixin):
    """A To, From, Contact, Route or Record-Route value (RFC 3261 section 20.10).

    ``display_name`` is the decoded display name (None when there is none),
    ``params`` the header parameters after the URI (``tag``, ``expires``, ``q``,
    ...), values kept as written.  ``str()`` always writes the ``<uri>`` form,
    which is valid whatever the URI contains.
    """

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    def __str__(self) -> str:
        head = "" if self.display_name is None else quote_string(self.display_name) + " "
        return f"{head}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 section 19.3)."""
        return self.get_param("tag")

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter in seconds (RFC 3261 section 20.10)."""
        value = self.get_param("expires")
        if value is None:
            return None
        if not (value.isascii() and value.isdigit() and len(value) <= 10):
            raise SipParseError("invalid expires parameter")
        return int(value)

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        """A copy with header parameter ``name`` set (``value`` written as given)."""
        return replace(self, params=set_param(self.params, name, value))

    def without_param(self, name: str) -> NameAddr:
        """A copy without header parameter ``name``."""
        return replace(self, params=drop_param(self.params, name))

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with ``tag`` set."""
        return self.with_param("tag", tag)


def _parse_display_words(text: str) -> str:
    words = text.split()
    for word in words:
        if TOKEN_RE.fullmatch(word) is None:
            raise SipParseError("display name must be a token list or quoted")
    return " ".join(words)


def parse_name_addr(text: str) -> NameAddr:
    """Parse ``name-addr`` or ``addr-spec`` followed by header parameters.

    ``"Bob" <sips:bob@biloxi.com>;tag=a48s``, ``Anonymous <sip:c8@privacy.org>``
    and ``sip:+12125551212@phone2net.com;tag=887s`` are all accepted (RFC 3261
    section 20.10: in the addr-spec form the parameters belong to the header).
    """
    value = text.strip(_LWS)
    if not value:
        raise SipParseError("empty address")
    display: str | None = None
    if value[0] == '"':
        end = _quoted_end(value, 0)
        display = unquote_string(value[:end])
        rest = value[end:].lstrip(_LWS)
        if not rest.startswith("<"):
            raise SipParseError("quoted display name without <URI>")
        open_at = end + (len(value) - end - len(rest))
    else:
        open_at = value.find("<")
        if open_at >= 0:
            before = value[:open_at]
            if ":" in before or ";" in before or '"' in before:
                open_at = -1  # a '<' inside the parameters of an addr-spec
            elif before.strip(_LWS):
                display = _parse_display_words(before)
    if open_at >= 0:
        close_at = value.find(">", open_at + 1)
        if close_at < 0:
            raise SipParseError("unterminated <URI>")
        uri = parse_uri(value[open_at + 1 : close_at].strip(_LWS))
        tail = value[close_at + 1 :].lstrip(_LWS)
    else:
        semi = value.find(";")
        uri_text = value if semi < 0 else value[:semi]
        if "?" in uri_text:
            # 20.10: a URI with headers (or a comma or semicolon) must be in <>.
            raise SipParseError("URI with headers must be enclosed in <>")
        uri = parse_uri(uri_text.rstrip(_LWS))
        tail = "" if semi < 0 else value[semi:]
    if not tail:
        return NameAddr(uri, display)
    if tail[0] != ";":
        raise SipParseError("unexpected text after address")
    return NameAddr(uri, display, parse_params(tail[1:]))
