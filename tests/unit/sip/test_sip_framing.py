"""Stream framing for TCP/TLS (RFC 3261 18.3) and CRLF keep-alives (RFC 5626 3.5.1)."""

from __future__ import annotations

import pytest

from callmeter.sip.framing import (
    KeepAlive,
    StreamFramer,
    StreamFramingError,
    is_keepalive,
    stream_content_length,
)
from callmeter.sip.message import ParseLimits, SipRequest, SipResponse, parse_message
from callmeter.sip.uri import SipParseError


def message(body: bytes = b"", *, length: str | None = None, method: str = "OPTIONS") -> bytes:
    content_length = str(len(body)) if length is None else length
    return (
        f"{method} sip:bob@[::1]:5060;transport=tcp SIP/2.0\r\n"
        "Via: SIP/2.0/TCP [::1]:40000;branch=z9hG4bKframe;rport\r\n"
        "To: <sip:bob@[::1]>\r\n"
        "From: <sip:alice@[::1]>;tag=1\r\n"
        "Call-ID: frame@::1\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Content-Length: {content_length}\r\n"
        "\r\n"
    ).encode() + body


def test_pipelined_messages_in_one_segment() -> None:
    first, second = message(b"hello"), message(b"", method="BYE")
    framer = StreamFramer()
    assert framer.feed(first + second) == [first, second]
    assert framer.buffered == 0
    parsed = parse_message(second)
    assert isinstance(parsed, SipRequest) and parsed.method == "BYE"


def test_byte_by_byte_delivery() -> None:
    data = message(b"v=0\r\n") + message(b"x")
    framer = StreamFramer()
    out: list[bytes | KeepAlive] = []
    for index in range(len(data)):
        out.extend(framer.feed(data[index : index + 1]))
    assert out == [message(b"v=0\r\n"), message(b"x")]


def test_body_containing_blank_lines_is_framed_by_content_length() -> None:
    body = b"\r\n\r\nINVITE sip:x SIP/2.0\r\n\r\n"
    framer = StreamFramer()
    assert framer.feed(message(body)[:-3]) == []
    assert framer.feed(message(body)[-3:]) == [message(body)]


def test_ping_and_pong_between_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [KeepAlive.PING]
    assert framer.feed(b"\r\n") == [KeepAlive.PONG]
    assert framer.feed(b"\r\n\r\n" + message() + b"\r\n") == [
        KeepAlive.PING,
        message(),
        KeepAlive.PONG,
    ]
    assert KeepAlive.PONG.value == b"\r\n"


def test_ping_split_after_three_bytes_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == [KeepAlive.PING]
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n" + message()) == [KeepAlive.PONG, message()]


def test_response_frames() -> None:
    response = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKx\r\nTo: <sip:a@b>;tag=2\r\n"
        b"From: <sip:c@d>;tag=1\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\nl: 2\r\n\r\nok"
    )
    (frame,) = StreamFramer().feed(response)
    parsed = parse_message(frame)  # type: ignore[arg-type]
    assert isinstance(parsed, SipResponse) and parsed.body == b"ok"


def test_missing_content_length_is_fatal_on_streams() -> None:
    data = message().replace(b"Content-Length: 0\r\n", b"")
    framer = StreamFramer()
    with pytest.raises(StreamFramingError, match="missing Content-Length"):
        framer.feed(data)
    # The stream cannot be resynchronized: every later feed fails too.
    with pytest.raises(StreamFramingError):
        framer.feed(message())


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"X sip:a SIP/2.0\r\nContent-Length: -1", "invalid Content-Length header"),
        (b"X sip:a SIP/2.0\r\nContent-Length: 1\r\nl: 2", "conflicting Content-Length headers"),
        (b"X sip:a SIP/2.0\r\nContent-Length: 1\r\n 2", "invalid Content-Length header"),
        (b"X sip:a SIP/2.0\r\nX-Length: 1", "missing Content-Length on a stream transport"),
    ],
)
def test_content_length_rules(head: bytes, reason: str) -> None:
    with pytest.raises(StreamFramingError, match=reason):
        stream_content_length(head)


def test_content_length_compact_and_folded_consistently() -> None:
    assert stream_content_length(b"X sip:a SIP/2.0\r\nl : 12\r\nContent-Length:12") == 12
    assert stream_content_length(b"X sip:a SIP/2.0\nCONTENT-LENGTH:\n 7\r") == 7


def test_oversized_message_is_refused_before_buffering_it() -> None:
    framer = StreamFramer()
    with pytest.raises(StreamFramingError) as info:
        framer.feed(message(length="70000"))
    assert info.value.status == 513
    assert framer.buffered == 0


def test_endless_header_block_is_refused() -> None:
    framer = StreamFramer(limits=ParseLimits(max_message_size=1000))
    framer.feed(b"INVITE sip:a SIP/2.0\r\n")
    with pytest.raises(StreamFramingError, match="header block too large"):
        for _ in range(100):
            framer.feed(b"X-Junk: " + b"j" * 30 + b"\r\n")


def test_connection_buffer_limit() -> None:
    # A body the limits allow but the connection buffer does not.
    framer = StreamFramer(max_buffer=500)
    with pytest.raises(StreamFramingError, match="connection buffer limit exceeded"):
        framer.feed(message(length="1000") + b"x" * 600)


def test_stray_cr_between_messages() -> None:
    with pytest.raises(StreamFramingError, match="stray CR"):
        StreamFramer().feed(b"\rX")


def test_framing_errors_are_parse_errors() -> None:
    assert issubclass(StreamFramingError, SipParseError)
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"garbage\r\n\r\n")


def test_udp_keepalive_detection() -> None:
    assert is_keepalive(b"\r\n\r\n")
    assert is_keepalive(b"\r\n")
    assert not is_keepalive(b"")
    assert not is_keepalive(message())
