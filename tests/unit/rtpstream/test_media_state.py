"""Missing media and what is not audio (issue 12, item 7): per SSRC and payload type.

RFC 4733 events and RFC 3389 comfort noise are counted as what they are, never as lost audio;
a stream that got nothing, or stopped getting it, says so and has no loss, jitter or MOS.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock

from callmeter.media.prepared import default_audio
from callmeter.rtp.packet import build_packet
from callmeter.rtp.rtcp import ReceiverReport, ReportBlock, build_compound
from callmeter.rtp.stats import MEDIA_TIMEOUT_S
from callmeter.rtp.stream import RtpStream
from callmeter.sip.sdp import Direction

from .test_stream import PEER, FakeMux, advance, make, negotiated

AUDIO, EVENT = 0x1111, 0x2222


def with_events(stream: RtpStream, direction: Direction = Direction.SENDRECV) -> None:
    """Negotiate telephone-event 101 (as SIPp's SDP does)."""
    neg = dataclasses.replace(
        negotiated(direction), telephone_event_pt=101, local_telephone_event_pt=101
    )
    stream.configure(neg, default_audio("PCMU", 1.0))


def audio(stream: RtpStream, seqs: range | list[int], start: float = 1000.0) -> None:
    for seq in seqs:
        data = build_packet(bytes(160), 0, False, seq, seq * 160, AUDIO)
        stream.receiver.datagram_received(data, PEER, start + seq * 0.02)


def test_a_second_ssrc_of_dtmf_events_with_gaps_is_no_audio_loss() -> None:
    clock, pacer, stream, _, _ = make()
    with_events(stream)
    audio(stream, range(100))
    # SIPp's DTMF pcap: another SSRC, PT 101, sequence numbers with gaps (a capture's cut).
    for seq in (5000, 5001, 5002, 5010, 5011, 5030, 5031, 5032, 5070):
        event = build_packet(b"\x01\x0a\x00\xa0", 101, False, seq, 777, EVENT)
        stream.receiver.datagram_received(event, PEER, 1001.0 + (seq - 5000) * 0.01)
    snap = stream.snapshot()
    assert snap.packets_received == 109
    assert snap.events_received == 9 and snap.other_ssrc_packets == 9
    assert snap.cn_received == 0 and snap.other_payload_received == 0
    assert snap.expected == 100 and snap.lost == 0 and snap.loss_pct == 0.0
    assert snap.jitter_ms == pytest.approx(0.0, abs=1e-9)
    assert snap.mos is not None and snap.mos > 4.3
    assert snap.remote_ssrcs == 2 and snap.media_state == "ok"


def test_events_in_the_audio_sequence_take_their_numbers_without_jitter() -> None:
    """RFC 4733 in the audio's SSRC: one sequence space, so audio around them is not lost;
    their timestamps (the event's start, repeated) give no jitter sample."""
    clock, pacer, stream, _, _ = make()
    with_events(stream)
    audio(stream, range(0, 50))
    for seq in range(50, 60):  # a digit: 10 event packets, timestamp of its start
        event = build_packet(b"\x01\x0a\x00\xa0", 101, seq == 50, seq, 50 * 160, AUDIO)
        stream.receiver.datagram_received(event, PEER, 1000.0 + seq * 0.02)
    audio(stream, range(60, 100))
    snap = stream.snapshot()
    assert snap.events_received == 10 and snap.other_ssrc_packets == 0
    assert snap.expected == 100 and snap.lost == 0 and snap.loss_pct == 0.0
    assert snap.jitter_ms == pytest.approx(0.0, abs=1e-9)
    assert snap.packets_received == 100


def test_comfort_noise_is_counted_as_such() -> None:
    clock, pacer, stream, _, _ = make()
    audio(stream, range(0, 20))
    for seq in range(20, 23):  # RFC 3389: PT 13 in the audio's sequence, while silent
        cn = build_packet(b"\x40", 13, False, seq, seq * 160, AUDIO)
        stream.receiver.datagram_received(cn, PEER, 1000.0 + seq * 0.02)
    audio(stream, range(23, 40))
    snap = stream.snapshot()
    assert snap.cn_received == 3 and snap.events_received == 0
    assert snap.expected == 40 and snap.lost == 0
    assert snap.packets_received == 40


def test_a_payload_type_not_negotiated_is_other() -> None:
    clock, pacer, stream, _, _ = make()
    audio(stream, range(10))
    stream.receiver.datagram_received(build_packet(b"x", 8, False, 10, 0, AUDIO), PEER, 1000.3)
    snap = stream.snapshot()
    assert snap.other_payload_received == 1 and snap.lost == 0 and snap.expected == 11


def test_nothing_received_is_no_media_with_no_figures() -> None:
    clock, pacer, stream, _, _ = make()
    stream.start()
    advance(clock, 1.0, step=0.02)
    assert stream.snapshot().media_state == "waiting"  # no verdict in the first seconds
    advance(clock, MEDIA_TIMEOUT_S + 0.1, step=0.02)
    snap = stream.snapshot()
    assert snap.media_state == "no_media"
    assert snap.packets_received == 0 and snap.packets_sent > 0
    assert (snap.loss_pct, snap.jitter_ms, snap.mos, snap.r_factor) == (None, None, None, None)
    stream.stop()
    assert stream.snapshot().media_state == "no_media"


def test_a_short_call_that_got_nothing_ends_as_no_media() -> None:
    clock, pacer, stream, _, _ = make()
    stream.start()
    advance(clock, 0.3, step=0.02)
    stream.stop()
    assert stream.snapshot().media_state == "no_media"


def test_nothing_received_while_the_peer_reports_ours_is_one_way() -> None:
    clock, pacer, stream, _, _ = make()
    stream.start()
    advance(clock, 3.0, step=0.02)
    block = ReportBlock(stream.ssrc, 0, 0, 100, 0, 0, 0)
    rr = build_compound(ReceiverReport(0xFEED, (block,)), b"peer")
    stream.rtcp_received_datagram(rr, (PEER[0], PEER[1] + 1), clock.seconds())
    stream.stop()
    snap = stream.snapshot()
    assert snap.media_state == "one_way" and snap.rtcp_received == 1


def test_media_that_stops_mid_call_is_stopped_with_the_time() -> None:
    clock, pacer, stream, _, _ = make()
    stream.start()  # at 1000.0
    audio(stream, range(150))  # 3 s of audio, the last at 1002.98
    advance(clock, 3.0 + MEDIA_TIMEOUT_S - 0.1, step=0.02)
    assert stream.snapshot().media_state == "ok"  # not yet MEDIA_TIMEOUT_S of nothing
    advance(clock, 2.0, step=0.02)
    snap = stream.snapshot()
    assert snap.media_state == "stopped"
    assert snap.stopped_at_s == pytest.approx(2.98, abs=1e-6)
    assert snap.loss_pct == 0.0 and snap.mos is not None  # what did arrive is measured
    stream.stop()
    assert stream.snapshot().media_state == "stopped"


def test_a_stream_that_does_not_receive_expects_nothing() -> None:
    clock, pacer, stream, _, _ = make(direction=Direction.SENDONLY)
    stream.start()
    advance(clock, 5.0, step=0.05)
    stream.stop()
    assert stream.snapshot().media_state == "not_expected"


def test_hold_pauses_the_stopped_clock() -> None:
    clock, pacer, stream, _, _ = make()
    stream.start()
    audio(stream, range(50))
    stream.configure(negotiated(Direction.SENDONLY), default_audio("PCMU", 1.0))  # hold
    advance(clock, 10.0, step=0.05)
    assert stream.snapshot().media_state == "ok"
    stream.configure(negotiated(Direction.SENDRECV), default_audio("PCMU", 1.0))  # resume
    advance(clock, 1.0, step=0.05)
    assert stream.snapshot().media_state == "ok"
    advance(clock, MEDIA_TIMEOUT_S, step=0.05)
    assert stream.snapshot().media_state == "stopped"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_the_c_reader_keeps_statistics_per_ssrc_and_payload_type(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    clock, pacer, stream, _, _ = make()
    with_events(stream)
    stream.receiver._fd = b.fileno()
    sent = 0
    for seq in range(60):
        if 20 <= seq < 26:
            a.send(build_packet(b"\x01\x0a\x00\xa0", 101, False, seq, 20 * 160, AUDIO))
        elif seq in (40, 41):
            a.send(build_packet(b"\x40", 13, False, seq, seq * 160, AUDIO))
        else:
            a.send(build_packet(bytes(160), 0, False, seq, seq * 160, AUDIO))
        if seq % 3 == 0:
            a.send(build_packet(b"\x01\x0a\x00\xa0", 101, False, 9000 + 2 * seq, 0, EVENT))
            sent += 1
    now = 1000.0
    for _ in range(60 + sent):
        stream.receiver.read(now)
        now += 0.01
    snap = stream.snapshot()
    assert snap.events_received == 6 + sent and snap.cn_received == 2
    assert snap.other_ssrc_packets == sent
    assert snap.expected == 60 and snap.lost == 0 and snap.loss_pct == 0.0
    assert snap.packets_received == 60 + sent


def test_the_plc_assumption_reaches_the_stream_and_its_mos() -> None:
    """Issue 12, item 6: 3 % random loss; the E-model values used are in the snapshot."""
    results = {}
    for plc in (True, False):
        clock, pacer, stream, _, _ = make()
        stream.plc = plc
        audio(stream, [seq for seq in range(100) if seq % 33 != 5])  # 3 of 100 lost
        snap = stream.snapshot()
        assert snap.loss_pct == pytest.approx(3.0)
        assert snap.emodel is not None and snap.emodel["plc"] is plc
        results[plc] = (snap.emodel["bpl"], snap.mos)
    # Ta = 40 ms (no RTT yet, ptime 20 + jitter buffer 20): MOS 4.09 and 2.73.
    assert results[True][0] == 25.1 and results[True][1] == pytest.approx(4.092, abs=1e-3)
    assert results[False][0] == 4.3 and results[False][1] == pytest.approx(2.731, abs=1e-3)


def test_the_media_factory_passes_the_plan_s_plc_to_every_stream() -> None:
    from callmeter.media.call_media import MediaFactory
    from callmeter.rtp.pacer import Pacer
    from callmeter.rtp.ports import RtpPortAllocator

    class Mux(FakeMux):
        def drain(self) -> None: ...

    clock = Clock()
    factory = MediaFactory(
        reactor=clock,  # type: ignore[arg-type]
        pacer=Pacer(clock),
        allocator=RtpPortAllocator(42000, 42099),
        sip_ip="127.0.0.1",
        sdp_ip="127.0.0.1",
        prepared={"PCMU": default_audio("PCMU", 0.2)},
        audio_codecs=("PCMU",),
        mux=Mux(),  # type: ignore[arg-type]
        plc=False,
    )
    media = factory.create()
    media.local_offer()
    try:
        assert [stream.plc for stream in media.streams.values()] == [False]
    finally:
        media.stop()
