"""RtpStream without sockets: header rewriting, pacing, skip-ahead, statistics and RTCP."""

from __future__ import annotations

import random
import re
import struct
from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.media.prepared import PreparedMedia, default_audio, prepare_g711
from callmeter.rtp.pacer import Pacer
from callmeter.rtp.packet import build_packet, parse
from callmeter.rtp.rtcp import (
    PT_BYE,
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    build_compound,
    dlsr_from_seconds,
    ntp_from_unix,
    ntp_middle32,
    parse_compound,
)
from callmeter.rtp.stream import RtpStream, _Sockets, one_way_delay_ms
from callmeter.sip.sdp import Direction, NegotiatedStream

PEER = ("192.0.2.7", 40000)


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes, Any]] = []
        self.clock: Clock | None = None
        self.closed = False
        self.peer: Any = None

    def connect(self, addr: Any) -> None:
        self.peer = addr

    def send(self, data: bytes) -> int:
        return self.sendto(data, self.peer)

    def sendto(self, data: bytes, addr: Any) -> int:
        assert self.clock is not None
        self.sent.append((self.clock.seconds(), bytes(data), addr))
        return len(data)

    def close(self) -> None:
        self.closed = True


class FakeMux:
    def add(self, sock: Any, handler: Any) -> None: ...

    def remove(self, sock: Any) -> None: ...


def negotiated(direction: Direction = Direction.SENDRECV, pt: int = 0) -> NegotiatedStream:
    return NegotiatedStream(
        index=0,
        kind="audio",
        remote_address=PEER[0],
        remote_rtp_port=PEER[1],
        remote_rtcp_port=PEER[1] + 1,
        remote_rtcp_address=PEER[0],
        local_port=30000,
        codec="PCMU",
        payload_type=pt,
        local_payload_type=0,
        clock_rate=8000,
        channels=None,
        ptime=20,
        fmtp=None,
        telephone_event_pt=None,
        local_telephone_event_pt=None,
        direction=direction,
    )


def make(
    media: PreparedMedia | None = None, direction: Direction = Direction.SENDRECV
) -> tuple[Clock, Pacer, RtpStream, FakeSocket, FakeSocket]:
    clock = Clock()
    clock.advance(1000.0)
    pacer = Pacer(clock)
    stream = RtpStream(clock, pacer, FakeMux(), rng=random.Random(3), cname="me@test")  # type: ignore[arg-type]
    rtp, rtcp = FakeSocket(), FakeSocket()
    rtp.clock = rtcp.clock = clock
    stream._sockets = _Sockets(rtp, FakeSocket(), rtcp)  # type: ignore[arg-type]
    stream._rtcp_sendto = rtcp.sendto
    stream.configure(negotiated(direction), media or default_audio("PCMU", 1.0))
    return clock, pacer, stream, rtp, rtcp


def advance(clock: Clock, seconds: float, step: float = 0.001) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def test_replays_prepared_payloads_with_our_seq_ts_ssrc() -> None:
    media = prepare_g711("PCMU", [0] * 160 + [1000] * 160 + [-1000] * 160)
    clock, pacer, stream, rtp, _ = make(media)
    stream.start()
    advance(clock, 0.1)
    packets = [parse(data) for _, data, _ in rtp.sent]
    assert len(packets) == 5  # 0, 20, 40, 60, 80 ms
    first = packets[0][0]
    for k, (header, payload) in enumerate(packets):
        assert header.ssrc == stream.ssrc
        assert header.payload_type == 0
        assert header.sequence == (first.sequence + k) & 0xFFFF
        assert header.timestamp == (first.timestamp + 160 * k) & 0xFFFFFFFF
        assert payload == media.payloads[k % 3]  # the loop of 3 packets repeats
        assert header.marker == (k % 3 == 0)
    assert all(addr == PEER for _, _, addr in rtp.sent)
    # Each packet left within one tick of start + n * 20 ms.
    for k, (when, _, _) in enumerate(rtp.sent):
        assert 0 <= when - (1000.0 + 0.02 * k) <= 0.001 + 1e-9
    assert stream.packets_sent == 5 and stream.octets_sent == 5 * 160
    snap = stream.snapshot()
    assert snap.packets_sent == 5 and snap.bytes_sent == 5 * 172


def test_stall_beyond_max_late_skips_ahead_without_a_burst() -> None:
    clock, pacer, stream, rtp, _ = make()
    stream.start()
    advance(clock, 0.05)  # 0, 20, 40 ms
    assert len(rtp.sent) == 3
    clock.advance(0.5)  # the process stalled for half a second
    burst = [parse(d)[0] for t, d, _ in rtp.sent if t == clock.seconds()]
    assert len(burst) == 1  # only the newest overdue packet, not 25 at once
    before = parse(rtp.sent[2][1])[0]
    assert burst[0].sequence == (before.sequence + 1) & 0xFFFF  # no fake loss
    # 60 ... 540 ms were overdue: 24 skipped, the 540 ms one sent; media time went on.
    assert burst[0].timestamp - before.timestamp == 160 * 25
    assert stream.skipped == 24
    assert pacer.lateness.skipped == 24


def test_lateness_is_recorded_per_packet() -> None:
    clock, pacer, stream, rtp, _ = make()
    stream.start()
    clock.advance(0.0)
    clock.advance(0.0345)  # the 20 ms packet goes 14.5 ms late
    counts = pacer.lateness.counts
    assert counts[0] == 1
    assert sum(counts[288:292]) == 1  # 14.5 ms in 50 us bins
    assert sum(counts) == 2


def test_recvonly_does_not_send_but_reports() -> None:
    clock, pacer, stream, rtp, rtcp = make(direction=Direction.RECVONLY)
    stream.start()
    advance(clock, 6.0, step=0.01)
    assert rtp.sent == []
    assert len(pacer) == 0
    packets = parse_compound(rtcp.sent[0][1])
    assert isinstance(packets[0], ReceiverReport)


def test_receive_statistics_and_sendonly_ignores_rtp() -> None:
    clock, pacer, stream, _, _ = make()
    for seq in (10, 11, 13, 12, 13):
        data = build_packet(bytes(160), 0, False, seq, seq * 160, 0xABCD)
        stream.receiver.datagram_received(data, PEER, 1000.0 + seq * 0.02)
    stream.receiver.datagram_received(b"\x00" * 20, PEER, 1000.5)  # not RTP version 2
    snap = stream.snapshot()
    assert snap.packets_received == 5
    assert snap.bytes_received == 5 * 172
    assert snap.expected == 4 and snap.lost == 0
    assert snap.out_of_order == 1 and snap.duplicates == 1
    assert stream.receiver.invalid == 1
    stream.configure(negotiated(Direction.SENDONLY), default_audio("PCMU", 1.0))
    stream.receiver.datagram_received(build_packet(b"x", 0, False, 14, 0, 0xABCD), PEER, 1001.0)
    assert stream.snapshot().packets_received == 5
    assert stream.receiver.ignored == 1


def test_rtt_from_a_report_block_about_our_sender_report() -> None:
    clock, pacer, stream, rtp, rtcp = make()
    stream.start()
    advance(clock, 3.0, step=0.01)  # the first report goes out after 1.25-3.75 s
    sr = parse_compound(rtcp.sent[0][1])[0]
    assert isinstance(sr, SenderReport)
    assert sr.ssrc == stream.ssrc and sr.packet_count > 0
    sent_at = rtcp.sent[0][0]
    # The peer holds it 0.25 s and its report arrives 0.05 s later: RTT 0.05 s.
    advance(clock, 0.4, step=0.01)
    arrival = clock.seconds()
    block = ReportBlock(
        stream.ssrc, 0, 0, 1, 0, ntp_middle32(sr.ntp_timestamp), dlsr_from_seconds(0.25)
    )
    assert sent_at + 0.3 <= arrival
    rr = build_compound(ReceiverReport(0x1234, (block,)), "peer")
    stream.rtcp_received_datagram(rr, PEER, sent_at + 0.3)
    snap = stream.snapshot()
    assert snap.rtt_ms == pytest.approx(50.0, abs=0.1)
    assert snap.rtcp_received == 1


def test_peer_sender_report_feeds_our_lsr_and_dlsr() -> None:
    clock, pacer, stream, rtp, rtcp = make()
    stream.start()
    for seq in range(5):
        data = build_packet(bytes(160), 0, False, seq, seq * 160, 0x55)
        stream.receiver.datagram_received(data, PEER, clock.seconds() + seq * 0.02)
    peer_sr = SenderReport(0x55, ntp_from_unix(999.0), 800, 5, 800)
    stream.rtcp_received_datagram(build_compound(peer_sr, "peer"), PEER, 1000.0)
    compound = stream.rtcp_compound(1000.5)
    report = parse_compound(compound)[0]
    assert isinstance(report, SenderReport | ReceiverReport)
    (block,) = report.reports
    assert block.ssrc == 0x55
    assert block.lsr == ntp_middle32(ntp_from_unix(999.0))
    assert block.dlsr == dlsr_from_seconds(0.5)
    assert block.highest_seq == 4


def test_stop_sends_bye_closes_sockets_and_is_idempotent() -> None:
    clock, pacer, stream, rtp, rtcp = make()
    stream.start()
    advance(clock, 0.05)
    stream.stop()
    assert len(pacer) == 0
    last = rtcp.sent[-1][1]
    assert last[-8 + 1] == PT_BYE  # the BYE closes the compound (6.1)
    (bye,) = [p for p in parse_compound(last) if isinstance(p, Bye)]
    assert bye.ssrcs == (stream.ssrc,)
    assert rtp.closed and rtcp.closed
    sent = len(rtp.sent)
    advance(clock, 0.1)
    assert len(rtp.sent) == sent
    assert stream.stop() is stream.closed  # idempotent
    assert stream.closed.called


def test_a_new_peer_address_reconnects_the_rtp_socket() -> None:
    clock, pacer, stream, rtp, _ = make()
    stream.start()
    advance(clock, 0.03)
    assert {addr for _, _, addr in rtp.sent} == {PEER}
    moved = negotiated()
    object.__setattr__(moved, "remote_address", "192.0.2.99")
    object.__setattr__(moved, "remote_rtp_port", 41000)
    stream.configure(moved, default_audio("PCMU", 1.0))  # a re-INVITE moved the media
    sent = len(rtp.sent)
    advance(clock, 0.05)
    assert len(rtp.sent) > sent
    assert {addr for _, _, addr in rtp.sent[sent:]} == {("192.0.2.99", 41000)}


def test_a_peer_we_cannot_connect_to_is_a_value_error() -> None:
    clock, pacer, stream, rtp, _ = make()

    def refuse(addr: Any) -> None:
        raise OSError(101, "Network is unreachable")

    rtp.connect = refuse  # type: ignore[method-assign]
    expected = re.escape("cannot send RTP to 192.0.2.7:40000: Network is unreachable")
    with pytest.raises(ValueError, match=expected):
        stream.configure(negotiated(), default_audio("PCMU", 0.2))


def test_only_sources_other_than_the_sdp_peer_are_strays() -> None:
    clock, pacer, stream, _, _ = make()
    stray = stream.receiver.datagram_received
    stray(build_packet(b"x", 0, False, 1, 160, 0xABCD), PEER, 1000.0)
    assert stream.stray_packets == 0  # the peer itself, on the second socket
    for seq in (1, 2):
        stray(build_packet(b"x", 0, False, seq, 160, 0x5EED), ("192.0.2.8", 5000), 1000.0)
    assert stream.stray_packets == 2
    assert stream._strays == {0x5EED}
    snapshot = stream.snapshot()
    assert snapshot.packets_received == 3  # strays are counted like the others
    assert snapshot.stray_packets == 2


def test_configure_rejects_unusable_descriptions() -> None:
    clock, pacer, stream, _, _ = make()
    bad = negotiated()
    object.__setattr__(bad, "remote_address", "sip.example.com")
    with pytest.raises(ValueError, match="not an IP address"):
        stream.configure(bad, default_audio("PCMU", 0.2))
    with pytest.raises(ValueError, match="prepared media is PCMA"):
        stream.configure(negotiated(), default_audio("PCMA", 0.2))
    with pytest.raises(ValueError, match="no prepared media"):
        stream.configure(negotiated(), None)


def test_one_way_delay_estimate() -> None:
    assert one_way_delay_ms(None, 0.0, 20.0) == 40.0
    assert one_way_delay_ms(100.0, 15.0, 20.0) == 50.0 + 20.0 + 30.0


def test_mos_of_a_clean_g711_stream() -> None:
    clock, pacer, stream, _, _ = make()
    for seq in range(50):
        data = build_packet(bytes(160), 0, False, seq, seq * 160, 0x77)
        stream.receiver.datagram_received(data, PEER, 1000.0 + seq * 0.02)
    snap = stream.snapshot()
    assert snap.delay_ms == pytest.approx(40.0, abs=0.01)
    assert snap.mos is not None and snap.mos > 4.3
    assert struct.calcsize("!BBHII") == 12
