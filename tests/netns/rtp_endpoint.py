"""One side of a call for the netns tests: a real CallMedia (RtpStream, Pacer, UdpMux).

    ip netns exec NS python3 rtp_endpoint.py --role offer --ip 10.251.1.2 --exchange DIR \\
        --seconds 20 --out a.json

The two sides exchange SDP through files in ``--exchange`` (``offer.sdp``, then
``answer.sdp``; written to a temporary name and renamed, so a reader never sees half a file).
The offerer sends for ``--seconds`` and stops (RTCP BYE); the answerer stops ``--linger``
seconds after the peer's BYE arrived (so the packets still in flight are counted), or after
``--seconds + --timeout`` at the latest. Both send and receive (sendrecv) G.711 PCMU, 20 ms.

``--out`` gets one JSON object: the stream's :class:`StreamSnapshot` (``snapshot``), both
SSRCs, and two traces taken from the outside of the stream without changing it:

* ``jitter_trace``: ``[seq, rtp_ts, arrival, jitter_ms, marker]`` for every RTP packet of
  the peer, with the stream's own RFC 3550 A.8 running jitter after that packet;
* ``rtt_samples``: ``[lsr, dlsr, rtt_ms]`` for every report block about us that gave an RTT
  sample (RFC 3550 6.4.1), so a test can match each sample with the packets that made it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402

from callmeter.media.call_media import MediaFactory  # noqa: E402
from callmeter.media.prepared import default_audio  # noqa: E402
from callmeter.rtp.pacer import Pacer  # noqa: E402
from callmeter.rtp.ports import RtpPortAllocator  # noqa: E402
from callmeter.rtp.rtcp import ReportBlock  # noqa: E402
from callmeter.rtp.stream import RtpStream  # noqa: E402

SCM_TIMESTAMPNS = 35  # = SO_TIMESTAMPNS (asm-generic/socket.h); not in Python's socket module
POLL = 0.01  # seconds between looks at the exchange directory and for the BYE


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.rename(path)


def instrument(stream: RtpStream, out: dict[str, Any]) -> None:
    """Record the running jitter after each RTP packet and each RTT sample (changes nothing)."""
    jitter: list[list[float]] = []
    rtt: list[list[float]] = []
    out["jitter_trace"] = jitter
    out["rtt_samples"] = rtt
    receiver = stream.receiver
    received = receiver.datagram_received
    rtp_socket = stream._sockets[0]  # type: ignore[index]

    def read(now: float) -> None:
        # The stream's read path in Python (same statistics, same kernel arrival stamps as
        # the C reader: the socket has SO_TIMESTAMPNS on), plus a trace.
        try:
            data, ancillary, _, addr = rtp_socket.recvmsg(65536, socket.CMSG_SPACE(16))
        except OSError:
            return
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                now = seconds + nanoseconds * 1e-9
        received(data, addr, now)
        if len(data) >= 12 and data[0] & 0xC0 == 0x80:
            ssrc = int.from_bytes(data[8:12], "big")
            stats = receiver.stats.get(ssrc)
            if stats is not None:
                seq = int.from_bytes(data[2:4], "big")
                ts = int.from_bytes(data[4:8], "big")
                jitter.append([seq, ts, now, stats.jitter_ms, data[1] >> 7])

    stream.mux.remove(rtp_socket)
    stream.mux.add(rtp_socket, read)
    take_blocks = stream._take_blocks

    def _take_blocks(blocks: tuple[ReportBlock, ...], now: float) -> None:
        before = stream.sender.rtt_count
        take_blocks(blocks, now)
        if stream.sender.rtt_count != before and stream.sender.rtt is not None:
            block = stream.sender.last_report
            assert block is not None
            rtt.append([block.lsr, block.dlsr, stream.sender.rtt * 1000.0])

    stream._take_blocks = _take_blocks  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("offer", "answer"), required=True)
    parser.add_argument("--ip", required=True, help="SIP_IP and SDP_IP of this side")
    parser.add_argument("--exchange", type=Path, required=True, help="directory for the SDP")
    parser.add_argument("--seconds", type=float, required=True, help="how long the offerer sends")
    parser.add_argument("--linger", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument("--rtcp-interval", type=float, default=0.5)
    parser.add_argument("--ports", default="40000-40099", help="RTP port range MIN-MAX")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    low, high = (int(p) for p in args.ports.split("-"))
    factory = MediaFactory(
        reactor=reactor,  # type: ignore[arg-type]
        pacer=Pacer(reactor, precise=True),  # as the engine's
        allocator=RtpPortAllocator(low, high),
        sip_ip=args.ip,
        sdp_ip=args.ip,
        prepared={"PCMU": default_audio("PCMU", 10.0)},
        audio_codecs=("PCMU",),
        telephone_event=False,
        rtcp_interval=args.rtcp_interval,
    )
    media = factory.create()
    result: dict[str, Any] = {"role": args.role}
    offer_path = args.exchange / "offer.sdp"
    answer_path = args.exchange / "answer.sdp"
    deadline = reactor.seconds() + args.seconds + args.timeout  # type: ignore[attr-defined]

    def later(delay: float, call: Any) -> None:
        reactor.callLater(delay, call)  # type: ignore[attr-defined]

    def finish() -> None:
        media.stop()
        stream = media.streams.get("audio")
        if stream is not None:
            result["snapshot"] = stream.snapshot().as_dict()
            result["ssrc"] = stream.ssrc
            result["remote_ssrcs"] = sorted(stream.receiver.stats)
        write_atomically(args.out, json.dumps(result).encode())
        later(0.05, reactor.stop)  # type: ignore[attr-defined]

    def started() -> None:
        stream = media.streams["audio"]
        instrument(stream, result)
        media.start()
        if args.role == "offer":
            later(args.seconds, finish)
        else:
            wait_for_bye(stream)

    def wait_for_bye(stream: RtpStream) -> None:
        if stream.byes:
            later(args.linger, finish)
        elif reactor.seconds() > deadline:  # type: ignore[attr-defined]
            result["error"] = "no BYE from the peer"
            finish()
        else:
            later(POLL, lambda: wait_for_bye(stream))

    def wait_for(path: Path, then: Any) -> None:
        if path.exists():
            then(path.read_bytes())
        elif reactor.seconds() > deadline:  # type: ignore[attr-defined]
            result["error"] = f"{path.name} never came"
            finish()
        else:
            later(POLL, lambda: wait_for(path, then))

    def offer() -> None:
        write_atomically(offer_path, media.local_offer())

        def answered(answer: bytes) -> None:
            media.apply_answer(answer)
            started()

        wait_for(answer_path, answered)

    def answer(offered: bytes) -> None:
        write_atomically(answer_path, media.answer_offer(offered))
        started()

    if args.role == "offer":
        later(0, offer)
    else:
        later(0, lambda: wait_for(offer_path, answer))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
