"""Two CallMedia on loopback: offer/answer, 2 s of PCMU each way, RTCP, BYE, ports released."""

from __future__ import annotations

import random
import socket
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from callmeter.media.call_media import CallMedia, MediaFactory, MediaPortsExhausted
from callmeter.media.prepared import default_audio
from callmeter.rtp.pacer import Pacer
from callmeter.rtp.packet import build_packet
from callmeter.rtp.ports import RtpPortAllocator
from callmeter.sip.sdp import Direction

SECONDS = 2.0


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class CallMediaLoopbackTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.pacer = Pacer(reactor, precise=True)  # the engine's: a timerfd
        self.allocator = RtpPortAllocator(42000, 42099, start=random.randrange(42000, 42099))
        self.factory = MediaFactory(
            reactor=reactor,
            pacer=self.pacer,
            allocator=self.allocator,
            sip_ip="127.0.0.1",
            sdp_ip="127.0.0.1",
            prepared={"PCMU": default_audio("PCMU", 2.0), "PCMA": default_audio("PCMA", 2.0)},
            rtcp_interval=0.5,
            rng=random.Random(7),
        )

    def pair(self) -> tuple[CallMedia, CallMedia]:
        caller, callee = self.factory.create(), self.factory.create()
        self.addCleanup(lambda: caller.stop() or caller.closed)
        self.addCleanup(lambda: callee.stop() or callee.closed)
        answer = callee.answer_offer(caller.local_offer())
        caller.apply_answer(answer)
        return caller, callee

    @defer.inlineCallbacks
    def test_two_seconds_of_pcmu_each_way(self) -> Any:
        caller, callee = self.pair()
        self.assertEqual(self.allocator.in_use, 2)
        callee.start()
        caller.start()
        yield sleep(SECONDS)
        caller.stop()  # hangs up first: its BYE and last packets reach the callee
        yield caller.closed
        yield sleep(0.1)
        callee.stop()
        yield callee.closed
        self.assertEqual(self.allocator.in_use, 0)  # ports released after the sockets closed
        for me, peer in ((caller, callee), (callee, caller)):
            (s,) = me.snapshot()
            (p,) = peer.snapshot()
            self.assertEqual(s.codec, "PCMU")
            # 50 packets per second of 20 ms ptime (the callee sent 0.1 s longer).
            seconds = SECONDS + (0.1 if me is callee else 0.0)
            self.assertGreaterEqual(s.packets_sent, 50 * seconds - 3)
            self.assertLessEqual(s.packets_sent, 50 * seconds + 3)
            self.assertEqual(s.bytes_sent, 172 * s.packets_sent)
            self.assertEqual(s.send_errors, 0)
            self.assertEqual(s.skipped, 0)
            # Everything the peer sent arrived (loopback): no loss, tiny jitter. The caller
            # closed its sockets 0.1 s before the callee stopped sending.
            if me is callee:
                self.assertEqual(s.packets_received, p.packets_sent)
            else:
                self.assertLessEqual(s.packets_received, p.packets_sent)
                self.assertGreaterEqual(s.packets_received, p.packets_sent - 8)
            self.assertEqual(s.lost, 0)
            self.assertEqual(s.loss_pct, 0.0)
            self.assertEqual(s.duplicates, 0)
            self.assertEqual(s.out_of_order, 0)
            self.assertLess(s.jitter_ms, 1.0)
            # SR/RR went both ways, the RTT was measured and is small; BYE arrived.
            self.assertGreaterEqual(s.rtcp_sent, 2)
            self.assertGreaterEqual(s.rtcp_received, 2)
            self.assertIsNotNone(s.rtt_mean_ms)
            assert s.rtt_mean_ms is not None and s.rtt_max_ms is not None
            self.assertGreaterEqual(s.rtt_mean_ms, 0.0)
            self.assertLess(s.rtt_max_ms, 20.0)
            self.assertEqual(s.bye_received, me is callee)
            assert s.mos is not None
            self.assertGreater(s.mos, 4.3)
        self.assertTrue(any(s.rtt_max_ms for m in (caller, callee) for s in m.snapshot()))
        self.assertEqual(len(self.pacer), 0)
        self.assertGreater(self.pacer.lateness.count, 0)

    @defer.inlineCallbacks
    def test_recvonly_callee_does_not_send(self) -> Any:
        factory = MediaFactory(
            reactor=reactor,
            pacer=self.pacer,
            allocator=self.allocator,
            sip_ip="127.0.0.1",
            sdp_ip="127.0.0.1",
            prepared={},
            audio_codecs=("PCMA",),
            direction=Direction.RECVONLY,
            rtcp_interval=0.3,
        )
        caller = self.factory.create()
        callee = factory.create()
        self.addCleanup(lambda: caller.stop() or caller.closed)
        self.addCleanup(lambda: callee.stop() or callee.closed)
        caller.apply_answer(callee.answer_offer(caller.local_offer()))
        caller.start()
        callee.start()
        yield sleep(0.5)
        (c,) = caller.snapshot()
        (r,) = callee.snapshot()
        self.assertEqual(c.codec, "PCMA")
        self.assertEqual(c.direction, "sendonly")
        self.assertEqual(r.direction, "recvonly")
        self.assertEqual(r.packets_sent, 0)
        self.assertGreater(r.packets_received, 15)
        self.assertEqual(c.packets_received, 0)
        self.assertGreaterEqual(r.rtcp_sent, 1)  # a receiver still reports (RR)

    @defer.inlineCallbacks
    def test_rtp_from_a_source_the_sdp_did_not_name_is_counted_and_logged_once(self) -> Any:
        caller, callee = self.pair()
        callee.start()
        caller.start()
        stream = callee.streams["audio"]
        logged: list[dict[str, Any]] = []
        observer = logged.append
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        # Another program sends to the callee's RTP port with its own SSRC (RFC 4961 says a
        # peer sends from where it receives; this one does not).
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(stranger.close)
        stranger.bind(("127.0.0.1", 0))
        for seq in range(20):
            packet = build_packet(bytes(160), 0, False, seq, 160 * seq, 0x5EED)
            stranger.sendto(packet, ("127.0.0.1", stream.local_port))
        yield sleep(0.5)
        self.assertEqual(stream.stray_packets, 20)
        stray = stream.receiver.stats[0x5EED]
        self.assertEqual(stray.packets, 20)
        self.assertEqual(stray.snapshot().missing, 0)
        peer = stream.receiver.stats[caller.streams["audio"].ssrc]
        self.assertGreater(peer.packets, 15)  # the caller's own stream: the connected socket
        sources = [e for e in logged if "sends from" in e.get("log_format", "")]
        self.assertEqual(len(sources), 1)
        self.assertEqual(sources[0]["source"], f"127.0.0.1:{stranger.getsockname()[1]}")

    def test_port_range_exhausted_is_a_clear_value_error(self) -> Any:
        small = RtpPortAllocator(42100, 42103)
        factory = MediaFactory(
            reactor=reactor,
            pacer=self.pacer,
            allocator=small,
            sip_ip="127.0.0.1",
            sdp_ip="127.0.0.1",
            prepared={"PCMU": default_audio("PCMU", 0.2), "PCMA": default_audio("PCMA", 0.2)},
        )
        medias = [factory.create() for _ in range(3)]
        medias[0].local_offer()
        medias[1].local_offer()
        with self.assertRaises(MediaPortsExhausted) as caught:
            medias[2].local_offer()
        self.assertIn("exhausted", str(caught.exception))
        self.assertIsInstance(caught.exception, ValueError)
        for media in medias:
            media.stop()
        return defer.gatherResults([m.closed for m in medias]).addCallback(
            lambda _: self.assertEqual(small.in_use, 0)
        )
