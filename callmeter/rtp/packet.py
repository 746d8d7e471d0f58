"""RTP fixed header packing and parsing (RFC 3550 section 5.1), sans-IO.

Two levels of API:

* :class:`RtpHeader` with :meth:`RtpHeader.pack` and :func:`parse`: the whole header
  (CSRC list, header extension per section 5.3.1, padding), for tests, tools and the
  rare packet that needs it.
* Hot-path helpers that touch only the 12-byte fixed header: :func:`build_packet` and
  :class:`PacketWriter` on the send side (pre-built payload + pt, marker, seq, ts, SSRC),
  :func:`peek` on the receive side (seq, ts, SSRC, pt, marker, one tuple allocated).

Every malformed input raises :class:`RtpError` (a :class:`ValueError`): the peer broke
the protocol. Out-of-range arguments from our own code raise :class:`ValueError` too.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "FIXED_HEADER_SIZE",
    "RTP_VERSION",
    "PacketWriter",
    "RtpError",
    "RtpExtension",
    "RtpHeader",
    "build_packet",
    "is_rtcp",
    "parse",
    "peek",
]

RTP_VERSION = 2
FIXED_HEADER_SIZE = 12

# V/P/X/CC, M/PT, sequence number, timestamp, SSRC (RFC 3550 section 5.1, figure 1).
_FIXED = struct.Struct("!BBHII")
_EXT = struct.Struct("!HH")
_pack_fixed = _FIXED.pack
_pack_fixed_into = _FIXED.pack_into
_unpack_fixed = _FIXED.unpack_from


class RtpError(ValueError):
    """A datagram that is not a valid RTP packet (the peer broke RFC 3550)."""


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension (RFC 3550 section 5.3.1): 16-bit profile field and its data.

    ``data`` must be a multiple of 4 octets long (the length field counts 32-bit words).
    """

    profile: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The RTP header of RFC 3550 section 5.1 (version is always 2).

    ``padding`` is the number of padding octets at the end of the packet (including the
    final count octet); 0 means the P bit is clear.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} not in 0..127")
        if not 0 <= self.sequence <= 0xFFFF:
            raise ValueError(f"sequence {self.sequence} not in 0..65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp {self.timestamp} not a 32-bit value")
        if not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError(f"SSRC {self.ssrc} not a 32-bit value")
        if len(self.csrcs) > 15:
            raise ValueError("at most 15 CSRCs (CC is 4 bits)")
        if any(not 0 <= c <= 0xFFFFFFFF for c in self.csrcs):
            raise ValueError("CSRC not a 32-bit value")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"padding {self.padding} not in 0..255")
        ext = self.extension
        if ext is not None:
            if not 0 <= ext.profile <= 0xFFFF:
                raise ValueError("extension profile not a 16-bit value")
            if len(ext.data) % 4 or len(ext.data) // 4 > 0xFFFF:
                raise ValueError("extension data must be a multiple of 4 octets, < 256 KiB")

    @property
    def size(self) -> int:
        """Length of the header in octets (fixed part, CSRCs and extension)."""
        n = FIXED_HEADER_SIZE + 4 * len(self.csrcs)
        if self.extension is not None:
            n += 4 + len(self.extension.data)
        return n

    def pack(self, payload: bytes = b"") -> bytes:
        """Serialise the header followed by ``payload`` and ``padding`` octets."""
        first = (RTP_VERSION << 6) | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [_pack_fixed(first, second, self.sequence, self.timestamp, self.ssrc)]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            ext = self.extension
            parts.append(_EXT.pack(ext.profile, len(ext.data) // 4))
            parts.append(ext.data)
        parts.append(payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def parse(data: bytes | bytearray | memoryview) -> tuple[RtpHeader, bytes]:
    """Parse a whole RTP packet into its header and payload (padding removed).

    Validates per RFC 3550 section 5.1 and appendix A.1: version 2, room for the CSRC list
    and the extension (whose length field is skipped over correctly), and a padding count
    that fits in the packet. Raises :class:`RtpError` otherwise.
    """
    buf = bytes(data)
    n = len(buf)
    if n < FIXED_HEADER_SIZE:
        raise RtpError(f"RTP packet too short: {n} octets")
    first, second, seq, ts, ssrc = _unpack_fixed(buf)
    if first >> 6 != RTP_VERSION:
        raise RtpError(f"RTP version {first >> 6}, expected 2")
    cc = first & 0x0F
    offset = FIXED_HEADER_SIZE + 4 * cc
    if offset > n:
        raise RtpError(f"CSRC count {cc} exceeds the packet")
    csrcs = struct.unpack_from(f"!{cc}I", buf, FIXED_HEADER_SIZE) if cc else ()
    extension = None
    if first & 0x10:
        if offset + 4 > n:
            raise RtpError("header extension truncated")
        profile, words = _EXT.unpack_from(buf, offset)
        end = offset + 4 + 4 * words
        if end > n:
            raise RtpError(f"header extension length {words} words exceeds the packet")
        extension = RtpExtension(profile, buf[offset + 4 : end])
        offset = end
    padding = 0
    end = n
    if first & 0x20:
        padding = buf[-1]
        if padding == 0 or offset + padding > n:
            raise RtpError(f"invalid padding count {padding}")
        end = n - padding
    header = RtpHeader(
        payload_type=second & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        marker=bool(second & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
        padding=padding,
    )
    return header, buf[offset:end]


def peek(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int, bool]:
    """Return ``(seq, ts, ssrc, payload_type, marker)`` from the fixed header, fast.

    The receive path's parser: it reads only the 12-byte fixed header (RFC 3550 section
    5.1), checks the length and the version, and allocates one tuple. CSRCs, extension
    and padding are neither needed for statistics nor checked here; use :func:`parse`
    for the payload.
    """
    if len(data) < 12:
        raise RtpError(f"RTP packet too short: {len(data)} octets")
    first, second, seq, ts, ssrc = _unpack_fixed(data)
    if first & 0xC0 != 0x80:
        raise RtpError(f"RTP version {first >> 6}, expected 2")
    return seq, ts, ssrc, second & 0x7F, second > 0x7F


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True when a datagram on a multiplexed port is RTCP (RFC 5761 section 4).

    RTCP packet types 192..223 occupy the second octet where RTP has marker + PT;
    RFC 5761 reserves that range so the two can share a port.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def build_packet(
    payload: bytes, payload_type: int, marker: bool, seq: int, ts: int, ssrc: int
) -> bytes:
    """Build a minimal RTP packet (no CSRC, extension or padding) around ``payload``.

    One ``struct.pack`` and one concatenation; the caller keeps ``seq`` in 0..65535 and
    ``ts`` / ``ssrc`` in 32 bits (``struct.error`` otherwise).
    """
    return _pack_fixed(0x80, (payload_type | 0x80) if marker else payload_type, seq, ts, ssrc) + (
        payload
    )


class PacketWriter:
    """Build packets into one reusable buffer with ``struct.pack_into`` (no allocation).

    :meth:`write` returns a memoryview over the internal buffer, valid until the next
    call: hand it straight to ``socket.send``/``sendto``. One writer per sending loop
    (the pacer), shared by all of its streams.
    """

    __slots__ = ("_buf", "_size", "_view")

    def __init__(self, max_payload: int = 1500) -> None:
        self._size = FIXED_HEADER_SIZE + max_payload
        self._buf = bytearray(self._size)
        self._view = memoryview(self._buf)

    def write(
        self, payload: bytes, payload_type: int, marker: bool, seq: int, ts: int, ssrc: int
    ) -> memoryview:
        """Write header + ``payload`` into the buffer and return a view of the packet."""
        end = FIXED_HEADER_SIZE + len(payload)
        if end > self._size:
            raise ValueError(f"payload of {len(payload)} octets exceeds the writer's buffer")
        buf = self._buf
        _pack_fixed_into(
            buf, 0, 0x80, (payload_type | 0x80) if marker else payload_type, seq, ts, ssrc
        )
        buf[FIXED_HEADER_SIZE:end] = payload
        return self._view[:end]
