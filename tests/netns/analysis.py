"""The truth side of the netns tests: the delay program's log and a capture, analysed.

Independent of callmeter's own code: RTCP fields are read with plain byte offsets (RFC 3550
6.4.1 SR, 6.4.2 RR) and the jitter of a capture is RFC 3550 A.8 written out again.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class RtcpHolds:
    """How long the delay program held each RTCP packet, found by what the packet says.

    RFC 3550 6.4.1/6.4.2: an SR (PT 200) carries the sender's SSRC and NTP timestamp; SR and
    RR (PT 201) report blocks carry SSRC, ..., LSR, DLSR. Only the first packet of a compound
    is looked at (ours always starts with the SR or RR).
    """

    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        self.sr: dict[tuple[int, int], float] = {}  # (sender ssrc, NTP middle 32) -> held ms
        self.blocks: dict[tuple[int, int, int], float] = {}  # (about ssrc, lsr, dlsr) -> ms
        for record in records:
            udp = bytes.fromhex(record["udp"])
            if len(udp) < 8 or udp[0] >> 6 != 2 or udp[1] not in (200, 201):
                continue
            count = udp[0] & 0x1F
            if udp[1] == 200:
                sender = int.from_bytes(udp[4:8], "big")
                self.sr[(sender, int.from_bytes(udp[10:14], "big"))] = record["held_ms"]
                first = 28
            else:
                first = 8
            for i in range(count):
                block = udp[first + 24 * i : first + 24 * (i + 1)]
                if len(block) == 24:
                    about, lsr, dlsr = (
                        int.from_bytes(block[j : j + 4], "big") for j in (0, 16, 20)
                    )
                    self.blocks[(about, lsr, dlsr)] = record["held_ms"]

    def added(self, ssrc: int, lsr: int, dlsr: int) -> float | None:
        """What the router added to the RTT sample (our SR + the block about it), in ms."""
        sr = self.sr.get((ssrc, lsr))
        block = self.blocks.get((ssrc, lsr, dlsr))
        return None if sr is None or block is None else sr + block


def matched_samples(side: dict[str, Any], holds: RtcpHolds) -> list[tuple[float, float]]:
    """``(our RTT sample, what the router added to it)`` for every sample of one side, ms."""
    out = []
    for lsr, dlsr, rtt in side["rtt_samples"]:
        added = holds.added(side["ssrc"], lsr, dlsr)
        assert added is not None, f"no logged SR/RR for sample lsr={lsr:#x} dlsr={dlsr}"
        out.append((rtt, added))
    return out


def a8_trace(rows: Sequence[tuple[float, int, int]], clock_rate: int = 8000) -> list[float]:
    """RFC 3550 A.8 running jitter after each packet, from capture times, in ms.

    ``rows`` are ``(arrival seconds, seq, rtp timestamp)`` in arrival order; the first
    packet's jitter is 0. D(i-1, i) = (R_i - R_i-1) - (S_i - S_i-1) in timestamp units
    (timestamp difference taken modulo 2**32), J += (|D| - J) / 16.
    """
    jitter = 0.0
    out = [0.0] if rows else []
    for (t0, _, ts0), (t1, _, ts1) in itertools.pairwise(rows):
        d = (t1 - t0) * clock_rate - (((ts1 - ts0 + 2**31) % 2**32) - 2**31)
        jitter += (abs(d) - jitter) / 16
        out.append(jitter * 1000.0 / clock_rate)
    return out


def a8_jitter(rows: Sequence[tuple[float, int, int]], clock_rate: int = 8000) -> float:
    """The running jitter after the last packet (:func:`a8_trace`), in ms."""
    trace = a8_trace(rows, clock_rate)
    return trace[-1] if trace else 0.0
