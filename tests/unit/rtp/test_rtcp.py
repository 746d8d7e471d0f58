"""RTCP packets and compound packets (RFC 3550 section 6), NTP time and RTT."""

from __future__ import annotations

import contextlib
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.rtp.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    build_compound,
    dlsr_from_seconds,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
    randomized_interval,
    report_blocks,
    rtcp_interval,
    rtt_seconds,
    unix_from_ntp,
)

# Report block by hand (6.4.1): SSRC 0x11223344, fraction lost 0x40 (64/256 = 25%),
# cumulative lost -1 (24-bit two's complement 0xFFFFFF), extended highest seq 0x00010005
# (one wrap, seq 5), jitter 0x20, LSR 0xAABBCCDD, DLSR 0x00010000 (1 s in 1/65536 s).
BLOCK = ReportBlock(0x11223344, 0x40, -1, 0x00010005, 0x20, 0xAABBCCDD, 0x00010000)
BLOCK_BYTES = bytes.fromhex("11223344 40ffffff 00010005 00000020 aabbccdd 00010000")

# RR: V=2 P=0 RC=1 -> 0x81, PT 201 = 0xc9, 32 octets = 8 words -> length field 7.
RR_BYTES = bytes.fromhex("81c90007 cafebabe") + BLOCK_BYTES

# SR: V=2 RC=0 -> 0x80, PT 200 = 0xc8, 28 octets = 7 words -> length 6; NTP 0x83AA7E81_80000000
# (Unix 1.5 s), RTP ts 8000, 50 packets, 8000 octets.
SR_BYTES = bytes.fromhex("80c80006 cafebabe 83aa7e81 80000000 00001f40 00000032 00001f40")

# SDES, one chunk: SSRC + CNAME item (type 1, length 9, "user@host") = 4 + 11 = 15 octets,
# one null octet ends the items and pads to 16; 20 octets = 5 words -> length 4.
SDES_BYTES = bytes.fromhex("81ca0004 cafebabe 0109") + b"user@host" + b"\x00"

# BYE: SC=1, SSRC, reason length 3 "bye" (4 octets, no padding): 12 octets -> length 2.
BYE_BYTES = bytes.fromhex("81cb0002 cafebabe 03") + b"bye"


def test_report_block_bytes_by_hand() -> None:
    assert BLOCK.pack() == BLOCK_BYTES
    assert ReportBlock.unpack_from(BLOCK_BYTES, 0) == BLOCK


def test_each_packet_type_matches_hand_written_bytes() -> None:
    assert ReceiverReport(0xCAFEBABE, (BLOCK,)).pack() == RR_BYTES
    sr = SenderReport(0xCAFEBABE, ntp_from_unix(1.5), 8000, 50, 8000)
    assert sr.pack() == SR_BYTES
    sdes = SourceDescription((SdesChunk(0xCAFEBABE, ((1, b"user@host"),)),))
    assert sdes.pack() == SDES_BYTES
    assert Bye((0xCAFEBABE,), b"bye").pack() == BYE_BYTES


def test_compound_order_sr_then_sdes_then_bye() -> None:
    sr = SenderReport(0xCAFEBABE, ntp_from_unix(1.5), 8000, 50, 8000)
    data = build_compound(sr, "user@host", Bye((0xCAFEBABE,), b"bye"))
    assert data == SR_BYTES + SDES_BYTES + BYE_BYTES
    packets = parse_compound(data)
    assert packets == [
        sr,
        SourceDescription((SdesChunk(0xCAFEBABE, ((1, b"user@host"),)),)),
        Bye((0xCAFEBABE,), b"bye"),
    ]
    sdes = packets[1]
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].cname == b"user@host"


def test_sdes_chunks_are_aligned_to_32_bits() -> None:
    # Chunk 1: SSRC 1, CNAME "ab": 4 + 2 + 2 = 8 octets, a null octet -> 9, padded to 12.
    # Chunk 2: SSRC 2, CNAME "cd", same layout. SC=2: 0x82, 28 octets -> length 6.
    data = (
        bytes.fromhex("82ca0006 00000001 0102")
        + b"ab"
        + bytes(4)
        + bytes.fromhex("00000002 0102")
        + b"cd"
        + bytes(4)
    )
    sdes = SourceDescription((SdesChunk(1, ((1, b"ab"),)), SdesChunk(2, ((1, b"cd"),))))
    assert sdes.pack() == data
    assert parse_compound(data) == [sdes]


def test_more_than_31_blocks_continue_in_extra_rr_packets() -> None:
    blocks = [BLOCK] * 40
    rr = ReceiverReport(7, tuple(blocks[:31]))
    packets = parse_compound(build_compound(rr, "c", extra_blocks=blocks[31:]))
    assert [type(p) for p in packets] == [ReceiverReport, ReceiverReport, SourceDescription]
    assert len(list(report_blocks(packets))) == 40
    with pytest.raises(ValueError):
        ReceiverReport(7, tuple(blocks[:32]))


def test_unknown_types_app_and_xr_are_skipped() -> None:
    # APP (PT 204): header, SSRC, name "TEST" -> 12 octets, length 2.
    app = bytes.fromhex("80cc0002 cafebabe") + b"TEST"
    # XR (PT 207) with one empty word of content: length 1.
    xr = bytes.fromhex("80cf0001 cafebabe")
    packets = parse_compound(RR_BYTES + app + xr + SDES_BYTES)
    assert [type(p) for p in packets] == [ReceiverReport, SourceDescription]


def test_padding_allowed_on_last_packet_only() -> None:
    # BYE with P=1 and 4 octets of padding (count 4 in the last octet): 12 octets, length 2.
    padded_bye = bytes.fromhex("a1cb0002 cafebabe 00000004")
    assert parse_compound(RR_BYTES + padded_bye)[-1] == Bye((0xCAFEBABE,))
    with pytest.raises(RtcpError):
        parse_compound(RR_BYTES + padded_bye + SDES_BYTES)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x81\xc9", "shorter than a header"),
        (bytes([0x41]) + RR_BYTES[1:], "version 1"),
        (RR_BYTES[:-4], "length field larger than the datagram"),
        (RR_BYTES + b"\x80", "trailing partial header"),
        (bytes.fromhex("82c90007 cafebabe") + BLOCK_BYTES, "RC=2 but room for one block"),
        (bytes.fromhex("80c80001 cafebabe"), "SR without sender info"),
        (bytes.fromhex("81ca0002 cafebabe 0109ffff"), "SDES item longer than the packet"),
        (bytes.fromhex("81ca0002 cafebabe 01017878"), "SDES chunk without a null item"),
        (bytes.fromhex("82cb0001 cafebabe"), "BYE SC=2 with one SSRC"),
        (bytes.fromhex("81cb0002 cafebabe 09000000"), "BYE reason past the end"),
        (bytes.fromhex("a1cb0002 cafebabe 00000009"), "padding count past the packet"),
        (bytes.fromhex("a1cb0002 cafebabe 00000000"), "padding count 0"),
    ],
)
def test_malformed_compounds_raise(data: bytes, why: str) -> None:
    with pytest.raises(RtcpError):
        parse_compound(data)


def test_ntp_conversions_by_hand() -> None:
    # 2208988800 s from 1900 to 1970 = 0x83AA7E80; 1.5 s -> 0x83AA7E81 . 0x80000000.
    assert ntp_from_unix(0.0) == 0x83AA7E80_00000000
    assert ntp_from_unix(1.5) == 0x83AA7E81_80000000
    assert ntp_middle32(0x83AA7E81_80000000) == 0x7E818000
    assert unix_from_ntp(0x83AA7E81_80000000) == 1.5
    assert dlsr_from_seconds(5.25) == 0x00054000
    assert dlsr_from_seconds(-1.0) == 0


def test_rtt_worked_example_of_rfc3550_section_6_4_1() -> None:
    # RFC 3550 figure 2: A = 0xb710:8000 (46864.5 s), LSR = 0xb705:2000 (46853.125 s),
    # DLSR = 0x0005:4000 (5.25 s) -> RTT = 0x0006:2000 = 6.125 s.
    # An arrival whose NTP seconds end in 0xb710 (46864) with fraction .5: NTP seconds mod
    # 65536 = (unix + 0x83AA7E80) mod 65536 = unix mod 65536 + 0x7E80 (32384), so
    # unix mod 65536 = 46864.5 - 32384 = 14480.5; take 26000 * 65536 + 14480.5.
    arrival = 26000 * 65536 + 14480.5
    assert ntp_middle32(ntp_from_unix(arrival)) == 0xB7108000
    assert rtt_seconds(0xB7052000, 0x00054000, arrival) == 6.125


def test_rtt_edge_cases() -> None:
    arrival = 26000 * 65536 + 14480.5
    # LSR 0: no SR received yet, whatever A - DLSR would give (A = 0x0000:8000 here).
    wrap = 26000 * 65536 + (65536 - 32384) + 0.5
    assert rtt_seconds(0, 0x4000, wrap) is None
    # DLSR 1/65536 s too long (rounding on a near-zero round trip): 0, not negative.
    assert rtt_seconds(0xB7108000, 1, arrival) == 0.0
    # DLSR 5 s longer than the time since our SR: a bogus report, no sample.
    assert rtt_seconds(0xB7108000, 0x00050000, arrival) is None
    # Across the 16-bit seconds wrap of the middle 32 bits: A = 0x0000:8000, LSR =
    # 0xffff:8000 (1 s earlier), DLSR 0.25 s -> RTT 0.75 s.
    assert ntp_middle32(ntp_from_unix(wrap)) == 0x00008000
    assert rtt_seconds(0xFFFF8000, 0x4000, wrap) == 0.75


@given(
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 255),
    st.integers(-0x800000, 0x7FFFFF),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0xFFFFFFFF),
)
def test_report_block_round_trip(ssrc: int, fraction: int, lost: int, ext: int, j: int) -> None:
    block = ReportBlock(ssrc, fraction, lost, ext, j, j ^ 0x5555, ext ^ 0xAAAA)
    assert ReportBlock.unpack_from(block.pack(), 0) == block


@given(
    st.lists(st.integers(0, 0xFFFFFFFF), min_size=0, max_size=31),
    st.binary(max_size=255),
    st.text(max_size=60),
)
def test_compound_round_trip(ssrcs: list[int], reason: bytes, cname: str) -> None:
    blocks = tuple(ReportBlock(s, 1, -5, s, 3) for s in ssrcs)
    rr = ReceiverReport(1, blocks)
    bye = Bye(tuple(ssrcs), reason)
    data = build_compound(rr, cname, bye)
    assert len(data) % 4 == 0
    packets = parse_compound(data)
    assert packets[0] == rr
    assert packets[2] == bye
    sdes = packets[1]
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].cname == cname.encode()


@given(st.binary(max_size=64))
def test_parse_never_raises_anything_but_rtcp_error(data: bytes) -> None:
    with contextlib.suppress(RtcpError):
        parse_compound(data)


def test_randomized_interval_spans_half_to_one_and_a_half() -> None:
    rng = random.Random(7)
    draws = [randomized_interval(5.0, rng) for _ in range(2000)]
    assert all(2.5 <= d < 7.5 for d in draws)
    assert min(draws) < 2.6 and max(draws) > 7.4
    assert [randomized_interval(5.0, random.Random(1)) for _ in range(2)] == [
        5.0 * (random.Random(1).random() + 0.5)
    ] * 2


def test_rtcp_interval_appendix_a7() -> None:
    # Two members, both senders: 2 > 0.25 * 2, so no sender/receiver split; 100-octet
    # reports at 400 octets/s give 0.5 s, below the 5 s minimum -> 5 s, times
    # (random + 0.5), divided by e - 3/2.
    got = rtcp_interval(2, 2, 400.0, True, 100.0, False, random.Random(3))
    assert got == pytest.approx(5.0 * (random.Random(3).random() + 0.5) / (math.e - 1.5))
    # Initial report: minimum halved to 2.5 s.
    first = rtcp_interval(2, 2, 400.0, True, 100.0, True, random.Random(3))
    assert first == pytest.approx(got / 2)
    # 1000 members, 1 sender (we): senders get 25% of 400 -> 100 octets/s shared by 1:
    # 100 * 1 / 100 = 1 s -> 5 s minimum. A receiver: 75% = 300 octets/s for 999 members:
    # 100 * 999 / 300 = 333 s.
    receiver = rtcp_interval(1000, 1, 400.0, False, 100.0, False, random.Random(3))
    factor = (random.Random(3).random() + 0.5) / (math.e - 1.5)
    assert receiver == pytest.approx(333.0 * factor)
