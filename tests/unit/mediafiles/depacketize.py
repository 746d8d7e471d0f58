"""Small reference depacketizers for the tests (RFC 7741 section 4, RFC 6184 section 5)."""

from __future__ import annotations

from collections.abc import Sequence

from callmeter.media.packetize import Payload


def vp8_descriptor_length(payload: bytes) -> int:
    """Length of the VP8 payload descriptor at the start of ``payload`` (RFC 7741 4.2)."""
    n = 1
    if payload[0] & 0x80:  # X
        ext = payload[1]
        n = 2
        if ext & 0x80:  # I
            n += 2 if payload[n] & 0x80 else 1
        if ext & 0x40:  # L
            n += 1
        if ext & 0x30:  # T or K
            n += 1
    return n


def vp8_frames(payloads: Sequence[Payload]) -> list[bytes]:
    """Reassemble VP8 frames: a frame starts with S=1 PID=0 and ends with the marker."""
    frames: list[bytes] = []
    current: bytearray | None = None
    for data, marker in payloads:
        start = bool(data[0] & 0x10) and data[0] & 0x07 == 0
        if start:
            assert current is None, "a new frame started before the marker of the last"
            current = bytearray()
        assert current is not None, "a continuation without a start"
        current += data[vp8_descriptor_length(data) :]
        if marker:
            frames.append(bytes(current))
            current = None
    assert current is None, "the last frame has no marker"
    return frames


def h264_nal_units(payloads: Sequence[Payload]) -> list[list[bytes]]:
    """Reassemble the NAL units of each access unit (split at marker bits)."""
    units: list[list[bytes]] = []
    current: list[bytes] = []
    fragment: bytearray | None = None
    for data, marker in payloads:
        kind = data[0] & 0x1F
        if kind == 24:  # STAP-A
            i = 1
            while i < len(data):
                size = int.from_bytes(data[i : i + 2], "big")
                current.append(data[i + 2 : i + 2 + size])
                i += 2 + size
            assert i == len(data)
        elif kind == 28:  # FU-A
            header = data[1]
            if header & 0x80:
                assert fragment is None
                fragment = bytearray([(data[0] & 0xE0) | (header & 0x1F)])
            assert fragment is not None
            fragment += data[2:]
            if header & 0x40:
                current.append(bytes(fragment))
                fragment = None
        else:
            assert 1 <= kind <= 23
            current.append(data)
        if marker:
            assert fragment is None, "marker inside a fragmented NAL unit"
            units.append(current)
            current = []
    assert not current and fragment is None
    return units


def annexb(nals: Sequence[bytes]) -> bytes:
    """NAL units as an Annex B byte stream with four-byte start codes."""
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in nals)
