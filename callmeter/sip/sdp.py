"""SDP session descriptions (RFC 4566) and the offer/answer model (RFC 3264).

Three layers, all plain functions on immutable values (sans-IO):

- :func:`parse_sdp` / :func:`serialize_sdp`: the RFC 4566 section 5 grammar (RFC 8866
  obsoletes it with the same grammar). Known lines become fields, attributes are kept in order
  as :class:`Attribute` values with typed accessors (rtpmap, fmtp, ptime, maxptime, rtcp of
  RFC 3605, direction), unknown lines are kept. Malformed input raises :class:`SdpError` (a
  :class:`ValueError`) naming the line and the reason, never another exception.
- :data:`CODECS`: the codecs the worker speaks, with their RTP names and clock rates.
- :func:`build_offer`, :func:`build_answer` (RFC 3264 sections 5 and 6) and
  :func:`negotiated`, which reduces an offer and its answer to the list of
  :class:`NegotiatedStream` values the media layer consumes.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "CODECS",
    "MAX_SDP_SIZE",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "MediaAnswer",
    "MediaDescription",
    "MediaOffer",
    "NegotiatedStream",
    "Origin",
    "Rtcp",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "build_answer",
    "build_offer",
    "codec",
    "negotiated",
    "parse_sdp",
    "serialize_sdp",
]

#: Largest session description accepted (bytes or characters).
MAX_SDP_SIZE = 65536


class SdpError(ValueError):
    """A session description that is malformed or cannot be negotiated."""


# --- values -----------------------------------------------------------------------------------


class Direction(enum.Enum):
    """Media direction attributes (RFC 4566 section 6, RFC 3264 section 5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """Whether the author of the description sends media."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """Whether the author of the description receives media."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, sends: bool, receives: bool) -> Direction:
        """The direction with the given send and receive flags."""
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        if receives:
            return cls.RECVONLY
        return cls.INACTIVE

    def reverse(self) -> Direction:
        """The same stream seen from the other end (sendonly <-> recvonly)."""
        return Direction.from_flags(self.receives, self.sends)


_DIRECTIONS = {d.value: d for d in Direction}


@dataclass(frozen=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"


@dataclass(frozen=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 4566 section 5.7)."""

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4`` or ``IN IP6`` according to the literal (a name is taken as IP4)."""
        return cls(address=address, addrtype=_addrtype(address))


def _addrtype(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"


@dataclass(frozen=True)
class Timing:
    """``t=<start-time> <stop-time>`` and the ``r=`` lines that follow it (kept as text)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True)
class Attribute:
    """``a=<name>`` (``value`` None) or ``a=<name>:<value>``."""

    name: str
    value: str | None = None


@dataclass(frozen=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (RFC 4566 section 6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True)
class Rtcp:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 section 2.1)."""

    port: int
    connection: Connection | None = None

    def __str__(self) -> str:
        if self.connection is None:
            return str(self.port)
        c = self.connection
        return f"{self.port} {c.nettype} {c.addrtype} {c.address}"


#: Static RTP payload types of RFC 3551 section 6 that a format may use without an rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    pt: RtpMap(pt, name, rate, channels)
    for pt, name, rate, channels in (
        (0, "PCMU", 8000, 1),
        (3, "GSM", 8000, 1),
        (4, "G723", 8000, 1),
        (8, "PCMA", 8000, 1),
        (9, "G722", 8000, 1),
        (13, "CN", 8000, 1),
        (18, "G729", 8000, 1),
        (26, "JPEG", 90000, None),
        (31, "H261", 90000, None),
        (34, "H263", 90000, None),
    )
}


@dataclass(frozen=True)
class MediaDescription:
    """One ``m=`` section with its ``i= c= b= k= a=`` lines (RFC 4566 section 5.14)."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    #: lines with a type letter RFC 4566 does not define, as (letter, value)
    extra_lines: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` ("" for a property attribute), None if absent."""
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute.value if attribute.value is not None else ""
        return None

    def attribute_values(self, name: str) -> list[str]:
        """The values of every ``a=name:value`` line, in order."""
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    @property
    def connection(self) -> Connection | None:
        """The first media-level ``c=`` line."""
        return self.connections[0] if self.connections else None

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload type -> rtpmap: the a=rtpmap lines, and static types listed without one."""
        result: dict[int, RtpMap] = {}
        for value in self.attribute_values("rtpmap"):
            rtpmap = _parse_rtpmap(value)
            result.setdefault(rtpmap.payload_type, rtpmap)
        for fmt in self.formats:
            if fmt.isdigit() and int(fmt) in STATIC_PAYLOAD_TYPES and int(fmt) not in result:
                result[int(fmt)] = STATIC_PAYLOAD_TYPES[int(fmt)]
        return result

    def fmtp(self, fmt: int | str) -> str | None:
        """The format parameters of ``a=fmtp:<fmt> <params>``, None if absent."""
        for value in self.attribute_values("fmtp"):
            name, params = _parse_fmtp(value)
            if name == str(fmt):
                return params
        return None

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in milliseconds (RFC 4566 section 6), rounded; None if absent."""
        value = self.attribute("ptime")
        return None if value is None else _parse_ptime(value, "ptime")

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in milliseconds; None if absent."""
        value = self.attribute("maxptime")
        return None if value is None else _parse_ptime(value, "maxptime")

    @property
    def rtcp(self) -> Rtcp | None:
        """``a=rtcp`` (RFC 3605); None if absent."""
        value = self.attribute("rtcp")
        return None if value is None else _parse_rtcp(value)

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, None if there is none."""
        return _direction_of(self.attributes)


@dataclass(frozen=True)
class SessionDescription:
    """A whole session description (RFC 4566 section 5); fields in the order of the grammar."""

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    #: lines with a type letter RFC 4566 does not define, as (letter, value)
    extra_lines: tuple[tuple[str, str], ...] = ()

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, None if there is none."""
        return _direction_of(self.attributes)

    def media_direction(self, index: int) -> Direction:
        """The direction of m-line ``index``: media level, else session level, else sendrecv."""
        return self.media[index].direction or self.direction or Direction.SENDRECV

    def media_connection(self, index: int) -> Connection | None:
        """The connection of m-line ``index``: media level, else session level."""
        return self.media[index].connection or self.connection

    def to_bytes(self) -> bytes:
        """The serialized description, UTF-8, CRLF line ends."""
        return serialize_sdp(self).encode("utf-8")


def _direction_of(attributes: Iterable[Attribute]) -> Direction | None:
    for attribute in attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            return _DIRECTIONS[attribute.name]
    return None


# --- attribute grammars -----------------------------------------------------------------------

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_RTPMAP_RE = re.compile(r"(\d{1,3}) +([^/ ]+)/(\d{1,10})(?:/(\d{1,3}))? *")
_FMTP_RE = re.compile(r"([^ ]+)(?: +(.*))?")
_PTIME_RE = re.compile(r"(\d{1,6})(?:\.\d{0,6})? *")
_RTCP_RE = re.compile(r"(\d{1,5})(?: +([^ ]+) +([^ ]+) +([^ ]+))? *")


@functools.lru_cache(maxsize=1024)  # the same few rtpmap lines come in every call's SDP
def _parse_rtpmap(value: str) -> RtpMap:
    match = _RTPMAP_RE.fullmatch(value)
    if match is None:
        raise SdpError(f"malformed rtpmap {value!r}")
    pt, clock = int(match.group(1)), int(match.group(3))
    if pt > 127:
        raise SdpError(f"rtpmap payload type {pt} above 127")
    if clock == 0:
        raise SdpError("rtpmap clock rate 0")
    channels = int(match.group(4)) if match.group(4) is not None else None
    if channels == 0:
        raise SdpError("rtpmap with 0 channels")
    return RtpMap(pt, match.group(2), clock, channels)


@functools.lru_cache(maxsize=1024)
def _parse_fmtp(value: str) -> tuple[str, str]:
    match = _FMTP_RE.fullmatch(value)
    if match is None:
        raise SdpError(f"malformed fmtp {value!r}")
    return match.group(1), (match.group(2) or "").strip(" ")


def _parse_ptime(value: str, name: str) -> int:
    match = _PTIME_RE.fullmatch(value)
    if match is None:
        raise SdpError(f"malformed {name} {value!r}")
    return round(float(value))


def _parse_rtcp(value: str) -> Rtcp:
    match = _RTCP_RE.fullmatch(value)
    if match is None:
        raise SdpError(f"malformed rtcp attribute {value!r}")
    port = int(match.group(1))
    if port > 65535:
        raise SdpError(f"rtcp port {port} above 65535")
    if match.group(2) is None:
        return Rtcp(port)
    return Rtcp(
        port, Connection(nettype=match.group(2), addrtype=match.group(3), address=match.group(4))
    )


_ATTRIBUTE_CHECKS: dict[str, Callable[[str], object]] = {
    "rtpmap": _parse_rtpmap,
    "fmtp": _parse_fmtp,
    "ptime": lambda v: _parse_ptime(v, "ptime"),
    "maxptime": lambda v: _parse_ptime(v, "maxptime"),
    "rtcp": _parse_rtcp,
}


def _check_attribute(attribute: Attribute) -> None:
    """Validate the attributes this module interprets, so accessors never fail later."""
    name, value = attribute.name, attribute.value
    if not _TOKEN_RE.fullmatch(name):
        raise SdpError(f"attribute name {name!r} is not a token")
    if name in _DIRECTIONS:
        if value is not None:
            raise SdpError(f"a={name} takes no value")
        return
    check = _ATTRIBUTE_CHECKS.get(name)
    if check is not None:
        if value is None:
            raise SdpError(f"a={name} needs a value")
        check(value)


# --- parser (RFC 4566 section 5) --------------------------------------------------------------

_SESSION_ONLY = frozenset("vosuepztr")
_DEFINED = frozenset("vosiuepcbtrzkam")


def _int_field(text: str, what: str, maximum: int | None = None) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise SdpError(f"{what} must be a number, not {text!r}")
    number = int(text)
    if maximum is not None and number > maximum:
        raise SdpError(f"{what} {number} above {maximum}")
    return number


def _fields(value: str, count: int, what: str) -> list[str]:
    parts = value.split(" ")
    if len(parts) != count or not all(parts):
        raise SdpError(f"{what} needs {count} fields separated by single spaces, got {value!r}")
    return parts


def _parse_connection(value: str) -> Connection:
    nettype, addrtype, address = _fields(value, 3, "c=")
    return Connection(nettype=nettype, addrtype=addrtype, address=address)


def _parse_media_line(value: str) -> MediaDescription:
    parts = value.split(" ")
    if len(parts) < 4 or not all(parts):
        raise SdpError(f"m= needs <media> <port> <proto> <fmt>..., got {value!r}")
    media, port_text, proto, *formats = parts
    port_count: int | None = None
    if "/" in port_text:
        port_text, count_text = port_text.split("/", 1)
        port_count = _int_field(count_text, "m= port count")
    port = _int_field(port_text, "m= port", 65535)
    return MediaDescription(
        media=media, port=port, proto=proto, formats=tuple(formats), port_count=port_count
    )


def _parse_attribute(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    attribute = Attribute(name, rest if sep else None)
    _check_attribute(attribute)
    return attribute


@dataclass
class _Builder:
    """Mutable collector for one level (session or media) while parsing."""

    values: dict[str, Any] = field(default_factory=dict)
    attributes: list[Attribute] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)

    def once(self, key: str, value: Any, letter: str) -> None:
        if key in self.values:
            raise SdpError(f"{letter}= appears twice")
        self.values[key] = value


def parse_sdp(data: str | bytes) -> SessionDescription:
    """Parse a session description; :class:`SdpError` names the line and the problem.

    CRLF or LF line ends; blank lines are ignored. ``v=`` must come first; ``o=``, ``s=`` and at
    least one ``t=`` are required; other session lines may come in any order before the first
    ``m=`` (RFC 4566 section 5 fixes an order; tolerating others is harmless).
    """
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_SDP_SIZE:
            raise SdpError(f"session description larger than {MAX_SDP_SIZE} bytes")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError(f"session description is not UTF-8: {exc.reason}") from None
    elif isinstance(data, str):
        text = data
    else:
        raise SdpError(f"session description must be str or bytes, not {type(data).__name__}")
    if len(text) > MAX_SDP_SIZE:
        raise SdpError(f"session description larger than {MAX_SDP_SIZE} characters")
    lines = [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), 1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise SdpError("empty session description")
    try:
        return _parse_lines(lines)
    except SdpError:
        raise
    except (ValueError, TypeError, IndexError, KeyError) as exc:  # pragma: no cover - safety net
        raise SdpError(f"malformed session description: {exc}") from None


def _parse_lines(lines: list[tuple[int, str]]) -> SessionDescription:
    session = _Builder()
    timings: list[Timing] = []
    media: list[tuple[MediaDescription, _Builder]] = []
    for index, (number, line) in enumerate(lines):
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"line {number}: expected <type>=<value>, got {line[:40]!r}")
        letter, value = line[0], line[2:]
        if "\r" in value or "\x00" in value:
            raise SdpError(f"line {number}: CR or NUL inside a line")
        try:
            if index == 0:
                if letter != "v":
                    raise SdpError("the first line must be v=")
                if value != "0":
                    raise SdpError(f"unsupported SDP version {value!r}")
                continue
            if letter == "v":
                raise SdpError("v= appears twice")
            if letter == "m":
                media.append((_parse_media_line(value), _Builder()))
                continue
            if media:
                if letter in _SESSION_ONLY:
                    raise SdpError(f"{letter}= is not allowed in a media description")
                _media_line(media[-1][1], letter, value)
                continue
            if letter == "t":
                start, stop = _fields(value, 2, "t=")
                timings.append(Timing(_int_field(start, "t= start"), _int_field(stop, "t= stop")))
            elif letter == "r":
                if not timings:
                    raise SdpError("r= before any t=")
                last = timings[-1]
                timings[-1] = replace(last, repeats=(*last.repeats, value))
            else:
                _session_line(session, letter, value)
        except SdpError as exc:
            raise SdpError(f"line {number}: {exc}") from None
    if "origin" not in session.values:
        raise SdpError("missing o= line")
    if "session_name" not in session.values:
        raise SdpError("missing s= line")
    if not timings:
        raise SdpError("missing t= line")
    v = session.values
    return SessionDescription(
        origin=v["origin"],
        session_name=v["session_name"],
        information=v.get("information"),
        uri=v.get("uri"),
        emails=tuple(v.get("emails", ())),
        phones=tuple(v.get("phones", ())),
        connection=session.connections[0] if session.connections else None,
        bandwidths=tuple(session.bandwidths),
        timings=tuple(timings),
        zone=v.get("zone"),
        key=v.get("key"),
        attributes=tuple(session.attributes),
        media=tuple(_finish_media(m, b) for m, b in media),
        extra_lines=tuple(session.extra),
    )


def _session_line(session: _Builder, letter: str, value: str) -> None:
    if letter == "o":
        username, sid, version, nettype, addrtype, address = _fields(value, 6, "o=")
        origin = Origin(
            username,
            _int_field(sid, "o= session id"),
            _int_field(version, "o= session version"),
            nettype,
            addrtype,
            address,
        )
        session.once("origin", origin, letter)
    elif letter == "s":
        session.once("session_name", value, letter)
    elif letter == "i":
        session.once("information", value, letter)
    elif letter == "u":
        session.once("uri", value, letter)
    elif letter in "ep":
        key = "emails" if letter == "e" else "phones"
        existing = session.values.setdefault(key, [])
        assert isinstance(existing, list)
        existing.append(value)
    elif letter == "c":
        if session.connections:
            raise SdpError("c= appears twice at session level")
        session.connections.append(_parse_connection(value))
    elif letter == "b":
        session.bandwidths.append(value)
    elif letter == "z":
        session.once("zone", value, letter)
    elif letter == "k":
        session.once("key", value, letter)
    elif letter == "a":
        session.attributes.append(_parse_attribute(value))
    else:
        session.extra.append((letter, value))


def _media_line(builder: _Builder, letter: str, value: str) -> None:
    if letter == "i":
        builder.once("information", value, letter)
    elif letter == "c":
        builder.connections.append(_parse_connection(value))
    elif letter == "b":
        builder.bandwidths.append(value)
    elif letter == "k":
        builder.once("key", value, letter)
    elif letter == "a":
        builder.attributes.append(_parse_attribute(value))
    else:
        builder.extra.append((letter, value))


def _finish_media(media: MediaDescription, builder: _Builder) -> MediaDescription:
    return replace(
        media,
        information=builder.values.get("information"),
        key=builder.values.get("key"),
        connections=tuple(builder.connections),
        bandwidths=tuple(builder.bandwidths),
        attributes=tuple(builder.attributes),
        extra_lines=tuple(builder.extra),
    )


# --- serializer -------------------------------------------------------------------------------


def _text(value: str, what: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise SdpError(f"{what} contains CR, LF or NUL")
    return value


def _word(value: str, what: str) -> str:
    if not value or " " in _text(value, what):
        raise SdpError(f"{what} must be a non-empty word, not {value!r}")
    return value


def _number(value: int, what: str, maximum: int | None = None) -> str:
    if value < 0 or (maximum is not None and value > maximum):
        raise SdpError(f"{what} {value} out of range")
    return str(value)


def _serialize_attribute(attribute: Attribute) -> str:
    _check_attribute(attribute)
    if attribute.value is None:
        return f"a={attribute.name}"
    return f"a={attribute.name}:{_text(attribute.value, 'attribute value')}"


def _serialize_connection(connection: Connection) -> str:
    c = connection
    words = (
        _word(c.nettype, "nettype"),
        _word(c.addrtype, "addrtype"),
        _word(c.address, "address"),
    )
    return "c=" + " ".join(words)


def _serialize_extra(letter: str, value: str) -> str:
    if len(letter) != 1 or not ("a" <= letter <= "z") or letter in _DEFINED:
        raise SdpError(f"extra line type {letter!r} must be an undefined lower-case letter")
    return f"{letter}={_text(value, 'extra line')}"


def serialize_sdp(sd: SessionDescription) -> str:
    """The text of ``sd`` in the order of RFC 4566 section 5, CRLF line ends.

    Raises :class:`SdpError` for a value that the grammar cannot carry, so that
    ``parse_sdp(serialize_sdp(x)) == x`` for every description this accepts.
    """
    o = sd.origin
    if sd.version != 0:
        raise SdpError(f"unsupported SDP version {sd.version}")
    if not sd.timings:
        raise SdpError("a session description needs at least one t= line")
    out = [
        "v=0",
        "o="
        + " ".join(
            (
                _word(o.username, "o= username"),
                _number(o.session_id, "o= session id"),
                _number(o.session_version, "o= session version"),
                _word(o.nettype, "o= nettype"),
                _word(o.addrtype, "o= addrtype"),
                _word(o.address, "o= address"),
            )
        ),
        "s=" + _text(sd.session_name, "s="),
    ]
    if sd.information is not None:
        out.append("i=" + _text(sd.information, "i="))
    if sd.uri is not None:
        out.append("u=" + _text(sd.uri, "u="))
    out.extend("e=" + _text(e, "e=") for e in sd.emails)
    out.extend("p=" + _text(p, "p=") for p in sd.phones)
    if sd.connection is not None:
        out.append(_serialize_connection(sd.connection))
    out.extend("b=" + _text(b, "b=") for b in sd.bandwidths)
    for timing in sd.timings:
        out.append(f"t={_number(timing.start, 't= start')} {_number(timing.stop, 't= stop')}")
        out.extend("r=" + _text(r, "r=") for r in timing.repeats)
    if sd.zone is not None:
        out.append("z=" + _text(sd.zone, "z="))
    if sd.key is not None:
        out.append("k=" + _text(sd.key, "k="))
    out.extend(_serialize_extra(letter, value) for letter, value in sd.extra_lines)
    out.extend(_serialize_attribute(a) for a in sd.attributes)
    for m in sd.media:
        if not m.formats:
            raise SdpError("an m= line needs at least one format")
        port = _number(m.port, "m= port", 65535)
        if m.port_count is not None:
            port += "/" + _number(m.port_count, "m= port count")
        words = [_word(m.media, "m= media"), port, _word(m.proto, "m= proto")]
        words.extend(_word(f, "m= format") for f in m.formats)
        out.append("m=" + " ".join(words))
        if m.information is not None:
            out.append("i=" + _text(m.information, "i="))
        out.extend(_serialize_connection(c) for c in m.connections)
        out.extend("b=" + _text(b, "b=") for b in m.bandwidths)
        if m.key is not None:
            out.append("k=" + _text(m.key, "k="))
        out.extend(_serialize_extra(letter, value) for letter, value in m.extra_lines)
        out.extend(_serialize_attribute(a) for a in m.attributes)
    return "\r\n".join(out) + "\r\n"


# --- codecs -----------------------------------------------------------------------------------

MediaKind = Literal["audio", "video"]


@dataclass(frozen=True)
class Codec:
    """An RTP payload format the worker offers: its rtpmap name, clock rate and defaults."""

    name: str
    kind: MediaKind
    clock_rate: int
    channels: int | None = None
    static_pt: int | None = None
    fmtp: str | None = None

    def rtpmap(self, pt: int) -> RtpMap:
        """The rtpmap of this codec under payload type ``pt``."""
        return RtpMap(pt, self.name, self.clock_rate, self.channels)


#: The worker's codecs by lower-case name. G.722 samples at 16 kHz but its RTP clock is 8000
#: (RFC 3551 section 4.5.2); Opus is always opus/48000/2 (RFC 7587 section 7); H.264 is offered
#: in packetization mode 1, Constrained Baseline level 3.1 (RFC 6184 section 8.1);
#: telephone-event carries DTMF 0-9 * # A-D and flash (RFC 4733 section 2.3).
CODECS: dict[str, Codec] = {
    c.name.lower(): c
    for c in (
        Codec("PCMU", "audio", 8000, static_pt=0),
        Codec("PCMA", "audio", 8000, static_pt=8),
        Codec("G722", "audio", 8000, static_pt=9),
        Codec("opus", "audio", 48000, channels=2),
        Codec("VP8", "video", 90000),
        Codec("H264", "video", 90000, fmtp="profile-level-id=42e01f;packetization-mode=1"),
        Codec("telephone-event", "audio", 8000, fmtp="0-16"),
    )
}
_TELEPHONE_EVENT = "telephone-event"


def codec(name: str) -> Codec:
    """The codec called ``name`` (case-insensitive, RFC 4855 section 3)."""
    try:
        return CODECS[name.lower()]
    except KeyError:
        raise SdpError(f"unknown codec {name!r}; known: {', '.join(CODECS)}") from None


def _fmtp_params(fmtp: str | None) -> dict[str, str]:
    result: dict[str, str] = {}
    for part in (fmtp or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            result[name.strip().lower()] = value.strip()
    return result


def _h264_acceptable(fmtp: str | None) -> bool:
    """Packetization mode 1 and a profile decodable as Constrained Baseline (RFC 6184 8.1)."""
    params = _fmtp_params(fmtp)
    if params.get("packetization-mode", "0") != "1":
        return False
    profile = params.get("profile-level-id", "420010")
    if not re.fullmatch(r"[0-9a-fA-F]{6}", profile):
        return False
    profile_idc, constraints = int(profile[0:2], 16), int(profile[2:4], 16)
    if profile_idc == 0x42:
        return True
    # Main or Extended profile with constraint_set1_flag: Constrained Baseline compatible.
    return profile_idc in (0x4D, 0x58) and bool(constraints & 0x40)


def _matches(local: Codec, rtpmap: RtpMap, fmtp: str | None) -> bool:
    if rtpmap.encoding.lower() != local.name.lower():
        return False
    if local.name == _TELEPHONE_EVENT:
        return True  # any clock rate; chosen to match the audio codec
    if rtpmap.clock_rate != local.clock_rate:
        return False
    if (rtpmap.channels or 1) != (local.channels or 1):
        return False
    return local.name != "H264" or _h264_acceptable(fmtp)


# --- offer / answer (RFC 3264) ----------------------------------------------------------------


@dataclass(frozen=True)
class MediaOffer:
    """Our side of one stream, for an offer or an answer.

    ``codecs`` in order of preference (names of :data:`CODECS`); ``ptime`` (audio) is the
    packet time we want to receive; ``telephone_event`` adds RFC 4733 events to an audio
    stream; ``rtcp_port`` adds ``a=rtcp`` (RFC 3605) when RTCP is not on port + 1.
    """

    port: int
    codecs: Sequence[str]
    ptime: int | None = 20
    maxptime: int | None = None
    direction: Direction = Direction.SENDRECV
    telephone_event: bool = True
    rtcp_port: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.codecs, str):
            raise SdpError("codecs must be a sequence of names, not one string")
        object.__setattr__(self, "codecs", tuple(self.codecs))
        try:
            object.__setattr__(self, "direction", Direction(self.direction))
        except ValueError:
            raise SdpError(f"unknown direction {self.direction!r}") from None
        if not 0 <= self.port <= 65535:
            raise SdpError(f"port {self.port} out of range")
        if not self.codecs:
            raise SdpError("a stream needs at least one codec")
        for name in self.codecs:
            if codec(name).name == _TELEPHONE_EVENT:
                raise SdpError("telephone-event is enabled with telephone_event=True")
        if self.rtcp_port is not None and not 0 < self.rtcp_port <= 65535:
            raise SdpError(f"rtcp port {self.rtcp_port} out of range")


#: The same description of our side, when used to answer.
MediaAnswer = MediaOffer


def _check_kind(media: MediaOffer, kind: MediaKind) -> list[Codec]:
    codecs = [codec(name) for name in media.codecs]
    for c in codecs:
        if c.kind != kind:
            raise SdpError(f"{c.name} is not a {kind} codec")
    return codecs


def _stream_attributes(
    rtpmaps: Sequence[RtpMap], fmtps: dict[int, str], media: MediaOffer, kind: MediaKind
) -> tuple[Attribute, ...]:
    attributes = [Attribute("rtpmap", str(r)) for r in rtpmaps]
    attributes += [
        Attribute("fmtp", f"{r.payload_type} {fmtps[r.payload_type]}")
        for r in rtpmaps
        if r.payload_type in fmtps
    ]
    if kind == "audio" and media.ptime is not None:
        attributes.append(Attribute("ptime", str(media.ptime)))
    if kind == "audio" and media.maxptime is not None:
        attributes.append(Attribute("maxptime", str(media.maxptime)))
    if media.rtcp_port is not None:
        attributes.append(Attribute("rtcp", str(media.rtcp_port)))
    return tuple(attributes)


def _offer_media(media: MediaOffer, kind: MediaKind) -> MediaDescription:
    codecs = _check_kind(media, kind)
    next_dynamic = 96
    rtpmaps: list[RtpMap] = []
    fmtps: dict[int, str] = {}

    def add(c: Codec, clock_rate: int | None = None) -> None:
        nonlocal next_dynamic
        pt = c.static_pt
        if pt is None:
            pt, next_dynamic = next_dynamic, next_dynamic + 1
        rtpmap = c.rtpmap(pt)
        if clock_rate is not None:
            rtpmap = replace(rtpmap, clock_rate=clock_rate)
        rtpmaps.append(rtpmap)
        if c.fmtp is not None:
            fmtps[pt] = c.fmtp

    for c in codecs:
        add(c)
    if kind == "audio" and media.telephone_event:
        # RFC 4733 section 2.1: events use the clock of the audio codec they accompany.
        for rate in dict.fromkeys(c.clock_rate for c in codecs):
            add(CODECS[_TELEPHONE_EVENT], rate)
    return MediaDescription(
        media=kind,
        port=media.port,
        proto="RTP/AVP",
        formats=tuple(str(r.payload_type) for r in rtpmaps),
        attributes=(
            *_stream_attributes(rtpmaps, fmtps, media, kind),
            Attribute(media.direction.value),
        ),
    )


def build_offer(
    session_id: int,
    address: str,
    audio: MediaOffer | None,
    video: MediaOffer | None = None,
    *,
    session_version: int | None = None,
    session_name: str = "-",
) -> SessionDescription:
    """An initial offer (RFC 3264 section 5) with an audio and/or a video m-line.

    ``address`` goes in o= and in a session-level c= (``IN IP6`` for an IPv6 literal). Static
    payload types are used where RFC 3551 has one, dynamic ones from 96 otherwise; ptime,
    direction and telephone-event per ``audio`` / ``video``.
    """
    if audio is None and video is None:
        raise SdpError("an offer needs at least one stream")
    media: list[MediaDescription] = []
    if audio is not None:
        media.append(_offer_media(audio, "audio"))
    if video is not None:
        media.append(_offer_media(video, "video"))
    return SessionDescription(
        origin=Origin(
            "-",
            session_id,
            session_id if session_version is None else session_version,
            "IN",
            _addrtype(address),
            address,
        ),
        session_name=session_name,
        connection=Connection.for_address(address),
        media=tuple(media),
    )


def _rejected(offered: MediaDescription) -> MediaDescription:
    """RFC 3264 section 6: a refused stream keeps its m-line with port zero."""
    return MediaDescription(
        media=offered.media, port=0, proto=offered.proto, formats=offered.formats
    )


def _rtp_formats(m: MediaDescription) -> list[tuple[RtpMap, str | None]]:
    """The (rtpmap, fmtp) of every payload type listed on an m-line, in order."""
    rtpmaps = m.rtpmaps
    result: list[tuple[RtpMap, str | None]] = []
    for fmt in m.formats:
        if fmt.isascii() and fmt.isdigit() and int(fmt) in rtpmaps:
            result.append((rtpmaps[int(fmt)], m.fmtp(fmt)))
    return result


def _answer_media(
    offered: MediaDescription,
    offered_direction: Direction,
    ours: MediaOffer,
    kind: MediaKind,
    order: Literal["offer", "ours"],
) -> MediaDescription:
    local = _check_kind(ours, kind)
    formats = _rtp_formats(offered)
    common: list[tuple[int, RtpMap, str | None, Codec]] = []
    for rtpmap, fmtp in formats:
        for rank, c in enumerate(local):
            if _matches(c, rtpmap, fmtp):
                common.append((rank, rtpmap, fmtp, c))
                break
    if not common:
        return _rejected(offered)
    if order == "ours":
        common.sort(key=lambda item: item[0])
    if kind == "video" and any(c.name == "H264" for _, _, _, c in common):
        # one H.264 payload type is enough (RFC 6184 section 8.2.2 asks for matching modes)
        seen_h264 = False
        kept = []
        for item in common:
            if item[3].name == "H264":
                if seen_h264:
                    continue
                seen_h264 = True
            kept.append(item)
        common = kept
    rtpmaps = [rtpmap for _, rtpmap, _, _ in common]
    fmtps: dict[int, str] = {}
    for _, rtpmap, fmtp, c in common:
        # H.264: echo the offered parameters (same packetization mode); others: ours.
        value = fmtp if c.name == "H264" else c.fmtp
        if value:
            fmtps[rtpmap.payload_type] = value
    if kind == "audio" and ours.telephone_event:
        rates = {r.clock_rate for r in rtpmaps}
        for rtpmap, fmtp in formats:
            if rtpmap.encoding.lower() == _TELEPHONE_EVENT and rtpmap.clock_rate in rates:
                rtpmaps.append(rtpmap)
                fmtps[rtpmap.payload_type] = fmtp or "0-16"
    direction = Direction.from_flags(
        ours.direction.sends and offered_direction.receives,
        ours.direction.receives and offered_direction.sends,
    )
    return MediaDescription(
        media=kind,
        port=ours.port,
        proto=offered.proto,
        formats=tuple(str(r.payload_type) for r in rtpmaps),
        attributes=(*_stream_attributes(rtpmaps, fmtps, ours, kind), Attribute(direction.value)),
    )


def build_answer(
    offer: SessionDescription,
    session_id: int,
    address: str,
    audio: MediaOffer | None,
    video: MediaOffer | None = None,
    *,
    session_version: int | None = None,
    order: Literal["offer", "ours"] = "offer",
) -> SessionDescription:
    """The answer to ``offer`` (RFC 3264 section 6).

    One m-line per offered m-line, in the same order. The first RTP/AVP audio (video) m-line
    with a codec in common is accepted with ``audio`` (``video``); every other m-line is
    rejected with port 0. Accepted streams list the common codecs with the offerer's payload
    type numbers, in the offer's order (``order="offer"``, RECOMMENDED by section 6.1) or in
    ours, plus telephone-event at a matching clock rate. The direction is what both sides
    allow: sendonly is answered recvonly, recvonly sendonly (section 6.1). t= is copied.
    """
    used: set[str] = set()
    media: list[MediaDescription] = []
    for index, offered in enumerate(offer.media):
        ours = {"audio": audio, "video": video}.get(offered.media)
        if ours is None or offered.media in used or offered.port == 0 or offered.proto != "RTP/AVP":
            media.append(_rejected(offered))
            continue
        kind: MediaKind = "audio" if offered.media == "audio" else "video"
        answered = _answer_media(offered, offer.media_direction(index), ours, kind, order)
        if answered.port != 0:
            used.add(offered.media)
        media.append(answered)
    return SessionDescription(
        origin=Origin(
            "-",
            session_id,
            session_id if session_version is None else session_version,
            "IN",
            _addrtype(address),
            address,
        ),
        session_name="-",
        connection=Connection.for_address(address),
        timings=offer.timings,
        media=tuple(media),
    )


@dataclass(frozen=True)
class NegotiatedStream:
    """One accepted stream after offer/answer, seen from our side: what the media layer needs.

    ``payload_type`` / ``telephone_event_pt`` are the numbers to *send* with (the peer's, RFC
    3264 section 5.1: a description lists the numbers its author expects to receive);
    ``local_payload_type`` / ``local_telephone_event_pt`` are the numbers we receive.
    ``ptime`` is the packet time the peer asked for (ours or 20 ms when it did not; None for
    video). ``direction`` is what *we* do: sendonly means we send and do not receive.
    """

    index: int
    kind: str
    remote_address: str
    remote_rtp_port: int
    remote_rtcp_port: int
    remote_rtcp_address: str
    local_port: int
    codec: str
    payload_type: int
    local_payload_type: int
    clock_rate: int
    channels: int | None
    ptime: int | None
    fmtp: str | None
    telephone_event_pt: int | None
    local_telephone_event_pt: int | None
    direction: Direction


def _same_codec(a: RtpMap, b: RtpMap) -> bool:
    return (
        a.encoding.lower() == b.encoding.lower()
        and a.clock_rate == b.clock_rate
        and (a.channels or 1) == (b.channels or 1)
    )


def negotiated(
    offer: SessionDescription,
    answer: SessionDescription,
    *,
    role: Literal["offerer", "answerer"] = "offerer",
) -> list[NegotiatedStream]:
    """The accepted streams of an offer/answer exchange, from the point of view of ``role``.

    Streams rejected (port 0 on either side) are left out. Raises :class:`SdpError` when the
    answer does not fit the offer (m-line count or media type differ, no connection address,
    no codec in common).
    """
    if len(offer.media) != len(answer.media):
        raise SdpError(
            f"answer has {len(answer.media)} m-lines, the offer {len(offer.media)} "
            "(RFC 3264 section 6)"
        )
    local, remote = (offer, answer) if role == "offerer" else (answer, offer)
    streams: list[NegotiatedStream] = []
    for index, (o, a) in enumerate(zip(offer.media, answer.media, strict=True)):
        if o.media != a.media:
            raise SdpError(f"m-line {index}: answer is {a.media}, offer {o.media}")
        if o.port == 0 or a.port == 0:
            continue
        local_m, remote_m = (o, a) if role == "offerer" else (a, o)
        offered = _rtp_formats(o)
        chosen: tuple[RtpMap, RtpMap] | None = None  # (answer's, offer's)
        for rtpmap, _ in _rtp_formats(a):
            if rtpmap.encoding.lower() == _TELEPHONE_EVENT:
                continue
            match = next((r for r, _ in offered if _same_codec(r, rtpmap)), None)
            if match is not None:
                chosen = (rtpmap, match)
                break
        if chosen is None:
            raise SdpError(f"m-line {index}: no codec of the answer is in the offer")
        local_map, remote_map = chosen if role == "answerer" else (chosen[1], chosen[0])
        connection = remote.media_connection(index)
        if connection is None:
            raise SdpError(f"m-line {index}: no c= line for the remote side")
        rtcp = remote_m.rtcp
        rtcp_port = rtcp.port if rtcp is not None else remote_m.port + 1
        rtcp_address = (
            rtcp.connection.address
            if rtcp is not None and rtcp.connection is not None
            else connection.address
        )
        ptime: int | None = None
        if o.media == "audio":
            ptime = remote_m.ptime or local_m.ptime or 20

        def telephone_event(m: MediaDescription, rate: int) -> int | None:
            for rtpmap, _ in _rtp_formats(m):
                if rtpmap.encoding.lower() == _TELEPHONE_EVENT and rtpmap.clock_rate == rate:
                    return rtpmap.payload_type
            return None

        our_direction = Direction.from_flags(
            local.media_direction(index).sends and remote.media_direction(index).receives,
            local.media_direction(index).receives and remote.media_direction(index).sends,
        )
        streams.append(
            NegotiatedStream(
                index=index,
                kind=o.media,
                remote_address=connection.address,
                remote_rtp_port=remote_m.port,
                remote_rtcp_port=rtcp_port,
                remote_rtcp_address=rtcp_address,
                local_port=local_m.port,
                codec=remote_map.encoding,
                payload_type=remote_map.payload_type,
                local_payload_type=local_map.payload_type,
                clock_rate=remote_map.clock_rate,
                channels=remote_map.channels or (1 if o.media == "audio" else None),
                ptime=ptime,
                fmtp=remote_m.fmtp(remote_map.payload_type),
                telephone_event_pt=telephone_event(remote_m, remote_map.clock_rate),
                local_telephone_event_pt=telephone_event(local_m, local_map.clock_rate),
                direction=our_direction,
            )
        )
    return streams
