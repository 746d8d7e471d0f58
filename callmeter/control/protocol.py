"""Control-plane messages between a worker and its gateway: schemas, versions, parsing.

A sans-IO core in the manner of h11/wsproto: no sockets, no reactor. One frozen dataclass per
message type; :meth:`Message.to_json` gives the text of one WebSocket text frame (RFC 6455
section 5.6: text frames carry UTF-8) and :func:`parse_message` turns a received frame back into a
message or raises :class:`ProtocolError` ("the peer broke the protocol"). Building a message with
bad values, or encoding one over the frame limit, raises ``ValueError`` ("we misused it").

Wire rules (docs/protocol.md is the reference):

- Every message is one JSON object (RFC 8259) with ``"v"`` (the protocol's major version, an
  integer) and ``"type"``. Same major version: compatible, unknown fields are ignored. Another
  major version: error ``unsupported_version``.
- A frame is at most :data:`MAX_MESSAGE_BYTES` (64 KiB) of UTF-8, checked before JSON decoding.
- Field types are checked and a bad one is named by its path (``capabilities.max_endpoints``).
  The values of fields are never echoed back in an error: a plan may carry SIP passwords.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any, ClassVar, TypeVar

__all__ = [
    "GATEWAY_MESSAGES",
    "MAX_MESSAGE_BYTES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "WORKER_MESSAGES",
    "WORKER_STATES",
    "Accepted",
    "Ack",
    "Assign",
    "Cancel",
    "Capabilities",
    "Error",
    "ErrorCode",
    "Finished",
    "Heartbeat",
    "HeartbeatAck",
    "Hello",
    "Message",
    "Metrics",
    "ProtocolError",
    "Rejected",
    "Status",
    "Welcome",
    "error_reply",
    "parse_message",
]

PROTOCOL_VERSION = 1
"""The major version this code speaks; it goes into every message as ``"v"``."""

MAX_MESSAGE_BYTES = 65536
"""The largest frame either side sends or accepts, in bytes of UTF-8 (SPEC.md: under 64 KiB)."""

WORKER_STATES = ("OFFLINE", "CONNECTING", "ONLINE", "BUSY", "DRAINING", "ERROR")
"""The worker states of SPEC.md "Control plane" (callmeter.status.WorkerState's values)."""

_MAX_DETAIL = 200


class ErrorCode(enum.StrEnum):
    """The ``code`` of an ``error`` message; the peer may send codes not listed here."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    UNEXPECTED_TYPE = "unexpected_type"
    UNSUPPORTED_VERSION = "unsupported_version"
    BAD_FIELD = "bad_field"


class ProtocolError(Exception):
    """A received frame broke the protocol; ``code`` is an :class:`ErrorCode` value.

    ``in_reply_to`` is the offending message's ``type`` when it could be read, else ``None``.
    """

    def __init__(self, code: str, detail: str, in_reply_to: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = _clip(detail)
        self.in_reply_to = in_reply_to


class _FieldError(ValueError):
    """A field value out of its range; ``path`` names the field."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _require(ok: bool, path: str, problem: str) -> None:
    if not ok:
        raise _FieldError(path, problem)


# --- field decoding, driven by the dataclass annotations --------------------------------------

_JSON_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    dict: "an object",
    list: "an array",
    type(None): "null",
}


def _json_kind(value: object) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _wrong(path: str, expected: str, value: object) -> _FieldError:
    return _FieldError(path, f"expected {expected}, got {_json_kind(value)}")


def _decode(value: object, tp: Any, path: str) -> Any:
    """Check ``value`` (parsed JSON) against annotation ``tp``; return the field's value."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        (inner,) = options  # only "X | None" is used
        return _decode(value, inner, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise _wrong(path, "a boolean", value)
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong(path, "an integer", value)
        return value
    if tp is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _wrong(path, "a number", value)
        try:
            return float(value)
        except OverflowError:
            raise _FieldError(path, "number out of range") from None
    if tp is str:
        if not isinstance(value, str):
            raise _wrong(path, "a string", value)
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(path, "an object", value)
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise _wrong(path, "an array", value)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _FieldError(path, f"expected an array of {len(args)} items, got {len(value)}")
        return tuple(
            _decode(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _wrong(path, "an object", value)
        return _build(tp, value, path + ".")
    raise TypeError(f"no decoder for {tp!r}")  # pragma: no cover - a schema bug, not input


_T = TypeVar("_T")
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _build(cls: type[_T], data: Mapping[str, object], prefix: str = "") -> _T:
    """Build dataclass ``cls`` from ``data``; unknown keys are ignored (same major version)."""
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise _FieldError(prefix + f.name, "missing")
            continue
        kwargs[f.name] = _decode(data[f.name], hints[f.name], prefix + f.name)
    try:
        return cls(**kwargs)
    except _FieldError as exc:
        raise _FieldError(prefix + exc.path, exc.problem) from None


def _plain(value: object) -> object:
    """A field value as JSON data: tuples become arrays, nested dataclasses objects."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return value


# --- the messages ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a worker can run: ``hello.capabilities``."""

    max_endpoints: int
    transports: tuple[str, ...] = ("udp", "tcp", "tls")
    codecs: tuple[str, ...] = ("PCMU", "PCMA")

    def __post_init__(self) -> None:
        _require(self.max_endpoints >= 0, "max_endpoints", "must be >= 0")


_M = TypeVar("_M", bound="Message")


@dataclasses.dataclass(frozen=True)
class Message:
    """Base of every message: ``TYPE`` is the wire ``"type"``; ``"v"`` is added on encoding."""

    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, object]:
        """The message as JSON data, ``v`` and ``type`` first; optional ``None`` fields left out."""
        out: dict[str, object] = {"v": PROTOCOL_VERSION, "type": self.TYPE}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            out[f.name] = _plain(value)
        return out

    def to_json(self) -> str:
        """One text frame; ``ValueError`` if its UTF-8 is over :data:`MAX_MESSAGE_BYTES`.

        Non-ASCII text goes out as UTF-8; a string holding a lone surrogate (which UTF-8 cannot
        carry, but a JSON ``\\ud800`` escape can produce) makes the whole frame ASCII-escaped.
        """
        data = self.to_dict()
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            text = json.dumps(data, separators=(",", ":"), allow_nan=False)
            size = len(text)
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(
                f"{self.TYPE} message is {size} bytes, over the {MAX_MESSAGE_BYTES}-byte limit"
            )
        return text

    @classmethod
    def from_dict(cls: type[_M], data: Mapping[str, object]) -> _M:
        """Build from parsed JSON (``v`` and ``type`` already checked); ProtocolError if bad."""
        try:
            return _build(cls, data)
        except _FieldError as exc:
            raise ProtocolError(ErrorCode.BAD_FIELD, str(exc), cls.TYPE) from None


def _nonempty(value: str, path: str) -> None:
    _require(value != "", path, "must not be empty")


def _state(value: str, path: str = "state") -> None:
    _require(value in WORKER_STATES, path, "must be one of " + ", ".join(WORKER_STATES))


# worker -> gateway


@dataclasses.dataclass(frozen=True)
class Hello(Message):
    """First message of a session. The token is not here: it is the upgrade request's
    ``Authorization: Bearer`` header."""

    TYPE: ClassVar[str] = "hello"
    worker: str
    version: str
    capabilities: Capabilities

    def __post_init__(self) -> None:
        _nonempty(self.worker, "worker")


@dataclasses.dataclass(frozen=True)
class Heartbeat(Message):
    """Every ``heartbeat_interval_s`` (30 s); ``load`` is process CPU in cores (1.0 = one)."""

    TYPE: ClassVar[str] = "heartbeat"
    seq: int
    state: str
    active_endpoints: int = 0
    test_run: str | None = None
    load: float = 0.0

    def __post_init__(self) -> None:
        _require(self.seq >= 1, "seq", "must be >= 1")
        _state(self.state)
        _require(self.active_endpoints >= 0, "active_endpoints", "must be >= 0")
        _require(self.load >= 0.0, "load", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Accepted(Message):
    TYPE: ClassVar[str] = "accepted"
    run: str

    def __post_init__(self) -> None:
        _nonempty(self.run, "run")


@dataclasses.dataclass(frozen=True)
class Rejected(Message):
    TYPE: ClassVar[str] = "rejected"
    run: str
    reason: str

    def __post_init__(self) -> None:
        _nonempty(self.run, "run")


@dataclasses.dataclass(frozen=True)
class Status(Message):
    """A state change (same names as /health); ``reason`` explains ERROR."""

    TYPE: ClassVar[str] = "status"
    state: str
    reason: str | None = None
    run: str | None = None

    def __post_init__(self) -> None:
        _state(self.state)


@dataclasses.dataclass(frozen=True)
class Metrics(Message):
    """Metric window ``seq`` (1, 2, 3 ... per run) covering ``start``..``end`` (Unix seconds).

    ``dropped = (first, last)``: windows first..last were dropped by the worker's bounded spool
    and will never come; the gateway records them as dropped (docs/protocol.md).
    """

    TYPE: ClassVar[str] = "metrics"
    run: str
    seq: int
    start: float
    end: float
    groups: dict[str, Any]
    total: dict[str, Any]
    dropped: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _nonempty(self.run, "run")
        _require(self.seq >= 1, "seq", "must be >= 1")
        _require(self.end >= self.start, "end", "must be >= start")
        if self.dropped is not None:
            first, last = self.dropped
            _require(1 <= first <= last < self.seq, "dropped", "must be [first, last], < seq")


@dataclasses.dataclass(frozen=True)
class Finished(Message):
    """The run's end: ``report`` and ``windows``, the number of its last metric window.

    ``dropped``, as in :class:`Metrics`, when the windows dropped last have no later window.
    """

    TYPE: ClassVar[str] = "finished"
    run: str
    report: dict[str, Any]
    windows: int = 0
    dropped: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _nonempty(self.run, "run")
        _require(self.windows >= 0, "windows", "must be >= 0")
        if self.dropped is not None:
            first, last = self.dropped
            _require(
                1 <= first <= last <= self.windows, "dropped", "must be [first, last], <= windows"
            )


@dataclasses.dataclass(frozen=True)
class Error(Message):
    """Either direction: the peer's last frame was refused (``in_reply_to``: its type)."""

    TYPE: ClassVar[str] = "error"
    code: str
    detail: str
    in_reply_to: str | None = None


# gateway -> worker


@dataclasses.dataclass(frozen=True)
class Welcome(Message):
    """The gateway accepted the token: the session is authenticated."""

    TYPE: ClassVar[str] = "welcome"
    worker_id: str
    heartbeat_interval_s: float = 30.0
    server_time: float = 0.0

    def __post_init__(self) -> None:
        _require(
            0 < self.heartbeat_interval_s <= 3600, "heartbeat_interval_s", "must be in (0, 3600]"
        )


@dataclasses.dataclass(frozen=True)
class HeartbeatAck(Message):
    TYPE: ClassVar[str] = "heartbeat_ack"
    seq: int

    def __post_init__(self) -> None:
        _require(self.seq >= 1, "seq", "must be >= 1")


@dataclasses.dataclass(frozen=True)
class Assign(Message):
    """A test run; ``plan`` stays opaque here (callmeter.plan validates it)."""

    TYPE: ClassVar[str] = "assign"
    run: str
    plan: dict[str, Any]

    def __post_init__(self) -> None:
        _nonempty(self.run, "run")


@dataclasses.dataclass(frozen=True)
class Ack(Message):
    """Cumulative: every window of ``run`` with seq <= ``seq`` is stored; ``finished``: the
    run's ``finished`` message is stored too."""

    TYPE: ClassVar[str] = "ack"
    run: str
    seq: int
    finished: bool = False

    def __post_init__(self) -> None:
        _nonempty(self.run, "run")
        _require(self.seq >= 0, "seq", "must be >= 0")


@dataclasses.dataclass(frozen=True)
class Cancel(Message):
    TYPE: ClassVar[str] = "cancel"
    run: str
    reason: str = ""

    def __post_init__(self) -> None:
        _nonempty(self.run, "run")


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Heartbeat,
        Accepted,
        Rejected,
        Status,
        Metrics,
        Finished,
        Error,
        Welcome,
        HeartbeatAck,
        Assign,
        Ack,
        Cancel,
    )
}
"""Every message class by its wire ``type``."""

WORKER_MESSAGES: tuple[type[Message], ...] = (
    Hello,
    Heartbeat,
    Accepted,
    Rejected,
    Status,
    Metrics,
    Finished,
    Error,
)
"""What a worker sends (and a gateway accepts)."""

GATEWAY_MESSAGES: tuple[type[Message], ...] = (
    Welcome,
    HeartbeatAck,
    Assign,
    Ack,
    Cancel,
    Error,
)
"""What a gateway sends (and a worker accepts)."""


def parse_message(data: str | bytes, expect: Collection[type[Message]] | None = None) -> Message:
    """Decode one WebSocket frame into a message, or raise :class:`ProtocolError`.

    The checks run in this order: size (before any decoding), UTF-8, JSON, object, ``v``,
    ``type``, fields. ``expect`` limits the accepted types (e.g. :data:`GATEWAY_MESSAGES` on the
    worker); another known type is ``unexpected_type``.
    """
    if isinstance(data, str):
        # Each character is at least one byte: a long str is over the limit without encoding.
        if len(data) > MAX_MESSAGE_BYTES:
            raise _too_large(len(data))
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError:
            raise ProtocolError(ErrorCode.NOT_UTF8, "text is not valid Unicode") from None
        if size > MAX_MESSAGE_BYTES:
            raise _too_large(size)
        text = data
    else:
        if len(data) > MAX_MESSAGE_BYTES:
            raise _too_large(len(data))
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(ErrorCode.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ProtocolError(ErrorCode.NOT_JSON, "JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, over-long integers, NaN/Infinity
        raise ProtocolError(ErrorCode.NOT_JSON, _clip(str(exc))) from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.NOT_OBJECT, f"expected a JSON object, got {_json_kind(obj)}")
    kind = obj.get("type")
    in_reply_to = kind if isinstance(kind, str) else None
    if "v" not in obj:
        raise ProtocolError(ErrorCode.BAD_FIELD, "v: missing", in_reply_to)
    version = obj["v"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise ProtocolError(
            ErrorCode.BAD_FIELD, str(_wrong("v", "an integer", version)), in_reply_to
        )
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"unsupported protocol version {version} (this side speaks {PROTOCOL_VERSION})",
            in_reply_to,
        )
    if kind is None:
        raise ProtocolError(ErrorCode.MISSING_TYPE, "type: missing")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_FIELD, str(_wrong("type", "a string", kind)))
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind!r}", kind)
    if expect is not None and cls not in expect:
        raise ProtocolError(ErrorCode.UNEXPECTED_TYPE, f"{kind!r} is not sent this way", kind)
    return cls.from_dict(obj)


def error_reply(err: ProtocolError, in_reply_to: str | None = None) -> Error:
    """The ``error`` message answering a refused frame (``in_reply_to`` defaults to err's).

    Do not send it when ``err.in_reply_to == "error"``: errors are never answered with errors.
    """
    return Error(
        code=str(err.code),
        detail=err.detail,
        in_reply_to=in_reply_to if in_reply_to is not None else err.in_reply_to,
    )


def _too_large(size: int) -> ProtocolError:
    return ProtocolError(
        ErrorCode.TOO_LARGE, f"frame of {size} bytes or more, over {MAX_MESSAGE_BYTES}"
    )


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")
