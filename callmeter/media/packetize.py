"""RTP payload formats: encoded frames in, RTP payloads (with their marker bit) out, sans-IO.

- VP8, RFC 7741 section 4: every payload starts with the VP8 payload descriptor (4.2); a frame
  is split into payloads of at most ``max_payload`` bytes (descriptor included) of nearly
  equal size; the S bit is set on the first payload of the frame (partition 0 starts there),
  the partition index (PID) is 0 on every payload, as section 4.2 allows for a sender that does
  not align payloads to partitions; an optional 15-bit PictureID (I bit, M bit set) numbers the
  frames. The marker bit is set on the last payload of a frame (section 4.1).
- H.264, RFC 6184 with packetization-mode=1 (non-interleaved, section 6.3): an Annex B byte
  stream (ITU-T H.264 Annex B start codes) is split into NAL units; a NAL unit that fits
  travels alone as a single NAL unit packet (5.6), a larger one as FU-A fragments (5.8), each
  with the FU indicator (F and NRI of the NAL unit, type 28) and FU header (S on the first,
  E on the last fragment, the NAL unit type). Optionally the small parameter sets that start
  an access unit are aggregated into one STAP-A packet (5.7.1). SPS and PPS are sent before
  every IDR picture (repeated from the last ones seen when the encoder put none there), so a
  receiver joining at any key frame can decode. Access unit delimiters (type 9) are dropped
  (RFC 6184 section 8.1 permits removing them). The marker bit is on the last packet of the
  access unit (5.1).
- Opus, RFC 7587 section 4.2: one Opus packet per RTP payload, as it is.
- G.722 (RFC 3551 section 4.5.2) and G.711: the byte stream cut into equal frames, e.g.
  160 bytes per 20 ms.

RTP timestamps are not written here (the payloads are replayed by every endpoint with its own
sequence numbers and timestamps); ``callmeter.media.encode`` computes the increments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

__all__ = [
    "H264_FU_A",
    "H264_IDR",
    "H264_PPS",
    "H264_SPS",
    "H264_STAP_A",
    "MAX_PAYLOAD",
    "H264Packetizer",
    "Payload",
    "annexb_nal_units",
    "frame_audio",
    "h264_fragment",
    "h264_profile_level_id",
    "nal_type",
    "split_evenly",
    "stap_a",
    "vp8_descriptor",
    "vp8_is_keyframe",
    "vp8_packetize",
]

#: Largest RTP payload produced: fits a 1500-byte MTU with IP, UDP, RTP and SRTP/extension room.
MAX_PAYLOAD = 1200

H264_IDR = 5
H264_SEI = 6
H264_SPS = 7
H264_PPS = 8
H264_AUD = 9
H264_STAP_A = 24
H264_FU_A = 28


class Payload(NamedTuple):
    """One RTP payload and the marker bit of its packet."""

    data: bytes
    marker: bool


def split_evenly(data: bytes, capacity: int) -> list[bytes]:
    """``data`` in the fewest pieces of at most ``capacity`` bytes, sizes differing by <= 1."""
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1 byte, got {capacity}")
    if not data:
        return []
    count = -(-len(data) // capacity)
    base, extra = divmod(len(data), count)
    pieces = []
    offset = 0
    for i in range(count):
        size = base + (1 if i < extra else 0)
        pieces.append(data[offset : offset + size])
        offset += size
    return pieces


# VP8, RFC 7741 --------------------------------------------------------------------------

_VP8_X = 0x80
_VP8_N = 0x20
_VP8_S = 0x10
_VP8_I = 0x80
_VP8_M = 0x80


def vp8_descriptor(
    start: bool,
    picture_id: int | None = None,
    partition_id: int = 0,
    non_reference: bool = False,
) -> bytes:
    """The VP8 payload descriptor, RFC 7741 section 4.2 (PictureID always 15 bits, M = 1)."""
    if not 0 <= partition_id <= 7:
        raise ValueError(f"VP8 partition index must be 0..7, got {partition_id}")
    first = partition_id | (_VP8_S if start else 0) | (_VP8_N if non_reference else 0)
    if picture_id is None:
        return bytes([first])
    if not 0 <= picture_id <= 0x7FFF:
        raise ValueError(f"VP8 PictureID must be 0..32767, got {picture_id}")
    return bytes([first | _VP8_X, _VP8_I, _VP8_M | picture_id >> 8, picture_id & 0xFF])


def vp8_is_keyframe(frame: bytes) -> bool:
    """True for a VP8 key frame: the P bit of the payload header is 0 (RFC 7741 4.3)."""
    return bool(frame) and not frame[0] & 0x01


def vp8_packetize(
    frame: bytes, picture_id: int | None = None, max_payload: int = MAX_PAYLOAD
) -> list[Payload]:
    """One VP8 frame as RTP payloads (RFC 7741 section 4), the last with the marker bit."""
    if not frame:
        raise ValueError("an empty VP8 frame cannot be packetized")
    first = vp8_descriptor(True, picture_id)
    rest = vp8_descriptor(False, picture_id)
    pieces = split_evenly(frame, max_payload - len(first))
    last = len(pieces) - 1
    return [
        Payload((first if i == 0 else rest) + piece, i == last) for i, piece in enumerate(pieces)
    ]


# H.264, RFC 6184 ------------------------------------------------------------------------


def annexb_nal_units(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (ITU-T H.264 B.2), start codes removed.

    A start code is ``00 00 01`` (a leading zero byte makes the four-byte form); the zero
    bytes before the next start code (``trailing_zero_8bits``) are not part of a NAL unit.
    """
    units = []
    start = stream.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        nxt = stream.find(b"\x00\x00\x01", begin)
        end = len(stream) if nxt < 0 else nxt
        unit = stream[begin:end].rstrip(b"\x00")
        if unit:
            units.append(unit)
        start = nxt
    return units


def nal_type(nal: bytes) -> int:
    """``nal_unit_type``, the low five bits of the NAL unit header (RFC 6184 section 1.3)."""
    return nal[0] & 0x1F


def stap_a(nals: Sequence[bytes]) -> bytes:
    """A STAP-A packet, RFC 6184 section 5.7.1: F and NRI are the OR and the maximum."""
    if not nals:
        raise ValueError("a STAP-A needs at least one NAL unit")
    f = 0
    nri = 0
    body = bytearray()
    for nal in nals:
        if len(nal) > 0xFFFF:
            raise ValueError(f"a NAL unit of {len(nal)} bytes does not fit a STAP-A")
        f |= nal[0] & 0x80
        nri = max(nri, nal[0] & 0x60)
        body += len(nal).to_bytes(2, "big") + nal
    return bytes([f | nri | H264_STAP_A]) + bytes(body)


def h264_fragment(nal: bytes, max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """A NAL unit as one single NAL unit packet (5.6) or as FU-A fragments (5.8)."""
    if len(nal) <= max_payload:
        return [nal]
    indicator = bytes([(nal[0] & 0xE0) | H264_FU_A])
    kind = nal[0] & 0x1F
    pieces = split_evenly(nal[1:], max_payload - 2)
    last = len(pieces) - 1
    out = []
    for i, piece in enumerate(pieces):
        header = kind | (0x80 if i == 0 else 0) | (0x40 if i == last else 0)
        out.append(indicator + bytes([header]) + piece)
    return out


def h264_profile_level_id(sps: bytes) -> str:
    """SDP ``profile-level-id`` (RFC 6184 section 8.1) from an SPS NAL unit, e.g. 42c01e."""
    if len(sps) < 4 or nal_type(sps) != H264_SPS:
        raise ValueError("not an SPS NAL unit")
    return sps[1:4].hex()


class H264Packetizer:
    """Access units (Annex B) to RFC 6184 packetization-mode=1 payloads.

    Keeps the last SPS and PPS it saw so that an IDR access unit without them is preceded
    by them. ``aggregate`` puts the parameter sets (and any SEI) that precede the first
    slice into one STAP-A packet when they fit.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD, aggregate: bool = False) -> None:
        if max_payload < 3:
            raise ValueError(f"max_payload must be at least 3 bytes, got {max_payload}")
        self.max_payload = max_payload
        self.aggregate = aggregate
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    @property
    def profile_level_id(self) -> str | None:
        """``profile-level-id`` of the last SPS seen, for the SDP fmtp line."""
        return None if self.sps is None else h264_profile_level_id(self.sps)

    def packetize(self, access_unit: bytes | Iterable[bytes]) -> list[Payload]:
        """One access unit (Annex B bytes or its NAL units) as payloads, marker on the last."""
        nals = (
            annexb_nal_units(access_unit)
            if isinstance(access_unit, bytes | bytearray)
            else list(access_unit)
        )
        nals = [nal for nal in nals if nal and nal_type(nal) != H264_AUD]
        for nal in nals:
            if nal_type(nal) == H264_SPS:
                self.sps = nal
            elif nal_type(nal) == H264_PPS:
                self.pps = nal
        types = {nal_type(nal) for nal in nals}
        if H264_IDR in types:
            missing = []
            if H264_SPS not in types and self.sps is not None:
                missing.append(self.sps)
            if H264_PPS not in types and self.pps is not None:
                missing.append(self.pps)
            nals = missing + nals
        if not nals:
            raise ValueError("an empty H.264 access unit cannot be packetized")

        packets: list[bytes] = []
        rest = nals
        if self.aggregate:
            lead = []
            for nal in nals:
                if nal_type(nal) not in (H264_SPS, H264_PPS, H264_SEI):
                    break
                lead.append(nal)
            size = 1 + sum(2 + len(nal) for nal in lead)
            if len(lead) >= 2 and size <= self.max_payload:
                packets.append(stap_a(lead))
                rest = nals[len(lead) :]
        for nal in rest:
            packets.extend(h264_fragment(nal, self.max_payload))
        last = len(packets) - 1
        return [Payload(p, i == last) for i, p in enumerate(packets)]


# Audio ------------------------------------------------------------------------------------


def frame_audio(stream: bytes, frame_bytes: int, pad: int | None = None) -> list[bytes]:
    """A constant-rate audio byte stream (G.711, G.722) cut into ``frame_bytes`` frames.

    A short last frame is padded with ``pad`` (the codec's silence byte) or dropped when
    ``pad`` is None.
    """
    if frame_bytes < 1:
        raise ValueError(f"frame size must be at least 1 byte, got {frame_bytes}")
    frames = [stream[i : i + frame_bytes] for i in range(0, len(stream), frame_bytes)]
    if frames and len(frames[-1]) < frame_bytes:
        if pad is None:
            frames.pop()
        else:
            frames[-1] += bytes([pad]) * (frame_bytes - len(frames[-1]))
    return frames
