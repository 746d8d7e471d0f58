"""RFC 7741 (VP8) and RFC 6184 (H.264) payload formats: exact header bits and round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.media.packetize import (
    H264Packetizer,
    Payload,
    annexb_nal_units,
    frame_audio,
    h264_fragment,
    h264_profile_level_id,
    split_evenly,
    stap_a,
    vp8_descriptor,
    vp8_is_keyframe,
    vp8_packetize,
)
from tests.unit.mediafiles.depacketize import annexb, h264_nal_units, vp8_frames

SPS = bytes.fromhex("6742c01fda0280bfe584")
PPS = bytes.fromhex("68ce3c80")
SEI = bytes.fromhex("0605ff")


# split_evenly --------------------------------------------------------------------------


def test_split_evenly_balances_pieces() -> None:
    assert [len(p) for p in split_evenly(bytes(2500), 1000)] == [834, 833, 833]
    assert split_evenly(b"", 10) == []
    assert split_evenly(b"abc", 3) == [b"abc"]


@given(st.binary(min_size=1, max_size=5000), st.integers(1, 1500))
def test_split_evenly_properties(data: bytes, capacity: int) -> None:
    pieces = split_evenly(data, capacity)
    assert b"".join(pieces) == data
    assert all(len(p) <= capacity for p in pieces)
    assert len(pieces) == -(-len(data) // capacity)
    assert max(map(len, pieces)) - min(map(len, pieces)) <= 1


# VP8, RFC 7741 --------------------------------------------------------------------------


def test_vp8_descriptor_bits() -> None:
    # Section 4.2: |X|R|N|S|R| PID |, the S bit is 0x10.
    assert vp8_descriptor(True) == b"\x10"
    assert vp8_descriptor(False) == b"\x00"
    assert vp8_descriptor(True, non_reference=True, partition_id=3) == b"\x33"
    # X=1, then |I|L|T|K| RSV|, then |M| PictureID (15 bits)|.
    assert vp8_descriptor(True, picture_id=0x1234) == bytes([0x90, 0x80, 0x92, 0x34])
    assert vp8_descriptor(False, picture_id=0) == bytes([0x80, 0x80, 0x80, 0x00])
    assert vp8_descriptor(False, picture_id=0x7FFF) == bytes([0x80, 0x80, 0xFF, 0xFF])
    with pytest.raises(ValueError):
        vp8_descriptor(True, picture_id=0x8000)
    with pytest.raises(ValueError):
        vp8_descriptor(True, partition_id=8)


def test_vp8_keyframe_bit() -> None:
    # Section 4.3 / RFC 6386 9.1: P bit (bit 0 of the first octet) is 0 on key frames.
    assert vp8_is_keyframe(bytes([0x50, 0x42, 0x00, 0x9D, 0x01, 0x2A]))
    assert not vp8_is_keyframe(bytes([0x51, 0x42, 0x00]))
    assert not vp8_is_keyframe(b"")


def test_vp8_frame_split_into_three_packets() -> None:
    frame = bytes(range(256)) * 10  # 2560 bytes
    packets = vp8_packetize(frame, picture_id=5, max_payload=1200)
    assert [len(p.data) for p in packets] == [858, 857, 857]  # 4-byte descriptor each
    assert [p.marker for p in packets] == [False, False, True]
    assert packets[0].data[:4] == bytes([0x90, 0x80, 0x80, 0x05])
    assert packets[1].data[:4] == bytes([0x80, 0x80, 0x80, 0x05])
    assert packets[2].data[:4] == bytes([0x80, 0x80, 0x80, 0x05])
    assert vp8_frames(packets) == [frame]


def test_vp8_small_frame_one_packet_without_picture_id() -> None:
    packets = vp8_packetize(b"\x50abc")
    assert packets == [Payload(b"\x10\x50abc", True)]


@given(
    st.lists(st.binary(min_size=1, max_size=4000), min_size=1, max_size=5),
    st.integers(10, 1500),
    st.one_of(st.none(), st.integers(0, 0x7FFF)),
)
def test_vp8_round_trip(frames: list[bytes], max_payload: int, picture_id: int | None) -> None:
    payloads = [p for f in frames for p in vp8_packetize(f, picture_id, max_payload)]
    assert all(len(p.data) <= max_payload for p in payloads)
    assert vp8_frames(payloads) == frames
    assert sum(p.marker for p in payloads) == len(frames)


# H.264, RFC 6184 ------------------------------------------------------------------------


def test_annexb_start_codes_three_and_four_bytes() -> None:
    stream = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01\x65\x88\x80"
    assert annexb_nal_units(stream) == [SPS, PPS, b"\x65\x88\x80"]
    # trailing_zero_8bits before a start code are not part of the NAL unit
    assert annexb_nal_units(b"\x00\x00\x01\x41\x9a\x00\x00\x00\x00\x01\x41\x9b") == [
        b"\x41\x9a",
        b"\x41\x9b",
    ]
    assert annexb_nal_units(b"no start code") == []


def test_profile_level_id_from_sps() -> None:
    assert h264_profile_level_id(SPS) == "42c01f"  # constrained baseline, level 3.1
    with pytest.raises(ValueError):
        h264_profile_level_id(PPS)


def test_single_nal_unit_packet_is_the_nal_unit() -> None:
    # Section 5.6: the payload is the NAL unit, header octet included.
    nal = b"\x41" + bytes(99)
    assert h264_fragment(nal, 1200) == [nal]
    assert h264_fragment(nal, 100) == [nal]


def test_fu_a_indicator_and_header_bits() -> None:
    # Section 5.8: FU indicator = F|NRI of the NAL unit + type 28; FU header = S|E|R|type.
    nal = b"\x65" + bytes(range(250)) * 12  # IDR slice, NRI 3, 3001 bytes
    fragments = h264_fragment(nal, 1200)
    assert [f[:2] for f in fragments] == [b"\x7c\x85", b"\x7c\x05", b"\x7c\x45"]
    assert all(len(f) <= 1200 for f in fragments)
    assert b"".join(f[2:] for f in fragments) == nal[1:]  # the NAL header is not sent
    # NRI 2, non-IDR slice (type 1), forbidden bit kept
    fragments = h264_fragment(b"\x41" + bytes(300), 200)
    assert [f[:2] for f in fragments] == [b"\x5c\x81", b"\x5c\x41"]
    assert h264_fragment(b"\xc1" + bytes(300), 200)[0][0] == 0xDC


def test_stap_a_layout() -> None:
    # Section 5.7.1, Figure 7: STAP-A NAL header, then (16-bit size, NAL unit) pairs.
    packet = stap_a([SPS, PPS])
    assert packet == b"\x78" + b"\x00\x0a" + SPS + b"\x00\x04" + PPS
    assert stap_a([b"\x06\x05"])[0] == 0x18  # NRI 0 -> header 0x18


def test_access_unit_marker_on_last_packet() -> None:
    idr = b"\x65" + b"\x88" * 2500
    packets = H264Packetizer(1200).packetize(annexb([SPS, PPS, idr]))
    assert [p.data[:2] for p in packets] == [
        SPS[:2],
        PPS[:2],
        b"\x7c\x85",
        b"\x7c\x05",
        b"\x7c\x45",
    ]
    assert [p.marker for p in packets] == [False, False, False, False, True]


def test_parameter_sets_repeated_before_idr() -> None:
    packetizer = H264Packetizer(1200)
    packetizer.packetize(annexb([SPS, PPS, b"\x65\x88"]))
    packetizer.packetize(annexb([b"\x41\x9a"]))  # P slice: nothing added
    packets = packetizer.packetize(annexb([b"\x09\xf0", b"\x65\x99"]))  # AUD dropped
    assert [p.data for p in packets] == [SPS, PPS, b"\x65\x99"]
    assert packetizer.profile_level_id == "42c01f"
    p_slice = packetizer.packetize([b"\x41\x9b"])
    assert p_slice == [Payload(b"\x41\x9b", True)]


def test_stap_a_aggregation_of_parameter_sets() -> None:
    packets = H264Packetizer(1200, aggregate=True).packetize(annexb([SPS, PPS, SEI, b"\x65\x88"]))
    assert packets[0].data == stap_a([SPS, PPS, SEI])
    assert packets[1] == Payload(b"\x65\x88", True)
    assert h264_nal_units(packets) == [[SPS, PPS, SEI, b"\x65\x88"]]


nal_units = st.builds(
    lambda kind, nri, body: bytes([nri << 5 | kind]) + body,
    st.sampled_from([1, 5, 6, 7, 8]),
    st.integers(0, 3),
    st.binary(min_size=1, max_size=2000).map(lambda b: b.replace(b"\x00", b"\x01")),
)


@given(
    st.lists(st.lists(nal_units, min_size=1, max_size=4), min_size=1, max_size=4),
    st.integers(20, 1500),
    st.booleans(),
)
def test_h264_round_trip(units: list[list[bytes]], max_payload: int, aggregate: bool) -> None:
    packetizer = H264Packetizer(max_payload, aggregate)
    sent: list[list[bytes]] = []
    payloads: list[Payload] = []
    for au in units:
        payloads += packetizer.packetize(annexb(au))
        sent.append(au)
    assert all(len(p.data) <= max_payload for p in payloads)
    received = h264_nal_units(payloads)
    assert len(received) == len(sent)
    for got, au in zip(received, sent, strict=True):
        # Only parameter sets may have been added in front of an IDR access unit.
        extra = got[: len(got) - len(au)]
        assert got[len(extra) :] == au
        assert all(n[0] & 0x1F in (7, 8) for n in extra)
        assert not extra or any(n[0] & 0x1F == 5 for n in au)


# Audio framing ---------------------------------------------------------------------------


def test_g722_frames_of_160_bytes() -> None:
    stream = bytes(range(256)) * 2  # 512 bytes = 3 full 20 ms frames + 32 bytes
    assert [len(f) for f in frame_audio(stream, 160)] == [160, 160, 160]
    padded = frame_audio(stream, 160, pad=0xFF)
    assert len(padded) == 4 and padded[3][32:] == b"\xff" * 128
    assert b"".join(frame_audio(stream, 160)) == stream[:480]
