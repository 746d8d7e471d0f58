"""Per-packet cost of the RTP hot-path cores: receive statistics, peek, packet building.

Run: ``python3 bench/rtp_stats.py [--packets N] [--streams S]``. Prints microseconds per
packet (best of 5 runs) for:

* ``ReceiverStats.on_packet`` on a clean in-order stream, on a stream with 1% loss and
  some reordering, and interleaved across S streams (the 1,000-stream case: per-object
  state no longer in the CPU cache);
* ``peek`` (receive-side header read) and ``peek`` + ``on_packet`` together;
* building a packet: ``build_packet`` (pack + concatenation) and ``PacketWriter.write``
  (pack_into a reused buffer).

Not a test: it prints figures, it does not judge them.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callmeter.rtp.packet import PacketWriter, build_packet, peek
from callmeter.rtp.stats import ReceiverStats


def _best(run: Callable[[], int], repeat: int = 5) -> float:
    """Best microseconds per packet over ``repeat`` runs; ``run`` returns its packet count."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        n = run()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def _stream(n: int, loss: float, reorder: float, seed: int) -> list[tuple[int, int, float, int]]:
    """(seq, ts, arrival, size) of a 50 pps G.711 stream starting near the seq wrap."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if rng.random() < loss:
            continue
        seq = (65000 + i) & 0xFFFF
        ts = (4294960000 + 160 * i) & 0xFFFFFFFF
        arrival = 1000.0 + 0.02 * i + rng.uniform(0.0, 0.004)
        out.append((seq, ts, arrival, 172))
    for i in range(1, len(out)):
        if rng.random() < reorder:
            out[i - 1], out[i] = out[i], out[i - 1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    n = args.packets

    clean = _stream(n, 0.0, 0.0, 1)
    lossy = _stream(n, 0.01, 0.01, 2)

    def feed(packets: list[tuple[int, int, float, int]]) -> Callable[[], int]:
        def run() -> int:
            stats = ReceiverStats(1, 8000)
            on_packet = stats.on_packet
            for seq, ts, arrival, size in packets:
                on_packet(seq, ts, arrival, size)
            return len(packets)

        return run

    per_stream = max(2, n // args.streams)
    many = _stream(per_stream, 0.01, 0.01, 3)

    def interleaved() -> int:
        objects = [ReceiverStats(i, 8000) for i in range(args.streams)]
        methods = [s.on_packet for s in objects]
        for seq, ts, arrival, size in many:
            for on_packet in methods:
                on_packet(seq, ts, arrival, size)
        return len(many) * len(methods)

    payload = bytes(160)
    packets = [build_packet(payload, 0, False, seq, ts, 0x12345678) for seq, ts, _, _ in clean]

    def peek_only() -> int:
        for data in packets:
            peek(data)
        return len(packets)

    def peek_and_stats() -> int:
        stats = ReceiverStats(0x12345678, 8000)
        on_packet = stats.on_packet
        arrival = 1000.0
        for data in packets:
            seq, ts, _ssrc, _pt, _m = peek(data)
            arrival += 0.02
            on_packet(seq, ts, arrival, len(data))
        return len(packets)

    def build() -> int:
        for seq, ts, _, _ in clean:
            build_packet(payload, 0, False, seq, ts, 0x12345678)
        return len(clean)

    writer = PacketWriter()

    def write() -> int:
        w = writer.write
        for seq, ts, _, _ in clean:
            w(payload, 0, False, seq, ts, 0x12345678)
        return len(clean)

    print(f"Python {sys.version.split()[0]}, {n} packets per run, best of 5 (us/packet)")
    rows = [
        ("ReceiverStats.on_packet, in order", _best(feed(clean))),
        ("ReceiverStats.on_packet, 1% loss + 1% reorder", _best(feed(lossy))),
        (f"ReceiverStats.on_packet, {args.streams} streams interleaved", _best(interleaved)),
        ("peek", _best(peek_only)),
        ("peek + on_packet", _best(peek_and_stats)),
        ("build_packet (pack + concat)", _best(build)),
        ("PacketWriter.write (pack_into)", _best(write)),
    ]
    for name, us in rows:
        print(f"  {name:55s} {us:6.3f}")
    stats_us = rows[2][1]
    # 1,000 streams of 50 pps: 50,000 packets/s received.
    print(f"  receive statistics for 1,000 x 50 pps streams: {stats_us * 50_000 / 1e6:.3f} core")


if __name__ == "__main__":
    main()
