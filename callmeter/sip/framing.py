"""Message framing on stream transports (TCP, TLS): RFC 3261 section 18.3.

A stream carries messages back to back; each one's length is its header block
plus the Content-Length, which is therefore mandatory on streams.  Between
messages a peer may send keep-alives (RFC 5626 section 3.5.1): a double CRLF
"ping", answered by a single CRLF "pong".  :class:`StreamFramer` is fed bytes as
they arrive and returns complete messages (as bytes, for
:func:`callmeter.sip.message.parse_message`) and keep-alives.

It never buffers without bound: a message larger than the parse limits, a
header block that does not end, or more than ``max_buffer`` bytes pending
raise :class:`StreamFramingError`, after which the transport must drop the
connection (the stream cannot be resynchronized).
"""

from __future__ import annotations

import enum

from callmeter.sip.message import DEFAULT_LIMITS, ParseLimits, find_header_end
from callmeter.sip.uri import SipParseError

__all__ = ["DEFAULT_MAX_BUFFER", "KeepAlive", "StreamFramer", "StreamFramingError", "is_keepalive"]

DEFAULT_MAX_BUFFER = 128 * 1024

_CR = 13
_LF = 10
_MAX_LENGTH_DIGITS = 10


class StreamFramingError(SipParseError):
    """The stream cannot be framed any more: close the connection."""


class KeepAlive(enum.Enum):
    """RFC 5626 section 3.5.1 keep-alives; ``value`` is what goes on the wire."""

    PING = b"\r\n\r\n"
    PONG = b"\r\n"


def is_keepalive(datagram: bytes) -> bool:
    """True for a UDP datagram that is only CRLFs (or NULs/spaces): not a message."""
    return bool(datagram) and not datagram.strip(b"\r\n\t \x00")


def stream_content_length(head: bytes) -> int:
    """The Content-Length of a header block (start line included); framing error if none.

    Accepts the compact form ``l``; several Content-Length headers must agree.
    """
    found: int | None = None
    lines = head.split(b"\n")
    index = 1  # skip the start line
    while index < len(lines):
        line = lines[index].rstrip(b"\r")
        index += 1
        name, colon, value = line.partition(b":")
        if not colon or name.strip(b" \t").lower() not in (b"content-length", b"l"):
            continue
        parts = [value.strip(b" \t")]
        while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
            parts.append(lines[index].strip(b" \t\r"))  # folded: joined with a space
            index += 1
        text = b" ".join(parts).strip(b" \t")
        if not (0 < len(text) <= _MAX_LENGTH_DIGITS and text.isdigit()):
            raise StreamFramingError("invalid Content-Length header")
        length = int(text)
        if found is not None and found != length:
            raise StreamFramingError("conflicting Content-Length headers")
        found = length
    if found is None:
        raise StreamFramingError("missing Content-Length on a stream transport")
    return found


class StreamFramer:
    """Split a TCP/TLS byte stream into SIP messages (RFC 3261 section 18.3).

    ``feed(data)`` returns, in order, each complete message as ``bytes`` and
    each keep-alive as a :class:`KeepAlive`.  A lone CRLF is reported as a
    pong as soon as it is seen (a ping split after its first CRLF would be
    reported as two pongs; TCP delivers four bytes together in practice).
    """

    def __init__(
        self, *, max_buffer: int = DEFAULT_MAX_BUFFER, limits: ParseLimits = DEFAULT_LIMITS
    ) -> None:
        self.max_buffer = max_buffer
        self.limits = limits
        self._buffer = bytearray()
        self._scanned = 0  # bytes of the pending header block already searched
        self._needed: int | None = None  # length of the pending message, once known
        self._failure: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Add received bytes; return the messages and keep-alives now complete."""
        if self._failure is not None:
            raise StreamFramingError(self._failure)
        try:
            return self._feed(data)
        except StreamFramingError as exc:
            self._failure = exc.reason
            self._buffer.clear()
            raise

    def _feed(self, data: bytes) -> list[bytes | KeepAlive]:
        buffer = self._buffer
        buffer += data
        out: list[bytes | KeepAlive] = []
        while buffer:
            if self._needed is None:
                if buffer[0] == _CR:
                    keepalive = self._keepalive(buffer)
                    if keepalive is None:
                        break
                    out.append(keepalive)
                    continue
                needed = self._message_length(buffer)
                if needed is None:
                    break
                self._needed = needed
            if len(buffer) < self._needed:
                break
            out.append(bytes(buffer[: self._needed]))
            del buffer[: self._needed]
            self._needed = None
            self._scanned = 0
        if len(buffer) > self.max_buffer:
            raise StreamFramingError("connection buffer limit exceeded")
        return out

    @staticmethod
    def _keepalive(buffer: bytearray) -> KeepAlive | None:
        """Consume a keep-alive at the start of ``buffer``; None: need more bytes."""
        if len(buffer) < 2:
            return None
        if buffer[1] != _LF:
            raise StreamFramingError("stray CR between messages")
        if len(buffer) >= 4 and buffer[2] == _CR and buffer[3] == _LF:
            del buffer[:4]
            return KeepAlive.PING
        if len(buffer) == 3 and buffer[2] == _CR:
            return None  # maybe the first three bytes of a ping
        del buffer[:2]
        return KeepAlive.PONG

    def _message_length(self, buffer: bytearray) -> int | None:
        """Total length of the message starting the buffer; None: head incomplete."""
        head_end, body_start = find_header_end(buffer, max(0, self._scanned - 3))
        if head_end < 0:
            self._scanned = len(buffer)
            if len(buffer) > self.limits.max_message_size:
                raise StreamFramingError("header block too large")
            return None
        length = stream_content_length(bytes(buffer[:head_end]))
        total = body_start + length
        if total > self.limits.max_message_size:
            raise StreamFramingError("message too large", status=513)
        return total
