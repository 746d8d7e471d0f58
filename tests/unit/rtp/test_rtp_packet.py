"""RTP header packing and parsing (RFC 3550 section 5.1)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.rtp.packet import (
    PacketWriter,
    RtpError,
    RtpExtension,
    RtpHeader,
    build_packet,
    is_rtcp,
    parse,
    peek,
)

# A packet written out by hand from RFC 3550 figure 1:
#   0x80 = V=2, P=0, X=0, CC=0; 0xE0 = M=1, PT=96 (0x60 | 0x80)
#   seq 0x1234, ts 0xDEADBEEF, SSRC 0x01020304, payload b"abc"
HAND_PACKET = bytes.fromhex("80e01234deadbeef01020304") + b"abc"


def test_pack_matches_hand_written_bytes() -> None:
    header = RtpHeader(
        payload_type=96, sequence=0x1234, timestamp=0xDEADBEEF, ssrc=0x01020304, marker=True
    )
    assert header.pack(b"abc") == HAND_PACKET
    assert header.size == 12


def test_parse_hand_written_bytes() -> None:
    header, payload = parse(HAND_PACKET)
    assert header == RtpHeader(96, 0x1234, 0xDEADBEEF, 0x01020304, marker=True)
    assert payload == b"abc"


def test_csrc_extension_and_padding_are_skipped_correctly() -> None:
    # V=2 P=1 X=1 CC=2 -> 0x80|0x20|0x10|2 = 0xB2; M=0 PT=0
    # two CSRCs, extension profile 0xBEDE with 1 word (4 octets), payload "hi",
    # 3 octets of padding (the last one says 3).
    data = (
        bytes.fromhex("b2000001 00000002 00000003")
        + bytes.fromhex("0000000a 0000000b")
        + bytes.fromhex("bede0001 11223344")
        + b"hi"
        + b"\x00\x00\x03"
    )
    header, payload = parse(data)
    assert header.csrcs == (10, 11)
    assert header.extension == RtpExtension(0xBEDE, bytes.fromhex("11223344"))
    assert header.padding == 3
    assert payload == b"hi"
    assert header.size == 12 + 8 + 8
    assert header.pack(b"hi") == data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x80\x00\x00", "too short"),
        (bytes.fromhex("400000010000000200000003"), "version 1"),
        (bytes.fromhex("830000010000000200000003") + b"\x00" * 8, "CC=3 needs 12 more octets"),
        (bytes.fromhex("900000010000000200000003") + b"\xbe\xde", "extension header cut"),
        (bytes.fromhex("90000001000000020000000300010002") + b"\x00" * 4, "ext length"),
        (bytes.fromhex("a00000010000000200000003") + b"\x00", "padding count 0"),
        (bytes.fromhex("a00000010000000200000003") + b"\x09", "padding past header"),
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes, why: str) -> None:
    with pytest.raises(RtpError):
        parse(data)
    assert issubclass(RtpError, ValueError), why


def test_peek_reads_fixed_header() -> None:
    assert peek(HAND_PACKET) == (0x1234, 0xDEADBEEF, 0x01020304, 96, True)
    with pytest.raises(RtpError):
        peek(HAND_PACKET[:11])
    with pytest.raises(RtpError):
        peek(b"\x40" + HAND_PACKET[1:])


@pytest.mark.parametrize("bad", [{"payload_type": 128}, {"sequence": 65536}, {"ssrc": -1}])
def test_header_rejects_out_of_range_fields(bad: dict[str, int]) -> None:
    fields = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0, **bad}
    with pytest.raises(ValueError):
        RtpHeader(fields["payload_type"], fields["sequence"], fields["timestamp"], fields["ssrc"])


def test_is_rtcp_demultiplexes_per_rfc5761() -> None:
    assert is_rtcp(bytes([0x80, 200]) + bytes(6))  # SR
    assert is_rtcp(bytes([0x81, 201]) + bytes(30))  # RR
    assert not is_rtcp(HAND_PACKET)  # marker + PT 96 = 224
    assert not is_rtcp(bytes([0x80, 0]) + bytes(10))  # PCMU


headers = st.builds(
    RtpHeader,
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(
        RtpExtension,
        st.integers(0, 0xFFFF),
        st.binary(max_size=16).map(lambda b: b + bytes(-len(b) % 4)),
    ),
    padding=st.integers(0, 255),
)


@given(headers, st.binary(max_size=64))
def test_pack_parse_round_trip(header: RtpHeader, payload: bytes) -> None:
    data = header.pack(payload)
    assert parse(data) == (header, payload)
    seq, ts, ssrc, pt, marker = peek(data)
    assert (seq, ts, ssrc, pt, marker) == (
        header.sequence,
        header.timestamp,
        header.ssrc,
        header.payload_type,
        header.marker,
    )


@given(
    st.integers(0, 127),
    st.booleans(),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.binary(max_size=200),
)
def test_fast_builders_equal_the_full_header(
    pt: int, marker: bool, seq: int, ts: int, ssrc: int, payload: bytes
) -> None:
    expected = RtpHeader(pt, seq, ts, ssrc, marker=marker).pack(payload)
    assert build_packet(payload, pt, marker, seq, ts, ssrc) == expected
    writer = PacketWriter(max_payload=200)
    assert bytes(writer.write(payload, pt, marker, seq, ts, ssrc)) == expected


def test_packet_writer_reuses_its_buffer_and_checks_size() -> None:
    writer = PacketWriter(max_payload=4)
    first = writer.write(b"\x01\x02", 0, False, 1, 2, 3)
    assert bytes(first) == build_packet(b"\x01\x02", 0, False, 1, 2, 3)
    writer.write(b"\x09\x09", 8, True, 5, 6, 7)
    assert bytes(first[12:]) == b"\x09\x09"  # same buffer: valid until the next write only
    with pytest.raises(ValueError):
        writer.write(b"12345", 0, False, 1, 2, 3)


@given(st.binary(max_size=40))
def test_parse_never_raises_anything_but_rtp_error(data: bytes) -> None:
    with contextlib.suppress(RtpError):
        parse(data)


def test_build_packet_rejects_out_of_range_seq() -> None:
    with pytest.raises(struct.error):
        build_packet(b"", 0, False, 65536, 0, 0)
