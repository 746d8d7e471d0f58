"""RTP load benchmark: N G.711 20 ms streams, each sending and receiving, in ONE process.

    python bench/rtp_load.py --streams 1000 --seconds 20
    python bench/rtp_load.py --sweep --seconds 10        # 250 ... 2000 streams
    python bench/rtp_load.py --streams 1000 --tick 5     # pacer tick in ms
    python bench/rtp_load.py --streams 1000 --bare       # and the bare-sockets floor, ratio

The real engine on loopback: N/2 pairs of CallMedia (offer/answer, RtpStream with its RTP
and RTCP sockets, the process-wide Pacer, ReceiverStats per packet, RTCP every ~5 s). Every
stream sends 50 packets/s of 172 octets and receives its peer's 50. Calls start at random
instants over the first second (random packet phases, as real calls have), then a warm-up,
then the measured window. Printed: CPU of the process (user + system time over wall time,
in cores) per 1,000 streams (a stream = one endpoint sending and receiving), achieved /
expected packet rate (sent and received), mean / p99 / max send lateness (pacer due time to
the actual send), packets skipped by the pacer and lost.

Targets (issue 4): <= 0.5 core per 1,000 streams, rate >= 99.9%, p99 lateness < 2 ms at
1,000 streams. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from callmeter.limits import raise_open_files_limit

SWEEP = (250, 500, 1000, 1500, 2000)


def run_one(
    streams: int,
    seconds: float,
    warmup: float,
    tick_ms: float,
    per_socket: bool = False,
    precise: bool = True,
) -> dict[str, Any]:
    """Run the load in this process (with a fresh epoll reactor) and return the figures."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    from callmeter.media.call_media import CallMedia, MediaFactory
    from callmeter.media.prepared import default_audio
    from callmeter.rtp.pacer import Pacer
    from callmeter.rtp.ports import RtpPortAllocator
    from callmeter.rtp.stream import UdpMux

    pairs = streams // 2
    raise_open_files_limit()
    pacer = Pacer(reactor, tick=tick_ms / 1000.0, precise=precise)
    factory = MediaFactory(
        reactor=reactor,  # type: ignore[arg-type]
        pacer=pacer,
        allocator=RtpPortAllocator(20000, 20000 + 4 * pairs + 64),
        sip_ip="127.0.0.1",
        sdp_ip="127.0.0.1",
        prepared={"PCMU": default_audio("PCMU", 10.0)},
        audio_codecs=("PCMU",),
        mux=UdpMux(reactor, per_socket=per_socket),  # type: ignore[arg-type]
    )
    calls: list[tuple[CallMedia, CallMedia]] = []
    for _ in range(pairs):
        a, b = factory.create(), factory.create()
        a.apply_answer(b.answer_offer(a.local_offer()))
        calls.append((a, b))
    rng = random.Random(1)
    for a, b in calls:
        reactor.callLater(rng.random(), a.start)  # type: ignore[attr-defined]
        reactor.callLater(rng.random(), b.start)  # type: ignore[attr-defined]

    def totals() -> tuple[int, int, int, int, int]:
        sent = received = skipped = lost = errors = 0
        for a, b in calls:
            for media in (a, b):
                for stream in media.streams.values():
                    sent += stream.packets_sent
                    skipped += stream.skipped
                    errors += stream.send_errors
                    for source in stream.receiver.stats.values():
                        received += source.packets
                        lost += max(source.expected - source.received + source.duplicates, 0)
        return sent, received, skipped, lost, errors

    result: dict[str, Any] = {
        "streams": 2 * pairs,
        "seconds": seconds,
        "tick_ms": tick_ms,
        "mux": "per-socket" if per_socket else "epoll",
        "wakeup": "timerfd" if precise else "callLater",
    }
    marks: dict[str, Any] = {}

    def begin() -> None:
        pacer.lateness.reset()
        marks["wall"] = time.monotonic()
        marks["cpu"] = time.process_time()
        marks["rusage"] = resource.getrusage(resource.RUSAGE_SELF)
        marks["totals"] = totals()

    def end() -> None:
        cpu = time.process_time() - marks["cpu"]
        wall = time.monotonic() - marks["wall"]
        usage = resource.getrusage(resource.RUSAGE_SELF)
        user = (usage.ru_utime - marks["rusage"].ru_utime) / wall
        system = (usage.ru_stime - marks["rusage"].ru_stime) / wall
        sent, received, skipped, lost, errors = (
            now - then for now, then in zip(totals(), marks["totals"], strict=True)
        )
        hist = pacer.lateness.histogram()
        expected = 2 * pairs * 50 * wall
        result.update(
            wall=wall,
            cpu_cores=cpu / wall,
            cores_per_1000=cpu / wall / (2 * pairs / 1000),
            sent_pps=sent / wall,
            expected_pps=expected / wall,
            achieved_pct=100 * sent / expected,
            received_pct=100 * received / expected,
            late_mean_ms=1000 * (hist.mean or 0),
            late_p99_ms=1000 * (hist.percentile(99) or 0),
            late_max_ms=1000 * (hist.max or 0),
            skipped=skipped,
            lost=lost,
            send_errors=errors,
            user_cores=user,
            system_cores=system,
        )
        for a, b in calls:
            a.stop()
            b.stop()
        reactor.callLater(0.2, reactor.stop)  # type: ignore[attr-defined]

    reactor.callLater(1.0 + warmup, begin)  # type: ignore[attr-defined]
    reactor.callLater(1.0 + warmup + seconds, end)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return result


def run_bare(streams: int, seconds: float, warmup: float) -> dict[str, Any]:
    """The floor on this machine now: the same sockets and reactor, no engine.

    ``streams`` connected UDP sockets in pairs on loopback, one epoll reader in the
    reactor (as :class:`~callmeter.rtp.stream.UdpMux`), one 1 ms timer that sends each
    socket's 172-octet packet every 20 ms (pack a header + send) and, per received packet,
    ``recv_into`` and a counter: what TESTBED.md calls raw Twisted (0.31-0.36 of a core per
    1,000 streams when it was measured). Our figure over this one is the cost of pacing by
    the clock, lateness, receive statistics and RTCP.
    """
    import select
    import socket
    import struct

    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    raise_open_files_limit()
    socks = []
    for _ in range(streams):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        socks.append(sock)
    for index, sock in enumerate(socks):
        sock.connect(socks[index ^ 1].getsockname())
    pack = struct.Struct("!BBHII").pack
    payload = bytes(160)
    buffer = bytearray(2048)
    received = [0]
    poller = select.epoll()
    readers = {}
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
        readers[sock.fileno()] = sock.recv_into

    class Mux:
        def fileno(self) -> int:
            return poller.fileno()

        def doRead(self) -> None:
            for fd, _ in poller.poll(0):
                readers[fd](buffer)
                received[0] += 1

        def logPrefix(self) -> str:
            return "bare"

        def connectionLost(self, reason: object) -> None:
            return None

    reactor.addReader(Mux())  # type: ignore[attr-defined]
    rng = random.Random(1)
    wheel: list[list[Any]] = [[] for _ in range(20)]
    for sock in socks:
        wheel[rng.randrange(20)].append([sock.send, rng.getrandbits(16), 0, rng.getrandbits(32)])
    t0 = time.monotonic()
    state = {"bucket": 0, "sent": 0}

    def tick() -> None:
        current = int((time.monotonic() - t0) * 1000)
        while state["bucket"] <= current:
            for entry in wheel[state["bucket"] % 20]:
                send, seq, ts, ssrc = entry
                send(pack(0x80, 0, seq, ts, ssrc) + payload)
                entry[1] = (seq + 1) & 0xFFFF
                entry[2] = (ts + 160) & 0xFFFFFFFF
                state["sent"] += 1
            state["bucket"] += 1
        delay = state["bucket"] / 1000 - (time.monotonic() - t0)
        reactor.callLater(max(0.0, delay), tick)  # type: ignore[attr-defined]

    reactor.callLater(0, tick)  # type: ignore[attr-defined]
    marks: dict[str, float] = {}
    result: dict[str, Any] = {"streams": streams, "seconds": seconds}

    def begin() -> None:
        marks.update(wall=time.monotonic(), cpu=time.process_time(), sent=state["sent"])
        marks["received"] = received[0]

    def end() -> None:
        wall = time.monotonic() - marks["wall"]
        cpu = time.process_time() - marks["cpu"]
        expected = streams * 50 * wall
        result.update(
            cpu_cores=cpu / wall,
            cores_per_1000=cpu / wall / (streams / 1000),
            achieved_pct=100 * (state["sent"] - marks["sent"]) / expected,
            received_pct=100 * (received[0] - marks["received"]) / expected,
        )
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callLater(1.0 + warmup, begin)  # type: ignore[attr-defined]
    reactor.callLater(1.0 + warmup + seconds, end)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return result


def subprocess_run(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--json", *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


HEADER = (
    f"{'streams':>7} {'tick':>4} {'cores':>6} {'/1000':>6} {'sent pps':>9} {'expected':>9} "
    f"{'sent %':>8} {'recv %':>8} {'late ms':>7} {'p99 ms':>7} {'max ms':>7} "
    f"{'skipped':>7} {'lost':>6} {'user':>5} {'sys':>5}"
)


def row(r: dict[str, Any]) -> str:
    return (
        f"{r['streams']:>7} {r['tick_ms']:>4g} {r['cpu_cores']:>6.3f} {r['cores_per_1000']:>6.3f} "
        f"{r['sent_pps']:>9.0f} {r['expected_pps']:>9.0f} {r['achieved_pct']:>8.3f} "
        f"{r['received_pct']:>8.3f} {r['late_mean_ms']:>7.3f} {r['late_p99_ms']:>7.3f} "
        f"{r['late_max_ms']:>7.2f} {r['skipped']:>7} {r['lost']:>6} "
        f"{r['user_cores']:>5.2f} {r['system_cores']:>5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="endpoints (N/2 call pairs)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--tick", type=float, default=1.0, help="pacer tick, ms")
    parser.add_argument(
        "--per-socket", action="store_true", help="one reactor reader per socket (no epoll mux)"
    )
    parser.add_argument(
        "--call-later",
        action="store_true",
        help="the pacer sleeps with callLater (whole-ms epoll timeouts), not a timerfd",
    )
    parser.add_argument("--sweep", action="store_true", help="run 250 ... 2000 streams")
    parser.add_argument(
        "--bare",
        action="store_true",
        help="also run the bare-sockets floor (run_bare) at the same size and print the ratio",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_only:
        print(json.dumps(run_bare(args.streams, args.seconds, args.warmup)))
        return
    if not args.sweep:
        if args.bare:
            common = ("--streams", str(args.streams), "--seconds", str(args.seconds))
            result = subprocess_run(*common, "--warmup", str(args.warmup), "--tick", str(args.tick))
            bare = subprocess_run(*common, "--warmup", str(args.warmup), "--bare-only")
            print(HEADER)
            print(row(result))
            print(
                f"bare sockets, same reactor (run_bare): {bare['cores_per_1000']:.3f} cores per "
                f"1,000 streams (sent {bare['achieved_pct']:.3f} %, received "
                f"{bare['received_pct']:.3f} %); ours / bare = "
                f"{result['cores_per_1000'] / bare['cores_per_1000']:.2f}; ours scaled to "
                f"TESTBED's raw-Twisted 0.31-0.36: "
                f"{0.31 * result['cores_per_1000'] / bare['cores_per_1000']:.3f}-"
                f"{0.36 * result['cores_per_1000'] / bare['cores_per_1000']:.3f}"
            )
            return
        result = run_one(
            args.streams,
            args.seconds,
            args.warmup,
            args.tick,
            args.per_socket,
            precise=not args.call_later,
        )
        if args.json:
            print(json.dumps(result))
            return
        print(HEADER)
        print(row(result))
        return
    print(HEADER, flush=True)
    limit = None
    for streams in SWEEP:
        out = subprocess.run(
            [
                *(sys.executable, __file__, "--json", "--streams", str(streams)),
                *("--seconds", str(args.seconds), "--warmup", str(args.warmup)),
                *("--tick", str(args.tick), *(["--per-socket"] if args.per_socket else [])),
                *(["--call-later"] if args.call_later else []),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(row(result), flush=True)
        if result["achieved_pct"] >= 99.9 and result["received_pct"] >= 99.9:
            limit = streams
    print(f"rate >= 99.9% up to {limit} streams in one process" if limit else "rate < 99.9%")


if __name__ == "__main__":
    main()
