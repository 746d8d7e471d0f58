"""RTP load benchmark: N G.711 20 ms streams, each sending and receiving, in ONE process.

    python bench/rtp_load.py --streams 1000 --seconds 20
    python bench/rtp_load.py --sweep --seconds 10        # 250 ... 2000 streams
    python bench/rtp_load.py --streams 1000 --tick 5     # pacer tick in ms

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

SWEEP = (250, 500, 1000, 1500, 2000)


def raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run_one(
    streams: int, seconds: float, warmup: float, tick_ms: float, per_socket: bool = False
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
    raise_nofile(4 * pairs + 256)
    pacer = Pacer(reactor, tick=tick_ms / 1000.0)
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
    parser.add_argument("--sweep", action="store_true", help="run 250 ... 2000 streams")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.sweep:
        result = run_one(args.streams, args.seconds, args.warmup, args.tick, args.per_socket)
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
