"""The truth-side helpers read what they claim to read (no root, no namespaces needed)."""

from __future__ import annotations

import struct

import pytest

from .analysis import RtcpHolds, a8_jitter, a8_trace, matched_samples
from .conftest import parse_rtp_streams

pytestmark = pytest.mark.netns

# tshark 4.0.17 -q -z rtp,streams of a 3 s call in the namespaces (trailing blanks cut).
RTP_STREAMS = """\
========================= RTP Streams ========================
   Start time      End time     Src IP addr  Port    Dest IP addr  Port       SSRC          Payload  Pkts         Lost   Min Delta(ms)  Mean Delta(ms)   Max Delta(ms)  Min Jitter(ms) Mean Jitter(ms)  Max Jitter(ms) Problems?
     0.003351      2.983380      10.251.1.2 30000      10.251.2.2 40000 0x7099CEA1            g711U   150     0 (0.0%)          18.920          20.000          21.172           0.016           0.309           0.451
     0.000000      3.499259      10.251.2.2 40000      10.251.1.2 30000 0x30955782            g711U   176     3 (1.7%)          17.307          19.996          22.099           0.049           0.269           0.538 X
==============================================================
"""  # noqa: E501


def test_parse_rtp_streams_reads_every_column() -> None:
    first, second = parse_rtp_streams(RTP_STREAMS)
    assert (first.src, first.src_port, first.dst, first.dst_port) == (
        "10.251.1.2",
        30000,
        "10.251.2.2",
        40000,
    )
    assert first.ssrc == 0x7099CEA1
    assert (first.packets, first.lost) == (150, 0)
    assert (first.min_jitter, first.mean_jitter, first.max_jitter) == (0.016, 0.309, 0.451)
    assert (second.ssrc, second.packets, second.lost) == (0x30955782, 176, 3)
    assert (second.mean_jitter, second.max_jitter) == (0.269, 0.538)


def test_a8_jitter_by_hand() -> None:
    # D2 = 20 ms * 8 - 160 = 0; D3 = 30 ms * 8 - 160 = 80 units: J = 80 / 16 = 5 = 0.625 ms.
    rows = [(0.0, 1, 0), (0.020, 2, 160), (0.050, 3, 320)]
    assert a8_trace(rows) == pytest.approx([0.0, 0.0, 0.625])
    assert a8_jitter(rows) == pytest.approx(0.625)
    # A timestamp wrap is no jump; one more on-time packet: J = 5 * 15 / 16.
    rows = [(0.0, 1, 2**32 - 160), (0.020, 2, 0), (0.050, 3, 160), (0.070, 4, 320)]
    assert a8_jitter(rows) == pytest.approx(0.625 * 15 / 16)


def record(udp: bytes, held_ms: float) -> dict[str, object]:
    return {"udp": udp.hex(" "), "held_ms": held_ms}


def test_rtcp_holds_match_an_rtt_sample_with_its_two_packets() -> None:
    ours, peer, ntp = 0x11111111, 0x22222222, 0x83AA7E80_12345678
    middle = (ntp >> 16) & 0xFFFFFFFF
    sr = struct.pack("!BBHIQIII", 0x80, 200, 6, ours, ntp, 1000, 50, 8000)
    block = struct.pack("!IIIIII", ours, 0, 100, 3, middle, 655)
    rr = struct.pack("!BBHI", 0x81, 201, 7, peer) + block
    rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, ours) + bytes(160)
    holds = RtcpHolds([record(sr, 41.5), record(rtp, 30.0), record(rr, 38.25)])
    assert holds.added(ours, middle, 655) == pytest.approx(79.75)
    assert holds.added(ours, middle, 656) is None
    assert holds.added(peer, middle, 655) is None
    side = {"ssrc": ours, "rtt_samples": [[middle, 655, 80.0]]}
    ((rtt, added),) = matched_samples(side, holds)
    assert rtt == 80.0
    assert added == pytest.approx(79.75)
