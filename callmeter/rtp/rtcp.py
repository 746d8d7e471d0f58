"""RTCP packets, compound packets, NTP time and RTT (RFC 3550 section 6), sans-IO.

* SR (6.4.1), RR (6.4.2) with their report blocks, SDES with CNAME (6.5), BYE (6.6):
  frozen dataclasses with ``pack()``; :func:`parse_compound` turns a datagram into a list
  of them, checking versions, lengths and padding (appendix A.2) and skipping packet types
  it does not know (APP 204, XR 207, feedback 205/206 ...).
* :func:`build_compound` orders a compound packet per section 6.1: SR or RR first (more
  than 31 report blocks continue in extra RR packets), then SDES with the CNAME, then BYE.
* NTP timestamps (section 4): :func:`ntp_from_unix`, :func:`ntp_middle32`; LSR/DLSR and
  the round-trip time of section 6.4.1 (:func:`rtt_seconds`).
* Report interval: the pacer sends every ~5 s; :func:`randomized_interval` (section 6.3.1,
  0.5 to 1.5 times) and :func:`rtcp_interval` (appendix A.7) are here when wanted. Both
  take the ``random.Random`` to draw from, so tests are deterministic.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "NTP_UNIX_OFFSET",
    "PT_APP",
    "PT_BYE",
    "PT_RR",
    "PT_SDES",
    "PT_SR",
    "SDES_CNAME",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpError",
    "RtcpPacket",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "build_compound",
    "dlsr_from_seconds",
    "ntp_from_unix",
    "ntp_middle32",
    "parse_compound",
    "randomized_interval",
    "report_blocks",
    "rtcp_interval",
    "rtt_seconds",
    "unix_from_ntp",
]

PT_SR = 200
PT_RR = 201
PT_SDES = 202
PT_BYE = 203
PT_APP = 204
SDES_CNAME = 1

#: Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
NTP_UNIX_OFFSET = 2_208_988_800

_MAX_COUNT = 31  # RC / SC are 5-bit fields
_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP ts, packet count, octet count
_SSRC = struct.Struct("!I")
_U32 = 0xFFFFFFFF


class RtcpError(ValueError):
    """A datagram that is not a valid RTCP (compound) packet (the peer broke RFC 3550)."""


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _U32:
        raise ValueError(f"{name} {value} not a 32-bit value")


def _header(padding: bool, count: int, packet_type: int, body_len: int) -> bytes:
    # Length is "the length of this RTCP packet in 32-bit words minus one" (6.4.1).
    return _HEADER.pack(0x80 | (0x20 if padding else 0) | count, packet_type, body_len // 4)


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 section 6.4.1).

    ``fraction_lost`` is the 8-bit fixed-point fraction (lost/expected * 256) of the last
    interval; ``cumulative_lost`` the 24-bit signed total; ``highest_seq`` the extended
    highest sequence number; ``jitter`` in timestamp units; ``lsr`` the middle 32 bits of
    the last SR's NTP timestamp (0: none yet) and ``dlsr`` the delay since it in 1/65536 s.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    def __post_init__(self) -> None:
        if (
            0 <= self.fraction_lost <= 255
            and -0x800000 <= self.cumulative_lost <= 0x7FFFFF
            and 0 <= self.ssrc <= _U32
            and 0 <= self.highest_seq <= _U32
            and 0 <= self.jitter <= _U32
            and 0 <= self.lsr <= _U32
            and 0 <= self.dlsr <= _U32
        ):
            return  # every RTCP report builds and parses these: one test when all is well
        if not 0 <= self.fraction_lost <= 255:
            raise ValueError(f"fraction lost {self.fraction_lost} not in 0..255")
        if not -0x800000 <= self.cumulative_lost <= 0x7FFFFF:
            raise ValueError(f"cumulative lost {self.cumulative_lost} not a 24-bit signed value")
        for name in ("ssrc", "highest_seq", "jitter", "lsr", "dlsr"):
            _check_u32(name, getattr(self, name))

    def pack(self) -> bytes:
        """The 24 octets of the block."""
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost << 24) | (self.cumulative_lost & 0xFFFFFF),
            self.highest_seq,
            self.jitter,
            self.lsr,
            self.dlsr,
        )

    @classmethod
    def unpack_from(cls, data: bytes, offset: int) -> ReportBlock:
        """Read one block at ``offset`` (the caller checked that 24 octets are there)."""
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR: sender info and up to 31 report blocks (RFC 3550 section 6.4.1)."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def __post_init__(self) -> None:
        if (
            0 <= self.ssrc <= _U32
            and 0 <= self.rtp_timestamp <= _U32
            and 0 <= self.packet_count <= _U32
            and 0 <= self.octet_count <= _U32
            and 0 <= self.ntp_timestamp < 1 << 64
            and len(self.reports) <= _MAX_COUNT
        ):
            return
        for name in ("ssrc", "rtp_timestamp", "packet_count", "octet_count"):
            _check_u32(name, getattr(self, name))
        if not 0 <= self.ntp_timestamp < 1 << 64:
            raise ValueError("NTP timestamp not a 64-bit value")
        if len(self.reports) > _MAX_COUNT:
            raise ValueError("at most 31 report blocks per SR (use build_compound)")

    def pack(self) -> bytes:
        """Serialise (no padding, no profile extension)."""
        body = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        ) + b"".join(block.pack() for block in self.reports)
        return _header(False, len(self.reports), PT_SR, len(body)) + body


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR: the reporter's SSRC and up to 31 report blocks (RFC 3550 section 6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def __post_init__(self) -> None:
        _check_u32("ssrc", self.ssrc)
        if len(self.reports) > _MAX_COUNT:
            raise ValueError("at most 31 report blocks per RR (use build_compound)")

    def pack(self) -> bytes:
        """Serialise (no padding, no profile extension)."""
        body = _SSRC.pack(self.ssrc) + b"".join(block.pack() for block in self.reports)
        return _header(False, len(self.reports), PT_RR, len(body)) + body


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC/CSRC and its items as ``(type, value)`` (section 6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> bytes | None:
        """The CNAME item (6.5.1), or None."""
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value
        return None

    def pack(self) -> bytes:
        """The chunk: SSRC, items, a null item and padding to a 32-bit boundary."""
        out = bytearray(_SSRC.pack(self.ssrc))
        for item_type, value in self.items:
            if not 1 <= item_type <= 255 or len(value) > 255:
                raise ValueError("SDES item type must be 1..255 and value at most 255 octets")
            out += bytes((item_type, len(value))) + value
        # "terminated by one or more null octets ... padded to the next 32-bit boundary"
        out += bytes(4 - len(out) % 4)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES: up to 31 chunks (RFC 3550 section 6.5)."""

    chunks: tuple[SdesChunk, ...]

    def pack(self) -> bytes:
        """Serialise the SDES packet."""
        if len(self.chunks) > _MAX_COUNT:
            raise ValueError("at most 31 SDES chunks")
        body = b"".join(chunk.pack() for chunk in self.chunks)
        return _header(False, len(self.chunks), PT_SDES, len(body)) + body


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE: the leaving SSRCs and an optional reason (RFC 3550 section 6.6)."""

    ssrcs: tuple[int, ...]
    reason: bytes = b""

    def pack(self) -> bytes:
        """Serialise the BYE packet, the reason padded to a 32-bit boundary."""
        if len(self.ssrcs) > _MAX_COUNT or len(self.reason) > 255:
            raise ValueError("BYE carries at most 31 SSRCs and a 255-octet reason")
        body = b"".join(_SSRC.pack(s) for s in self.ssrcs)
        if self.reason:
            text = bytes((len(self.reason),)) + self.reason
            body += text + bytes(-len(text) % 4)
        return _header(False, len(self.ssrcs), PT_BYE, len(body)) + body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye


def build_compound(
    report: SenderReport | ReceiverReport,
    cname: bytes | str,
    bye: Bye | None = None,
    extra_blocks: Sequence[ReportBlock] = (),
) -> bytes:
    """A compound packet in the order of RFC 3550 section 6.1.

    ``report`` (SR or RR) comes first; ``extra_blocks`` beyond its own (when there are
    more than 31 sources, 6.4.2) follow in additional RR packets from the same SSRC; then
    SDES with the CNAME of ``report.ssrc``; then ``bye`` when the stream ends (6.6).
    """
    name = cname.encode() if isinstance(cname, str) else cname
    parts = [report.pack()]
    for start in range(0, len(extra_blocks), _MAX_COUNT):
        rr = ReceiverReport(report.ssrc, tuple(extra_blocks[start : start + _MAX_COUNT]))
        parts.append(rr.pack())
    chunk = SdesChunk(report.ssrc, ((SDES_CNAME, name),))
    parts.append(SourceDescription((chunk,)).pack())
    if bye is not None:
        parts.append(bye.pack())
    return b"".join(parts)


def parse_compound(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Parse a (compound) RTCP datagram into its SR, RR, SDES and BYE packets.

    Checks of appendix A.2: every packet has version 2 and a length that fits, the lengths
    add up to the datagram, and only the last packet may be padded (with a sane count).
    Each packet's count field must fit its length. Packet types other than SR, RR, SDES
    and BYE (APP, XR, RTPFB, ...) are skipped. The first packet is not required to be an
    SR or RR, so reduced-size RTCP (RFC 5506) and a bare BYE are accepted too.
    """
    buf = bytes(data)
    total = len(buf)
    if total < 4:
        raise RtcpError(f"RTCP datagram too short: {total} octets")
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < total:
        if offset + 4 > total:
            raise RtcpError("truncated RTCP header")
        first, packet_type, words = _HEADER.unpack_from(buf, offset)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version {first >> 6}, expected 2")
        end = offset + 4 * (words + 1)
        if end > total:
            raise RtcpError(f"RTCP length {words} exceeds the datagram")
        body_end = end
        if first & 0x20:
            if end != total:
                raise RtcpError("padding bit set on a packet that is not the last")
            pad = buf[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise RtcpError(f"invalid RTCP padding count {pad}")
            body_end = end - pad
        count = first & 0x1F
        parsed = _parse_one(buf, packet_type, count, offset + 4, body_end)
        if parsed is not None:
            packets.append(parsed)
        offset = end
    return packets


def _parse_one(buf: bytes, packet_type: int, count: int, start: int, end: int) -> RtcpPacket | None:
    if packet_type == PT_SR:
        if start + 24 + 24 * count > end:
            raise RtcpError(f"SR too short for {count} report blocks")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(buf, start)
        blocks = _blocks(buf, start + 24, count)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, blocks)
    if packet_type == PT_RR:
        if start + 4 + 24 * count > end:
            raise RtcpError(f"RR too short for {count} report blocks")
        return ReceiverReport(_SSRC.unpack_from(buf, start)[0], _blocks(buf, start + 4, count))
    if packet_type == PT_SDES:
        return SourceDescription(_sdes_chunks(buf, count, start, end))
    if packet_type == PT_BYE:
        if start + 4 * count > end:
            raise RtcpError(f"BYE too short for {count} SSRCs")
        ssrcs = struct.unpack_from(f"!{count}I", buf, start)
        pos = start + 4 * count
        reason = b""
        if pos < end:
            length = buf[pos]
            if pos + 1 + length > end:
                raise RtcpError("BYE reason exceeds the packet")
            reason = buf[pos + 1 : pos + 1 + length]
        return Bye(tuple(ssrcs), reason)
    return None  # APP, XR, feedback and unknown types: skipped (section 6.1 allows it)


def _blocks(buf: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    return tuple(ReportBlock.unpack_from(buf, offset + 24 * i) for i in range(count))


def _sdes_chunks(buf: bytes, count: int, pos: int, end: int) -> tuple[SdesChunk, ...]:
    chunks = []
    for _ in range(count):
        if pos + 4 > end:
            raise RtcpError("SDES chunk truncated")
        ssrc = _SSRC.unpack_from(buf, pos)[0]
        pos += 4
        items: list[tuple[int, bytes]] = []
        while True:
            if pos >= end:
                raise RtcpError("SDES chunk without its null terminator")
            item_type = buf[pos]
            if item_type == 0:
                pos += 1
                break
            if pos + 2 > end or pos + 2 + buf[pos + 1] > end:
                raise RtcpError("SDES item exceeds the packet")
            length = buf[pos + 1]
            items.append((item_type, buf[pos + 2 : pos + 2 + length]))
            pos += 2 + length
        pos += -pos % 4  # remaining null octets up to the 32-bit boundary
        if pos > end:
            raise RtcpError("SDES chunk padding exceeds the packet")
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return tuple(chunks)


# --- NTP time (RFC 3550 section 4) and round-trip time (section 6.4.1) ---------------


def ntp_from_unix(unix_time: float) -> int:
    """The 64-bit NTP timestamp (32.32 fixed point since 1900) of a Unix time."""
    seconds = math.floor(unix_time)
    fraction = int((unix_time - seconds) * 4294967296.0)
    return (((seconds + NTP_UNIX_OFFSET) & _U32) << 32) | min(fraction, _U32)


def unix_from_ntp(ntp: int) -> float:
    """The Unix time of a 64-bit NTP timestamp (era 0, before 2036)."""
    return (ntp >> 32) - NTP_UNIX_OFFSET + (ntp & _U32) / 4294967296.0


def ntp_middle32(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field of a report block (16.16 s)."""
    return (ntp >> 16) & _U32


def dlsr_from_seconds(delay: float) -> int:
    """DLSR: the delay since the last SR in units of 1/65536 s, clamped to 32 bits."""
    return max(0, min(int(delay * 65536.0), _U32))


def rtt_seconds(lsr: int, dlsr: int, arrival_unix: float) -> float | None:
    """Round-trip time from a report block about us that arrived at ``arrival_unix``.

    RFC 3550 section 6.4.1: RTT = A - LSR - DLSR in 1/65536 s, modulo 2**32, where A is
    the middle 32 bits of the arrival's NTP time. LSR 0 means the peer has not received
    an SR yet: no RTT (None). A result a little below zero (under 1 ms, from the 1/65536 s
    rounding on a near-zero round trip) is 0.0; a more negative one means a bogus DLSR
    from the peer and gives None.
    """
    if lsr == 0:
        return None
    arrival = ntp_middle32(ntp_from_unix(arrival_unix))
    diff = (arrival - lsr - dlsr) & _U32
    if diff >= 0x80000000:
        diff -= 0x100000000
        return 0.0 if diff > -66 else None
    return diff / 65536.0


def randomized_interval(interval: float, rng: random.Random) -> float:
    """``interval`` scaled by a uniform factor in [0.5, 1.5) (RFC 3550 section 6.3.1)."""
    return interval * (rng.random() + 0.5)


def rtcp_interval(
    members: int,
    senders: int,
    rtcp_bw: float,
    we_sent: bool,
    avg_rtcp_size: float,
    initial: bool,
    rng: random.Random,
) -> float:
    """The randomized RTCP transmission interval of RFC 3550 appendix A.7, in seconds.

    ``rtcp_bw`` in octets per second (5% of the session bandwidth), ``avg_rtcp_size`` in
    octets including UDP/IP headers. Minimum 5 s (2.5 s before the first report),
    senders' share 25%, randomized by 0.5..1.5 and divided by e - 3/2 (timer
    reconsideration compensation).
    """
    min_time = 2.5 if initial else 5.0
    n = members
    if senders <= members * 0.25:
        if we_sent:
            rtcp_bw *= 0.25
            n = senders
        else:
            rtcp_bw *= 0.75
            n -= senders
    t = avg_rtcp_size * n / rtcp_bw if rtcp_bw > 0 else min_time
    t = max(t, min_time)
    return randomized_interval(t, rng) / (math.e - 1.5)


def report_blocks(packets: Iterable[RtcpPacket]) -> Iterable[ReportBlock]:
    """All report blocks of the SR and RR packets among ``packets``, in order."""
    for packet in packets:
        if isinstance(packet, SenderReport | ReceiverReport):
            yield from packet.reports
