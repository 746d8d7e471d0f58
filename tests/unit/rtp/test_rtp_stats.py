"""Receiver and sender statistics (RFC 3550 appendix A.1, A.3, A.8; RTT of 6.4.1)."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.rtp.rtcp import ReportBlock, SenderReport, ntp_from_unix
from callmeter.rtp.stats import ReceiverStats, SenderStats

RATE = 8000


def feed(stats: ReceiverStats, seqs: Iterable[int], start_ts: int = 0) -> None:
    """Packets of a 20 ms G.711 stream: ts = 160 per seq step, arrival on time."""
    for seq in seqs:
        stats.on_packet(seq & 0xFFFF, (start_ts + 160 * seq) & 0xFFFFFFFF, 0.02 * seq, 172)


def test_one_loss_worked_example() -> None:
    # Seqs 0..9 with 4 missing: base 0 (the probation run 0, 1 is counted), highest 9,
    # expected = 9 - 0 + 1 = 10, received 9, lost 1; fraction = (1 << 8) // 10 = 25.
    stats = ReceiverStats(0xABC, RATE)
    feed(stats, [0, 1, 2, 3, 5, 6, 7, 8, 9])
    assert (stats.expected, stats.received, stats.lost) == (10, 9, 1)
    block = stats.report_block(now=1.0)
    assert block == ReportBlock(0xABC, 25, 1, 9, 0, 0, 0)
    # Next interval 10..19 all present: expected_interval 10, received_interval 10,
    # fraction 0; cumulative lost stays 1.
    feed(stats, range(10, 20))
    block = stats.report_block(now=2.0)
    assert (block.fraction_lost, block.cumulative_lost, block.highest_seq) == (0, 1, 19)


def test_interval_fraction_lost_a3() -> None:
    # Interval 1: 0..3 all received. Interval 2: 4..11 with 5, 6, 9 lost:
    # expected_interval = 11 - 3 = 8, received_interval = 5, lost_interval = 3,
    # fraction = (3 << 8) // 8 = 96 (37.5%).
    stats = ReceiverStats(1, RATE)
    feed(stats, range(4))
    assert stats.report_block(1.0).fraction_lost == 0
    feed(stats, [4, 7, 8, 10, 11])
    block = stats.report_block(2.0)
    assert (block.fraction_lost, block.cumulative_lost) == (96, 3)
    # Empty interval: no new packets -> fraction 0.
    assert stats.report_block(3.0).fraction_lost == 0


def test_probation_keeps_first_packets_in_the_counts() -> None:
    stats = ReceiverStats(1, RATE)
    feed(stats, [100])
    assert not stats.valid
    assert stats.expected == 0
    assert stats.report_block(0.0).cumulative_lost == 0
    feed(stats, [101])
    assert stats.valid
    assert (stats.expected, stats.received) == (2, 2)


def test_probation_restarts_on_a_break() -> None:
    # 5 then 9 is not sequential: the run restarts at 9; 9, 10 validate, base 9.
    # Packet 5 counts in packets/bytes only.
    stats = ReceiverStats(1, RATE)
    feed(stats, [5, 9, 10, 11])
    snap = stats.snapshot()
    assert (snap.packets, snap.bytes, snap.received, snap.expected, snap.lost) == (
        4,
        4 * 172,
        3,
        3,
        0,
    )


def test_min_sequential_one_trusts_the_first_packet() -> None:
    stats = ReceiverStats(1, RATE, min_sequential=1)
    feed(stats, [7])
    assert stats.valid and (stats.expected, stats.received) == (1, 1)
    with pytest.raises(ValueError):
        ReceiverStats(1, RATE, min_sequential=0)


def test_wrap_65535_to_0() -> None:
    # 65530..65535 then 0..5: extended highest = 65536 (one cycle) + 5 = 65541 = 0x00010005;
    # expected = 65541 - 65530 + 1 = 12.
    stats = ReceiverStats(1, RATE)
    feed(stats, range(65530, 65542))
    assert stats.extended_highest_seq == 0x00010005
    assert stats.report_block(1.0).highest_seq == 0x00010005
    assert (stats.expected, stats.lost, stats.out_of_order) == (12, 0, 0)


def test_probation_run_across_the_wrap_counts_a_cycle() -> None:
    # 65535, 0: the run wrapped, so the extended highest is 1 cycle + 0 = 65536.
    stats = ReceiverStats(1, RATE)
    feed(stats, [65535, 65536, 65537])
    assert (stats.extended_highest_seq, stats.expected, stats.lost) == (65537, 3, 0)
    # A restart onto 65535, 0 likewise.
    stats = ReceiverStats(1, RATE)
    feed(stats, [*range(100, 110), 65535, 65536, 65537])
    assert (stats.restarts, stats.extended_highest_seq, stats.expected, stats.lost) == (
        1,
        65537,
        13,
        0,
    )
    feed(stats, [65536])  # a copy of 0, in the new run's window
    assert stats.duplicates == 1


def test_reordered_packet_is_out_of_order_not_lost() -> None:
    stats = ReceiverStats(1, RATE)
    feed(stats, [0, 1, 2, 4, 3, 5])
    snap = stats.snapshot()
    assert (snap.out_of_order, snap.duplicates, snap.lost, snap.expected) == (1, 0, 0, 6)


def test_reorder_across_the_wrap() -> None:
    # 65534, 65535, 1, 0, 2: 0 arrives after 1, from the new cycle.
    stats = ReceiverStats(1, RATE)
    feed(stats, [65534, 65535, 65537, 65536, 65538])
    snap = stats.snapshot()
    assert (snap.expected, snap.lost, snap.out_of_order, snap.highest_seq) == (5, 0, 1, 65538)


def test_duplicates_worked_example() -> None:
    # 0, 1, 2, 2 (copy of the highest), 3, 1 (late copy): received counts both copies
    # (RFC 3550 6.4.1), so lost = expected 4 - received 6 = -2; missing = 4 - (6 - 2) = 0.
    stats = ReceiverStats(1, RATE)
    feed(stats, [0, 1, 2, 2, 3, 1])
    snap = stats.snapshot()
    assert (snap.received, snap.expected, snap.lost, snap.missing) == (6, 4, -2, 0)
    assert (snap.duplicates, snap.out_of_order) == (2, 0)
    block = stats.report_block(1.0)
    assert (block.cumulative_lost, block.fraction_lost) == (-2, 0)


def test_packet_older_than_the_first_moves_the_base() -> None:
    # 1, 2 validate (base 1); 0 arrives late: base 0, expected 4 with 3, nothing lost.
    stats = ReceiverStats(1, RATE)
    feed(stats, [1, 2, 0, 3])
    assert (stats.expected, stats.lost, stats.out_of_order) == (4, 0, 1)


def test_misorder_and_dropout_limits() -> None:
    # Late window: udelta > 65536 - MAX_MISORDER, so 99 behind is late, 100 behind a jump.
    stats = ReceiverStats(1, RATE)
    feed(stats, [0, 1, *range(2, 201, 2)])  # 0, 1, then even seqs to 200: odd ones missing
    feed(stats, [101])  # 99 behind 200: late, counted
    assert (stats.out_of_order, stats.discarded) == (1, 0)
    feed(stats, [100])  # 100 behind 200: treated as a jump, ignored
    assert (stats.out_of_order, stats.discarded) == (1, 1)
    # Forward: a gap of udelta 2999 is a loss; 3000 a jump.
    stats = ReceiverStats(1, RATE)
    feed(stats, [0, 1, 3000])
    assert (stats.expected, stats.lost, stats.discarded) == (3001, 2998, 0)
    feed(stats, [6000])
    assert stats.discarded == 1


def test_restart_after_two_sequential_jumped_packets() -> None:
    # 0..9, then 5000 (ignored once), 5001 (follows it: the source restarted). The old run
    # expected 10; the new run starts at 5000 and counts it: expected 10 + 2 = 12.
    stats = ReceiverStats(1, RATE)
    feed(stats, range(10))
    feed(stats, [5000])
    assert (stats.discarded, stats.received) == (1, 10)
    feed(stats, [5001, 5002])
    snap = stats.snapshot()
    assert (snap.restarts, snap.discarded, snap.received, snap.expected, snap.lost) == (
        1,
        0,
        13,
        13,
        0,
    )
    assert snap.highest_seq == 5002


def test_single_stray_jump_is_ignored() -> None:
    stats = ReceiverStats(1, RATE)
    feed(stats, [*range(10), 30000, 10, 11])
    snap = stats.snapshot()
    assert (snap.discarded, snap.restarts, snap.received, snap.lost, snap.packets) == (
        1,
        0,
        12,
        0,
        13,
    )


def test_jitter_worked_example_a8() -> None:
    # 8 kHz, ts step 160 (20 ms). Arrivals 0, 20, 45, 60 ms.
    # D(0,1) = 160 - 160 = 0 -> J = 0
    # D(1,2) = 0.025 * 8000 - 160 = 40 -> J = 0 + (40 - 0) / 16 = 2.5
    # D(2,3) = 0.015 * 8000 - 160 = -40 -> J = 2.5 + (40 - 2.5) / 16 = 4.84375
    # In ms: 4.84375 / 8000 * 1000 = 0.60546875; report block: int(4.84375) = 4.
    stats = ReceiverStats(1, RATE)
    for i, arrival in enumerate([0.0, 0.020, 0.045, 0.060]):
        stats.on_packet(i, 160 * i, arrival, 172)
    assert stats.jitter == pytest.approx(4.84375)
    assert stats.jitter_ms == pytest.approx(0.60546875)
    assert stats.report_block(1.0).jitter == 4


def test_jitter_across_timestamp_wrap() -> None:
    # Timestamps 2**32 - 160, 0, 160 with on-time arrivals: D = 0 each time, J = 0.
    stats = ReceiverStats(1, RATE)
    for i, ts in enumerate([0xFFFFFF60, 0, 160]):
        stats.on_packet(i, ts, 0.02 * i, 172)
    assert stats.jitter == pytest.approx(0.0, abs=1e-9)


def test_lsr_and_dlsr_in_report_block() -> None:
    # SR with NTP of Unix 1.5 s: LSR = middle 32 bits = 0x7E818000. Received at 10.0,
    # report at 12.25: DLSR = 2.25 * 65536 = 147456 = 0x24000.
    stats = ReceiverStats(1, RATE)
    feed(stats, range(3))
    assert (stats.report_block(5.0).lsr, stats.report_block(5.0).dlsr) == (0, 0)
    stats.on_sender_report(SenderReport(1, ntp_from_unix(1.5), 0, 0, 0), arrival=10.0)
    block = stats.report_block(12.25)
    assert (block.lsr, block.dlsr) == (0x7E818000, 0x24000)


def test_round_trip_through_sender_and_receiver_stats() -> None:
    # A sends an SR at t=1000.0; B receives it at 1000.030, reports at 1000.530
    # (DLSR 0.5 s); A receives the RR at 1000.560: RTT = 0.560 - 0.500 = 0.060 s
    # (to the 1/65536 s resolution of the fields).
    sender = SenderStats(0xA)
    receiver = ReceiverStats(0xA, RATE)
    feed(receiver, range(3))
    sr = sender.sender_report(1000.0, rtp_timestamp=1234)
    receiver.on_sender_report(sr, arrival=1000.030)
    block = receiver.report_block(1000.530)
    rtt = sender.on_report_block(block, arrival=1000.560)
    assert rtt == pytest.approx(0.060, abs=2 / 65536)
    assert sender.rtt == rtt and sender.rtt_count == 1
    assert sender.rtt_mean == rtt and sender.rtt_min == rtt and sender.rtt_max == rtt
    assert sender.last_report == block


def test_sender_stats_counts_and_sr_fields() -> None:
    sender = SenderStats(0x1234)
    for _ in range(3):
        sender.on_sent(160)
    sr = sender.sender_report(1.5, rtp_timestamp=2**32 + 5)
    assert (sr.ssrc, sr.packet_count, sr.octet_count, sr.rtp_timestamp) == (0x1234, 3, 480, 5)
    assert sr.ntp_timestamp == 0x83AA7E81_80000000
    sender.octets = 2**32 + 7  # the SR field wraps modulo 2**32
    assert sender.sender_report(1.5, 0).octet_count == 7
    assert SenderStats(1).rtt_mean is None


def test_cumulative_lost_clamped_to_24_bits() -> None:
    stats = ReceiverStats(1, RATE)
    feed(stats, range(3))
    stats._expected_offset = 0x900000  # white box: a lot of earlier loss
    assert stats.report_block(1.0).cumulative_lost == 0x7FFFFF
    stats._expected_offset = 0
    stats._received = 0x900000  # and a flood of duplicates
    assert stats.report_block(2.0).cumulative_lost == -0x800000


def test_snapshot_loss_pct_and_dict() -> None:
    stats = ReceiverStats(9, RATE)
    feed(stats, [0, 1, 2, 3, 5, 6, 7, 8, 9])  # 1 of 10 missing
    snap = stats.snapshot()
    assert snap.loss_pct == pytest.approx(10.0)
    d = snap.as_dict()
    assert d["ssrc"] == 9 and d["missing"] == 1 and d["valid"] is True
    assert ReceiverStats(1, RATE).snapshot().loss_pct == 0.0


# --- properties ---------------------------------------------------------------------------


@st.composite
def delivery(draw: st.DrawFn) -> tuple[int, int, list[int], list[int]]:
    """A run of n sequence numbers from ``start`` (any 16-bit value, so it may wrap),
    some dropped, the rest delivered with bounded reordering (< 50 places), some
    duplicated right after the original. Returns (start, n, kept offsets, delivery order
    as offsets)."""
    start = draw(st.integers(0, 0xFFFF))
    n = draw(st.integers(1, 300))
    drop_p = draw(st.sampled_from([0.0, 0.05, 0.3, 0.9]))
    spread = draw(st.sampled_from([1, 3, 50]))
    dup_p = draw(st.sampled_from([0.0, 0.1, 0.5]))
    rng = random.Random(draw(st.integers(0, 2**32)))  # a seed: fast, reproducible
    kept = [i for i in range(n) if rng.random() >= drop_p] or [0]
    keyed = sorted((i + rng.randrange(spread), i) for i in kept)
    delivered: list[int] = []
    for _, i in keyed:
        delivered += [i, i] if rng.random() < dup_p else [i]
    return start, n, kept, delivered


@given(delivery())
def test_loss_accounting_for_any_drop_reorder_duplicate_pattern(
    case: tuple[int, int, list[int], list[int]],
) -> None:
    start, _n, kept, delivered = case
    stats = ReceiverStats(1, RATE, min_sequential=1)
    for i in delivered:
        stats.on_packet((start + i) & 0xFFFF, 160 * i, 0.02 * i, 100)
    snap = stats.snapshot()
    span = max(kept) - min(kept) + 1
    copies = len(delivered) - len(kept)
    # Expected covers the lowest to the highest delivered; missing = never received.
    assert snap.expected == span
    assert snap.missing == span - len(kept)
    assert snap.lost == snap.expected - snap.received == span - len(kept) - copies
    assert snap.duplicates == copies
    # Out of order: arrived below the highest seen so far and not a copy.
    highest, late, seen = -1, 0, set()
    for i in delivered:
        if i not in seen and i < highest:
            late += 1
        seen.add(i)
        highest = max(highest, i)
    assert snap.out_of_order == late
    # Extended highest: the first packet's 16-bit seq, plus how far the highest is past it.
    first = delivered[0]
    assert snap.highest_seq == ((start + first) & 0xFFFF) + max(kept) - first


@given(st.integers(0, 0xFFFF), st.integers(2, 2000), st.sets(st.integers(2, 1999)))
def test_in_order_stream_with_drops_across_wrap(start: int, n: int, drops: set[int]) -> None:
    drops = {d for d in drops if d < n - 1}  # first two validate, last one present
    stats = ReceiverStats(1, RATE)  # default probation of 2
    for i in range(n):
        if i not in drops:
            stats.on_packet((start + i) & 0xFFFF, 160 * i, 0.02 * i, 100)
    # Extended highest = start + n - 1 unwrapped: the cycles count every 65535 -> 0.
    assert stats.extended_highest_seq == start + n - 1
    assert stats.report_block(1.0).highest_seq == start + n - 1
    assert stats.expected == n
    assert stats.lost == len(drops)
    assert stats.out_of_order == 0 and stats.duplicates == 0


@given(
    st.lists(st.tuples(st.floats(0.0, 0.1), st.integers(-480, 480)), min_size=2, max_size=60),
    st.integers(0, 0xFFFFFFFF),
)
def test_jitter_matches_a_direct_float_a8(steps: list[tuple[float, int]], ts0: int) -> None:
    # Arrival gaps and timestamp steps at random, backwards too (a reordered packet);
    # the timestamps start anywhere in 32 bits, so they often wrap, both ways.
    # Reference: A.8's definition on the unwrapped values.
    stats = ReceiverStats(1, RATE, min_sequential=1)
    arrival, ts = 1000.0, ts0
    j = 0.0
    prev: tuple[float, int] | None = None
    for seq, (gap, step) in enumerate(steps):
        arrival += gap
        ts += step
        stats.on_packet(seq, ts & 0xFFFFFFFF, arrival, 100)
        if prev is not None:
            d = (arrival - prev[0]) * RATE - (ts - prev[1])
            j += (abs(d) - j) / 16
        prev = (arrival, ts)
    assert stats.jitter == pytest.approx(j, rel=1e-9, abs=1e-6)


@given(st.lists(st.integers(0, 3), min_size=20, max_size=200))
def test_fraction_lost_matches_interval_arithmetic(gaps: list[int]) -> None:
    # Gaps of 0..3 lost packets between received ones; a report every 10 packets.
    stats = ReceiverStats(1, RATE, min_sequential=1)
    seq = 0
    prior_expected = prior_received = 0
    for k, gap in enumerate(gaps):
        stats.on_packet(seq & 0xFFFF, 160 * seq, 0.02 * seq, 100)
        seq += gap + 1
        if k % 10 == 9:
            exp_i = stats.expected - prior_expected
            rec_i = stats.received - prior_received
            prior_expected, prior_received = stats.expected, stats.received
            lost_i = exp_i - rec_i
            want = 0 if exp_i == 0 or lost_i <= 0 else (lost_i << 8) // exp_i
            assert stats.report_block(float(k)).fraction_lost == want
