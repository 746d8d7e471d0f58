"""Per-SSRC RTP receive and send statistics (RFC 3550 appendix A.1, A.3, A.8), sans-IO.

:class:`ReceiverStats` is fed ``on_packet(seq, rtp_ts, arrival, size)`` for every packet
of one source and costs O(1): it runs for every packet of every stream. The per-packet part
(the next packet in sequence, and the A.8 jitter of every packet) is C, in the base class
:class:`~callmeter.rtp._fastpath.SeqState`, which holds those fields; every other packet
comes back to :meth:`ReceiverStats._unusual` here, on the same fields (bench/rtp_stats.py
and bench/rtp_load.py measure it).

Choices made where RFC 3550 leaves room (each one tested):

* Probation (A.1, ``MIN_SEQUENTIAL`` = 2): a source becomes valid after two packets with
  consecutive sequence numbers. Unlike the A.1 code, which starts counting at the packet
  that ends probation, the packets of the successful probation run are counted too: the
  base sequence number is the run's first packet, so a stream's first packet is not
  reported as lost. A packet that breaks a probation run (a gap, a duplicate) starts a
  new run; the abandoned packets count in ``packets``/``bytes`` but not in the loss
  arithmetic. ``min_sequential=1`` trusts the very first packet (a dedicated, negotiated
  port where strays are not a concern).
* Restart (A.1, ``MAX_DROPOUT`` 3000, ``MAX_MISORDER`` 100): a jump is ignored once
  (``discarded``); a second packet that follows the ignored one re-synchronises. Here the
  re-synchronised run starts at the ignored packet (it is counted), and the expected
  count of the old run is kept, so cumulative loss and ``received`` never go backwards
  (A.1 would reset them). The report block's extended highest sequence restarts, as in
  A.1.
* Late packets (less than ``MAX_MISORDER`` behind the highest): the set of extended
  sequence numbers skipped by the last ``MAX_MISORDER`` tells a reordered packet
  (``out_of_order``: it was missing) from a duplicate (``duplicates``). Packets in
  sequence never touch the set. A reordered packet older than the base sequence number (it was
  overtaken by the stream's first packets) moves the base down, so it is not counted as
  received-but-never-expected. As in RFC 3550 6.4.1, ``received`` includes duplicates, so
  ``lost`` (expected - received) can go negative; ``missing`` (expected - unique packets
  received) does not count duplicates and is the figure to compare with a drop counter.
* Jitter (A.8) uses the float form J += (|D| - J) / 16, with arrival times as floats in
  seconds turned into timestamp units (no rounding of arrivals to clock ticks), and
  timestamp differences taken modulo 2**32 so a timestamp wrap is no jump. Every packet
  that is not discarded as a sequence jump contributes, in arrival order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from callmeter.rtp._fastpath import SendCounters, SeqState
from callmeter.rtp.rtcp import (
    ReportBlock,
    SenderReport,
    dlsr_from_seconds,
    ntp_from_unix,
    ntp_middle32,
    rtt_seconds,
)

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MEDIA_TIMEOUT_S",
    "MIN_SEQUENTIAL",
    "RTP_SEQ_MOD",
    "ReceiverSnapshot",
    "ReceiverStats",
    "SenderStats",
]

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2

#: A stream that should receive and got no RTP for this long while the call is up has
#: "stopped" (and one that never got any has "no_media"). RFC 3550 6.3.5 times a participant
#: out after 5 RTCP intervals (25 s and more): far too long for a test call, where 2 s of
#: nothing is 100 packets at 20 ms, beyond any jitter buffer (a loss burst that long is no
#: longer loss but an outage), and still longer than the delay between a peer's last packet
#: and its BYE or the first retransmission of a lost BYE (T1, 500 ms).
MEDIA_TIMEOUT_S = 2.0

_U32 = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ReceiverSnapshot:
    """Cumulative figures of one received stream, for metrics (no interval reset).

    ``expected``, ``received``, ``lost`` are RFC 3550 A.3's; ``missing`` excludes
    duplicates; ``loss_pct`` is ``missing`` over ``expected``. ``jitter`` is in timestamp
    units, ``jitter_ms`` in milliseconds. ``packets``/``bytes`` count every datagram fed,
    including ones discarded during probation or as a sequence jump.
    """

    ssrc: int
    valid: bool
    packets: int
    bytes: int
    received: int
    expected: int
    lost: int
    missing: int
    loss_pct: float
    duplicates: int
    out_of_order: int
    discarded: int
    restarts: int
    highest_seq: int
    jitter: float
    jitter_ms: float

    def as_dict(self) -> dict[str, int | float | bool]:
        """A JSON-safe dict of the fields."""
        return asdict(self)


class ReceiverStats(SeqState):
    """Receive statistics of one SSRC: RFC 3550 A.1 (sequence), A.3 (loss), A.8 (jitter).

    ``arrival`` times are seconds on the wall clock (``reactor.seconds()``, or the
    kernel's SO_TIMESTAMPNS stamp, which is the same clock); use it for
    :meth:`on_sender_report` and :meth:`report_block` too so that DLSR is right.
    """

    __slots__ = (
        "_bad_seq",
        "_base",
        "_expected_offset",
        "_expected_prior",
        "_lsr",
        "_min_sequential",
        "_missing",
        "_probation",
        "_received_prior",
        "_sr_arrival",
        "clock_rate",
        "discarded",
        "duplicates",
        "out_of_order",
        "restarts",
        "ssrc",
    )

    def __init__(self, ssrc: int, clock_rate: int, min_sequential: int = MIN_SEQUENTIAL) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} must be positive")
        if not 1 <= min_sequential <= MAX_MISORDER:
            raise ValueError(f"min_sequential {min_sequential} not in 1..{MAX_MISORDER}")
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.packets = 0
        self.bytes = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.discarded = 0
        self.restarts = 0
        self._rate = float(clock_rate)
        self._min_sequential = min_sequential
        self._probation = min_sequential
        self._max_seq = -1  # no packet yet
        self._cycles = 0  # count of sequence wraps, shifted (a multiple of RTP_SEQ_MOD)
        self._base = 0  # extended base sequence number (may go below 0, see module doc)
        self._bad_seq = RTP_SEQ_MOD + 1
        self._received = 0
        self._expected_offset = 0  # expected packets of runs before a restart
        self._expected_prior = 0
        self._received_prior = 0
        self._next_seq = -1  # the sequence number that takes the short path; none yet
        self._missing: set[int] = set()  # skipped extended seqs that may still come late
        self._jitter = 0.0
        self._last_ts = 0
        self._last_arrival = 0.0
        self._lsr = 0
        self._sr_arrival = 0.0

    # --- the per-packet path ------------------------------------------------------------

    # on_packet(seq, rtp_ts, arrival, size) is SeqState's (C): the next packet in
    # sequence there, anything else through _unusual; then the A.8 jitter update,
    # D = (Rj - Ri) - (Sj - Si), J += (|D| - J) / 16, timestamps modulo 2**32.

    def _unusual(self, seq: int, rtp_ts: int, arrival: float) -> bool:
        """Every packet but the next in sequence (A.1). True when it gives no jitter sample."""
        if self._probation:
            return self._in_probation(seq, rtp_ts, arrival)
        max_seq = self._max_seq
        udelta = (seq - max_seq) & 0xFFFF
        if 0 < udelta < MAX_DROPOUT:
            # In order, with a permissible gap (A.1): the skipped ones are missing.
            highest = self._cycles + max_seq
            if seq < max_seq:
                self._cycles += RTP_SEQ_MOD
            self._max_seq = seq
            self._next_seq = (seq + 1) & 0xFFFF
            ext = self._cycles + seq
            self._note_missing(max(highest + 1, ext - MAX_MISORDER), ext)
        elif udelta == 0:
            self.duplicates += 1  # a copy of the highest packet
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # A large jump: ignore it once, re-synchronise on a second in sequence.
            if seq != self._bad_seq:
                self._bad_seq = (seq + 1) & 0xFFFF
                self.discarded += 1
                return True
            self._restart(seq, rtp_ts, arrival)
            return True
        else:
            # Late: duplicate or reordered, less than MAX_MISORDER behind (A.1).
            ext = self._cycles + seq
            if seq > max_seq:
                ext -= RTP_SEQ_MOD
            missing = self._missing
            if ext in missing:
                missing.discard(ext)
                self.out_of_order += 1
            elif ext < self._base:
                # Overtaken by the stream's first packets: the base moves down (module doc).
                self._note_missing(ext + 1, self._base)
                self._base = ext
                self.out_of_order += 1
            else:
                self.duplicates += 1
        self._received += 1
        return False

    def _note_missing(self, first: int, end: int) -> None:
        """Extended sequence numbers ``first .. end - 1`` were skipped: a late one may come.

        Only the last MAX_MISORDER can still arrive as reordered (older ones are a jump);
        the set is trimmed to them when it grows.
        """
        missing = self._missing
        missing.update(range(first, end))
        if len(missing) > 2 * MAX_MISORDER:
            oldest = self._cycles + self._max_seq - MAX_MISORDER
            self._missing = {ext for ext in missing if ext >= oldest}

    def _in_probation(self, seq: int, rtp_ts: int, arrival: float) -> bool:
        """Probation (A.1). True when the packet needs no jitter update (the first one)."""
        first = self._max_seq < 0
        if first or seq != (self._max_seq + 1) & 0xFFFF:
            # First packet, or a break in the run: a new run starts here.
            self._probation = self._min_sequential - 1
        else:
            self._probation -= 1
        self._max_seq = seq
        if self._probation == 0:
            # Valid: the run [seq - MIN_SEQUENTIAL + 1, seq] is counted (module doc).
            # If the run crossed 65535 -> 0, that is the first cycle already.
            run = self._min_sequential
            base = (seq - run + 1) & 0xFFFF
            self._cycles = RTP_SEQ_MOD if base > seq else 0
            self._base = base
            self._received += run
            self._next_seq = (seq + 1) & 0xFFFF
        if first:
            self._last_ts = rtp_ts
            self._last_arrival = arrival
        return first

    def _restart(self, seq: int, rtp_ts: int, arrival: float) -> None:
        """The source restarted its sequence (two in sequence after a jump, A.1)."""
        self._expected_offset += self._cycles + self._max_seq - self._base + 1
        self.restarts += 1
        self.discarded -= 1  # the ignored packet before this one is counted after all
        self._received += 2
        base = (seq - 1) & 0xFFFF
        self._cycles = RTP_SEQ_MOD if base > seq else 0  # 65535 then 0: one cycle
        self._max_seq = seq
        self._next_seq = (seq + 1) & 0xFFFF
        self._base = base
        self._bad_seq = RTP_SEQ_MOD + 1
        self._missing = set()
        # The timestamps restarted too: no jitter sample across the discontinuity.
        self._last_ts = rtp_ts
        self._last_arrival = arrival

    def on_other(self, seq: int, rtp_ts: int, arrival: float) -> None:
        """A packet of this SSRC that is not its media: an RFC 4733 event, RFC 3389 comfort
        noise (a second payload type in the same sequence space, RFC 3550 5.1).

        It takes its sequence number, so the media around it is not counted lost, and it
        counts in ``received``; it is not counted in ``packets``/``bytes`` (the stream counts
        it by payload type) and gives no jitter sample: an event's timestamp is the event's
        start, not the media clock. Before the media's first packet it is not counted here.
        """
        if self._probation:
            return
        if seq == self._next_seq:
            self._max_seq = seq
            self._next_seq = (seq + 1) & 0xFFFF
            if seq == 0:
                self._cycles += RTP_SEQ_MOD
            self._received += 1
            return
        last_ts, last_arrival = self._last_ts, self._last_arrival
        self._unusual(seq, rtp_ts, arrival)
        self._last_ts, self._last_arrival = last_ts, last_arrival

    # --- reports ------------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """True once the source passed probation (A.1)."""
        return self._probation == 0

    @property
    def extended_highest_seq(self) -> int:
        """Cycles (shifted) plus the highest sequence number received (A.1)."""
        return self._cycles + self._max_seq if self._probation == 0 else 0

    @property
    def expected(self) -> int:
        """Packets expected: extended highest - base + 1, over all runs (A.3)."""
        if self._probation:
            return 0
        return self._expected_offset + self._cycles + self._max_seq - self._base + 1

    @property
    def received(self) -> int:
        """Packets received and accepted, duplicates included (A.3)."""
        return self._received

    @property
    def lost(self) -> int:
        """Cumulative packets lost, expected - received: negative with duplicates (A.3)."""
        return self.expected - self._received

    @property
    def jitter(self) -> float:
        """Interarrival jitter in timestamp units (A.8)."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds."""
        return self._jitter * 1000.0 / self._rate

    def on_sender_report(self, sr: SenderReport, arrival: float) -> None:
        """Remember the source's last SR for the LSR and DLSR fields (6.4.1)."""
        self._lsr = ntp_middle32(sr.ntp_timestamp)
        self._sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock:
        """The RR block for this source, starting a new loss interval (A.3, 6.4.1).

        Fraction lost is over the interval since the previous call; cumulative lost is
        clamped to the 24-bit signed field; jitter truncated to an integer; DLSR measured
        to ``now`` on the ``arrival`` clock.
        """
        expected = self.expected
        received = self._received
        lost = max(-0x800000, min(expected - received, 0x7FFFFF))
        expected_interval = expected - self._expected_prior
        received_interval = received - self._received_prior
        self._expected_prior = expected
        self._received_prior = received
        lost_interval = expected_interval - received_interval
        if expected_interval <= 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = min((lost_interval << 8) // expected_interval, 255)
        dlsr = dlsr_from_seconds(now - self._sr_arrival) if self._lsr else 0
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            cumulative_lost=lost,
            highest_seq=self.extended_highest_seq & _U32,
            jitter=min(int(self._jitter), _U32),
            lsr=self._lsr,
            dlsr=dlsr,
        )

    def snapshot(self) -> ReceiverSnapshot:
        """Cumulative figures for metrics; does not touch the report interval."""
        expected = self.expected
        missing = expected - (self._received - self.duplicates) if self._probation == 0 else 0
        return ReceiverSnapshot(
            ssrc=self.ssrc,
            valid=self._probation == 0,
            packets=self.packets,
            bytes=self.bytes,
            received=self._received,
            expected=expected,
            lost=expected - self._received,
            missing=missing,
            loss_pct=100.0 * max(missing, 0) / expected if expected > 0 else 0.0,
            duplicates=self.duplicates,
            out_of_order=self.out_of_order,
            discarded=self.discarded,
            restarts=self.restarts,
            highest_seq=self.extended_highest_seq,
            jitter=self._jitter,
            jitter_ms=self.jitter_ms,
        )


class SenderStats(SendCounters):
    """What a sender counts (RFC 3550 6.4.1 sender info) and the RTT it measures.

    ``packets``/``octets`` live in the C base :class:`~callmeter.rtp._fastpath.SendCounters`,
    where the stream's send path counts them; :meth:`on_sent` does the same from Python.
    ``octets`` are payload octets, as the SR's sender's octet count defines them.
    """

    __slots__ = (
        "last_report",
        "rtt",
        "rtt_count",
        "rtt_max",
        "rtt_min",
        "rtt_sum",
        "ssrc",
    )

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.packets = 0
        self.octets = 0
        self.rtt: float | None = None
        self.rtt_count = 0
        self.rtt_sum = 0.0
        self.rtt_min = 0.0
        self.rtt_max = 0.0
        self.last_report: ReportBlock | None = None

    def on_sent(self, payload_size: int) -> None:
        """Count one packet of ``payload_size`` payload octets."""
        self.packets += 1
        self.octets += payload_size

    def sender_report(
        self, now: float, rtp_timestamp: int, reports: tuple[ReportBlock, ...] = ()
    ) -> SenderReport:
        """An SR for wall-clock ``now`` and the RTP timestamp of that same instant (6.4.1).

        Counts wrap modulo 2**32 as the fields do.
        """
        return SenderReport(
            ssrc=self.ssrc,
            ntp_timestamp=ntp_from_unix(now),
            rtp_timestamp=rtp_timestamp & _U32,
            packet_count=self.packets & _U32,
            octet_count=self.octets & _U32,
            reports=reports,
        )

    def on_report_block(self, block: ReportBlock, arrival: float) -> float | None:
        """Take a peer's report block about us; return the RTT sample in seconds, if any.

        RTT = A - LSR - DLSR (6.4.1), with ``arrival`` on the clock our SRs used.
        """
        self.last_report = block
        rtt = rtt_seconds(block.lsr, block.dlsr, arrival)
        if rtt is not None:
            if self.rtt_count == 0 or rtt < self.rtt_min:
                self.rtt_min = rtt
            self.rtt_max = max(self.rtt_max, rtt)
            self.rtt = rtt
            self.rtt_count += 1
            self.rtt_sum += rtt
        return rtt

    @property
    def rtt_mean(self) -> float | None:
        """Mean of the RTT samples in seconds, or None before the first."""
        return self.rtt_sum / self.rtt_count if self.rtt_count else None
