"""Measurement honesty (issue 4): our loss, RTT and jitter against an independent truth.

Two endpoint namespaces joined through a router namespace (conftest.py); each side is the
real engine (CallMedia, RtpStream, Pacer, UdpMux) in its own process (rtp_endpoint.py).

* Loss: an nftables rule in the router drops 2% of the a->b RTP at random and counts each
  drop in a named counter: the exact truth. Our receiver's lost packets must equal it (up to
  the packets dropped after the last one received, which no receiver can see: at most 2
  here) and our loss percentage must be within 0.1 point of drops / sent.
* RTT: delay_queue.py holds every forwarded UDP packet (RTP and RTCP, both directions) for a
  seeded 40 +- 10 ms and logs how long it held each one. An RTT sample of RFC 3550 6.4.1 is
  made by exactly two packets: our SR (whose NTP middle 32 bits are the LSR) and the peer's
  report block echoing it. Its truth is the sum of those two holds plus the base round trip
  of the same path at zero delay (measured first, through the same queue). Our mean RTT must
  be within 1 ms + 2% of the mean truth.
* Jitter: tshark's RTP stream analysis of a capture taken at the receiver. tshark computes
  the same running J as RFC 3550 A.8 (J += (|D| - J) / 16, in ms) per packet but prints only
  its Min/Mean/Max over the stream, never the last value, which is what our snapshot
  reports. So like is compared with like: the mean and the max of our running J over the
  packets (recorded by the endpoint after every packet) against tshark's Mean and Max
  Jitter, and our final J against the final J computed with A.8 from the capture's own
  timestamps (tshark-decoded seq/timestamp). Each within 5%.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from .analysis import RtcpHolds, a8_jitter, a8_trace, matched_samples, read_log
from .conftest import (
    A_IP,
    B_IP,
    HERE,
    Capture,
    Topology,
    TsharkStream,
    report,
    require,
    run_call,
    stop,
    tshark_rtp_packets,
    tshark_streams,
)

pytestmark = pytest.mark.netns

LOSS_SECONDS = 20.0  # 1000 packets of 20 ms
LOSS_PER_MILLE = 20  # 2%
BASE_SECONDS = 6.0
DELAY_SECONDS = 20.0
DELAY_MEAN_MS, DELAY_SPREAD_MS, DELAY_SEED = 40.0, 10.0, 4
B_RTP_PORT = 40000  # the answerer's only port pair (--ports 40000-40001)


def nft_counter(topo: Topology, table: str, name: str) -> int:
    out = json.loads(topo.r.run("nft", "-j", "list", "counter", "inet", table, name))
    (counter,) = [item["counter"] for item in out["nftables"] if "counter" in item]
    return int(counter["packets"])


def test_lost_packets_equal_the_nft_drop_counter(topology: Topology, tmp_path: Path) -> None:
    require(["nft"])
    topo = topology
    topo.r.run(
        "nft",
        "-f",
        "-",
        input=f"""
        table inet cmloss {{
          counter dropped {{ }}
          counter passed {{ }}
          chain forward {{
            type filter hook forward priority 0; policy accept;
            ip daddr {B_IP} udp dport {B_RTP_PORT} numgen random mod 1000 < {LOSS_PER_MILLE} \\
              counter name "dropped" drop
            ip daddr {B_IP} udp dport {B_RTP_PORT} counter name "passed"
          }}
        }}
        """,
    )
    capture = Capture(topo, topo.b, topo.b_if, tmp_path / "loss.pcap")
    a, b = run_call(topo, tmp_path / "call", LOSS_SECONDS)
    tshark = stream_of(tshark_streams(capture.stop()), a["ssrc"], B_RTP_PORT)
    dropped = nft_counter(topo, "cmloss", "dropped")
    passed = nft_counter(topo, "cmloss", "passed")
    sent, ours = a["snapshot"], b["snapshot"]
    truth_pct = 100.0 * dropped / sent["packets_sent"]
    tshark_pct = 100.0 * tshark.lost / (tshark.packets + tshark.lost)
    report(
        "loss",
        [
            f"loss: nftables numgen random {LOSS_PER_MILLE}/1000 on a->b RTP, "
            f"{LOSS_SECONDS:g} s of PCMU",
            f"{'':24}{'ours':>12}{'nft counter':>14}{'tshark':>12}",
            f"{'packets sent (a)':24}{sent['packets_sent']:>12}{dropped + passed:>14}{'':>12}",
            f"{'packets received (b)':24}{ours['packets_received']:>12}{passed:>14}"
            f"{tshark.packets:>12}",
            f"{'lost':24}{ours['lost']:>12}{dropped:>14}{tshark.lost:>12}",
            f"{'loss %':24}{ours['loss_pct']:>12.3f}{truth_pct:>14.3f}{tshark_pct:>12.3f}",
        ],
        {
            "seconds": LOSS_SECONDS,
            "drop_per_mille": LOSS_PER_MILLE,
            "ours": {k: ours[k] for k in ("packets_received", "expected", "lost", "loss_pct")},
            "sent": sent["packets_sent"],
            "nft": {"dropped": dropped, "passed": passed, "loss_pct": truth_pct},
            "tshark": {"packets": tshark.packets, "lost": tshark.lost, "loss_pct": tshark_pct},
        },
    )
    # Every RTP packet a sent went through the rule, and b received exactly what passed.
    assert sent["packets_sent"] == dropped + passed
    assert ours["packets_received"] == passed
    assert ours["duplicates"] == 0
    assert dropped > 0
    # Lost = the drops, except drops after the last packet received (still "in flight").
    assert 0 <= dropped - ours["lost"] <= 2
    assert abs(ours["loss_pct"] - truth_pct) <= 0.1
    assert ours["lost"] == tshark.lost


# --- delay, RTT, jitter ------------------------------------------------------------------


@contextmanager
def delay_program(topo: Topology, workdir: Path, mean_ms: float, spread_ms: float,
                  queue: int) -> Iterator[Path]:  # fmt: skip
    """delay_queue.py on the router's queue; yields its log, complete once the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    log, ready = workdir / "delays.jsonl", workdir / "ready"
    process = topo.start(
        topo.r,
        [sys.executable, str(HERE / "delay_queue.py"), "--queue", str(queue),
         "--mean-ms", str(mean_ms), "--spread-ms", str(spread_ms), "--seed", str(DELAY_SEED),
         "--log", str(log), "--ready", str(ready)],
        workdir / "delay_queue.log",
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            text = (workdir / "delay_queue.log").read_text(errors="replace")
            raise RuntimeError(f"delay_queue.py did not start:\n{text}")
        time.sleep(0.05)
    try:
        yield log
    finally:
        code = stop(process, signal.SIGTERM)
    assert code == 0, (workdir / "delay_queue.log").read_text(errors="replace")


def stream_of(streams: Sequence[TsharkStream], ssrc: int, dst_port: int) -> TsharkStream:
    (row,) = [s for s in streams if s.ssrc == ssrc and s.dst_port == dst_port]
    return row


def within(ours: float, truth: float, relative: float, absolute: float = 0.0) -> bool:
    return abs(ours - truth) <= absolute + relative * abs(truth)


def test_rtt_and_jitter_match_the_delay_program_and_tshark(
    topology: Topology, tmp_path: Path
) -> None:
    require(["iptables"], ["netfilterqueue"])
    topo = topology
    queue = int(topo.suffix, 16) % 60000 + 1
    topo.r.run("iptables", "-A", "FORWARD", "-p", "udp", "-j", "NFQUEUE", "--queue-num", str(queue))

    # 1. The base: the same path through the same queue program, held 0 ms.
    with delay_program(topo, tmp_path / "base", 0.0, 0.0, queue) as log:
        a0, b0 = run_call(topo, tmp_path / "base" / "call", BASE_SECONDS)
    holds0 = RtcpHolds(read_log(log))
    base_samples = matched_samples(a0, holds0) + matched_samples(b0, holds0)
    assert len(base_samples) >= 6
    base = statistics.fmean(rtt - added for rtt, added in base_samples)

    # 2. 40 +- 10 ms each way, a capture at the receiver b.
    with delay_program(topo, tmp_path / "delay", DELAY_MEAN_MS, DELAY_SPREAD_MS, queue) as log:
        capture = Capture(topo, topo.b, topo.b_if, tmp_path / "delay.pcap")
        a, b = run_call(topo, tmp_path / "delay" / "call", DELAY_SECONDS)
        pcap = capture.stop()
    records = read_log(log)
    holds = RtcpHolds(records)
    mean_ab = statistics.fmean(r["held_ms"] for r in records if r["src"] == A_IP)
    mean_ba = statistics.fmean(r["held_ms"] for r in records if r["src"] == B_IP)
    target_error = max(abs(r["held_ms"] - r["target_ms"]) for r in records)
    assert all(r["stamped"] for r in records)  # held from the router's receive time

    rtt: dict[str, dict[str, float]] = {}
    for name, side in (("a", a), ("b", b)):
        samples = matched_samples(side, holds)
        truths = [base + added for _, added in samples]
        errors = [ours - truth for (ours, _), truth in zip(samples, truths, strict=True)]
        rtt[name] = {
            "ours_mean_ms": side["snapshot"]["rtt_mean_ms"],
            "samples": len(samples),
            "truth_mean_ms": statistics.fmean(truths),
            "mean_of_all_packets_truth_ms": base + mean_ab + mean_ba,
            "max_sample_error_ms": max(errors, key=abs),
            "median_sample_error_ms": statistics.median(errors),
        }

    # Jitter of the a->b stream at b: ours (trace + snapshot) vs tshark and the capture.
    tshark = stream_of(tshark_streams(pcap), a["ssrc"], B_RTP_PORT)
    rows = tshark_rtp_packets(pcap, a["ssrc"])
    trace = b["jitter_trace"]
    regular = [j for _, _, _, j, marker in trace[1:] if not marker]  # as tshark: no 1st, no M
    ours_j = {
        "last": b["snapshot"]["jitter_ms"],
        "mean": statistics.fmean(regular),
        "max": max(regular),
    }
    capture_last = a8_jitter(rows)
    # Packet by packet: our running J against A.8 over the capture's arrival times.
    assert [seq for _, seq, _ in rows] == [seq for seq, *_ in trace]
    per_packet = [abs(t[3] - j) for t, j in zip(trace, a8_trace(rows), strict=True)]
    trajectory_error = statistics.fmean(per_packet) / statistics.fmean(a8_trace(rows))

    report(
        "delay",
        [
            f"delay: NFQUEUE {DELAY_MEAN_MS:g} +- {DELAY_SPREAD_MS:g} ms each way (seed "
            f"{DELAY_SEED}), {DELAY_SECONDS:g} s of PCMU both ways; base RTT {base:.3f} ms",
            f"{'':30}{'ours':>10}{'delay program':>15}{'tshark':>10}{'capture A.8':>13}",
            *(
                f"{'RTT mean ' + n + ' (' + str(int(r['samples'])) + ' samples) ms':30}"
                f"{r['ours_mean_ms']:>10.3f}{r['truth_mean_ms']:>15.3f}"
                for n, r in rtt.items()
            ),
            f"{'RTT all-packet means + base':30}{'':>10}"
            f"{rtt['a']['mean_of_all_packets_truth_ms']:>15.3f}",
            f"{'jitter b<-a mean J ms':30}{ours_j['mean']:>10.3f}{'':>15}"
            f"{tshark.mean_jitter:>10.3f}",
            f"{'jitter b<-a max J ms':30}{ours_j['max']:>10.3f}{'':>15}{tshark.max_jitter:>10.3f}",
            f"{'jitter b<-a last J ms':30}{ours_j['last']:>10.3f}{'':>15}{'(none)':>10}"
            f"{capture_last:>13.3f}",
            f"{'jitter per packet |ours - A.8 of capture|: mean':50} "
            f"{100 * trajectory_error:.2f}% of mean J, max {max(per_packet):.3f} ms",
        ],
        {
            "delay_ms": {"mean": DELAY_MEAN_MS, "spread": DELAY_SPREAD_MS, "seed": DELAY_SEED},
            "held_mean_ms": {"a_to_b": mean_ab, "b_to_a": mean_ba},
            "held_vs_target_max_error_ms": target_error,
            "base_rtt_ms": base,
            "base_samples": len(base_samples),
            "rtt": rtt,
            "jitter_ms": {
                "ours": ours_j,
                "tshark": {
                    "min": tshark.min_jitter,
                    "mean": tshark.mean_jitter,
                    "max": tshark.max_jitter,
                },
                "capture_a8_last": capture_last,
                "per_packet_mean_abs_difference_relative": trajectory_error,
                "per_packet_max_abs_difference_ms": max(per_packet),
                "packets": {"ours": len(trace), "capture": len(rows), "tshark": tshark.packets},
            },
        },
    )
    for name, r in rtt.items():
        assert r["samples"] >= 20, name
        assert within(r["ours_mean_ms"], r["truth_mean_ms"], 0.02, 1.0), (name, r)
        # Sample by sample too; the median, as a loaded machine delays a few wake-ups.
        assert abs(r["median_sample_error_ms"]) <= 1.0, (name, r)
    assert len(trace) == len(rows) == tshark.packets
    assert within(ours_j["mean"], tshark.mean_jitter, 0.05), (ours_j, tshark)
    assert within(ours_j["max"], tshark.max_jitter, 0.05), (ours_j, tshark)
    assert within(ours_j["last"], capture_last, 0.05), (ours_j, capture_last)
    assert trajectory_error <= 0.05, trajectory_error
    assert ours_j["last"] == trace[-1][3]  # the snapshot reports the running J's last value
