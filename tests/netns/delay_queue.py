"""The ground truth of the delay tests: hold each packet of an NFQUEUE for a seeded delay.

    ip netns exec ROUTER python3 delay_queue.py --queue 7 --mean-ms 40 --spread-ms 10 \\
        --seed 4 --log delays.jsonl --ready ready.flag

Run in the router namespace behind ``iptables -A FORWARD -p udp -j NFQUEUE --queue-num 7``.
Every packet the kernel queues gets a delay drawn from ``random.Random(seed)``, uniform in
``mean +- spread`` milliseconds, in the order the packets arrive; it is retained and accepted
(forwarded) once that delay has passed. One JSON line per packet is logged when it is released
(``udp``: hex of the first 96 UDP payload octets):

    {"n": 0, "src": "10.251.1.2", "dst": "10.251.2.2", "sport": 30000, "dport": 40000,
     "stamped": true, "target_ms": 43.1, "held_ms": 43.2, "udp": "80 00 ..."}

``held_ms`` is the time the router actually held the packet, the figure the tests use: from
the kernel's receive timestamp of the packet (its arrival at the router, before it was
queued) to just after the accept, on the wall clock. The delay is counted from that stamp
too, so the time this program takes to wake up is part of the delay, not added to it. The
kernel stamps received packets only while some socket asks for timestamps: the program opens
one with SO_TIMESTAMPNS (``stamped`` false: no stamp, counted from the callback instead).

Nothing else: no loss or rate limit of its own (packets overtake each other only when their
delays differ by more than their spacing). SIGTERM releases what is still held and exits.
Pattern from TESTBED.md: one thread, ``get_fd`` + ``select`` + ``run(block=False)`` +
``retain`` + deferred ``accept``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import select
import signal
import socket
import struct
import time
from pathlib import Path
from typing import Any

from netfilterqueue import NetfilterQueue

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value; 3.11 lacks the name


def describe(ip_packet: bytes) -> dict[str, Any]:
    """Addresses, ports and the start of the UDP payload of an IPv4 packet."""
    header = (ip_packet[0] & 0x0F) * 4
    sport, dport = struct.unpack_from("!HH", ip_packet, header)
    return {
        "src": socket.inet_ntoa(ip_packet[12:16]),
        "dst": socket.inet_ntoa(ip_packet[16:20]),
        "sport": sport,
        "dport": dport,
        "udp": ip_packet[header + 8 : header + 8 + 96].hex(" "),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, required=True)
    parser.add_argument("--mean-ms", type=float, required=True)
    parser.add_argument("--spread-ms", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--ready", type=Path, required=True, help="created once bound")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    low, high = (args.mean_ms - args.spread_ms) / 1000.0, (args.mean_ms + args.spread_ms) / 1000.0
    held: list[tuple[float, int, Any, float, float, dict[str, Any]]] = []  # a heap by due time
    # (due, n, packet, arrival, delay, what it is); all times time.time() seconds
    count = 0

    def on_packet(packet: Any) -> None:
        nonlocal count
        stamp = packet.get_timestamp()  # 0.0 when the kernel did not stamp it
        arrived = stamp or time.time()
        delay = rng.uniform(low, high)
        info = {**describe(packet.get_payload()), "stamped": bool(stamp)}
        packet.retain()  # keep it past this callback; the verdict comes later
        heapq.heappush(held, (arrived + delay, count, packet, arrived, delay, info))
        count += 1

    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stamping = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # turns receive stamps on
    stamping.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    queue = NetfilterQueue()
    queue.bind(args.queue, on_packet)
    fd = queue.get_fd()
    with args.log.open("w") as log:

        def release(until: float) -> None:
            while held and held[0][0] <= until:
                _, n, packet, arrived, delay, info = heapq.heappop(held)
                packet.accept()
                out = time.time()
                record = {
                    "n": n,
                    **info,
                    "target_ms": delay * 1e3,
                    "held_ms": (out - arrived) * 1e3,
                }
                log.write(json.dumps(record) + "\n")

        args.ready.touch()
        while not stopping:
            timeout = max(0.0, held[0][0] - time.time()) if held else 0.05
            try:
                readable, _, _ = select.select([fd], [], [], timeout)
            except InterruptedError:
                continue
            if readable:
                queue.run(block=False)
            release(time.time())
        release(float("inf"))
    queue.unbind()
    stamping.close()


if __name__ == "__main__":
    main()
