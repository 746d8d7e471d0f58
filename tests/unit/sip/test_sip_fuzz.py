"""Fuzzing: whatever a peer sends, the parser and the framer raise only SipParseError.

Random bytes, and valid messages mutated (bytes flipped, inserted, deleted,
truncated, duplicated).  Whatever parses must serialize and re-parse to the
same bytes (serialization is a fixed point), so no accepted message can make
``to_bytes`` fail later.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from callmeter.sip.framing import KeepAlive, StreamFramer
from callmeter.sip.message import ParseLimits, SipParseError, parse_message
from tests.unit.sip.strategies import messages

SAMPLE = (
    b"INVITE sip:bob@[::1]:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [::1]:5062;branch=z9hG4bKfz;rport, SIP/2.0/TCP p.example.com\r\n"
    b"Max-Forwards: 70\r\n"
    b'f: "A \\"q\\"" <sip:a%20b@example.com;lr>;tag=1\r\n'
    b"t: sip:bob@example.com\r\n"
    b"i: fuzz@example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"m: <sip:a@[::1]:5062>;expires=60, *\r\n"
    b"Subject: folded\r\n value\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\n"
)

SAMPLES = [
    SAMPLE,
    SAMPLE.replace(b"INVITE sip:bob@[::1]:5060;transport=udp", b"SIP/2.0 180 Ringing", 1).replace(
        b"t: sip:bob@example.com", b"t: <sip:bob@example.com>;tag=2"
    ),
]

SPECIAL = b'\r\n\t :;,<>"\\%@[]=?&/0'


INSERTS = [b"\r\n", b"\r\n ", b"%", b'"', b"<", b",", b";", b"\x00", b"\xff", b"[::1]", b"\r\n\r\n"]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid message with a few random edits at uniformly random places."""
    base = st.one_of(st.sampled_from(SAMPLES), messages.map(lambda m: m.to_bytes()))
    data = bytearray(draw(base))
    rnd = draw(st.randoms(use_true_random=True))
    for _ in range(rnd.randint(1, 4)):
        if not data:
            break
        position = rnd.randrange(len(data))
        action = rnd.randrange(5)
        if action == 0:
            data[position] = rnd.choice(SPECIAL)
        elif action == 1:
            del data[position : position + rnd.randint(1, 8)]
        elif action == 2:
            data[position:position] = rnd.choice(INSERTS)
        elif action == 3 and rnd.random() < 0.3:
            del data[position:]
        else:
            end = rnd.randint(position, min(len(data), position + 40))
            data[position:position] = data[position:end]
    return bytes(data)


fuzz_inputs = st.one_of(st.binary(max_size=300), mutated())


def check_parse(data: bytes, limits: ParseLimits | None = None) -> None:
    try:
        parsed = parse_message(data) if limits is None else parse_message(data, limits)
    except SipParseError as error:
        assert isinstance(error.reason, str) and error.reason
        if error.can_respond:
            assert error.partial is not None
        return
    wire = parsed.to_bytes()
    assert parse_message(wire).to_bytes() == wire
    # The typed accessors a transaction layer uses were validated by the parser.
    parsed.headers.top_via()
    parsed.headers.cseq()
    parsed.headers.from_addr()
    parsed.headers.to_addr()
    parsed.headers.call_id()


@settings(max_examples=200)
@given(fuzz_inputs)
def test_parse_message_raises_only_sip_parse_error(data: bytes) -> None:
    check_parse(data)


@settings(max_examples=60)
@given(fuzz_inputs)
def test_parse_message_with_tight_limits(data: bytes) -> None:
    check_parse(data, ParseLimits(max_message_size=400, max_headers=6, max_line_length=60))


@settings(max_examples=60)
@given(st.lists(fuzz_inputs, min_size=1, max_size=4), st.lists(st.integers(1, 64), min_size=1))
def test_stream_framer_raises_only_sip_parse_error(pieces: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(pieces)
    framer = StreamFramer(max_buffer=2048, limits=ParseLimits(max_message_size=1024))
    position = 0
    index = 0
    try:
        while position < len(stream):
            size = cuts[index % len(cuts)]
            index += 1
            for item in framer.feed(stream[position : position + size]):
                if not isinstance(item, KeepAlive):
                    check_parse(item)
            position += size
    except SipParseError:
        return
    assert framer.buffered <= 2048
