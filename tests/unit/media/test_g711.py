"""G.711 PCMU/PCMA against the standard's segment tables, worked values and audioop."""

from __future__ import annotations

import struct
import sys
import warnings
from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.media import g711

ALL_SAMPLES = range(-32768, 32768)
ALL_PCM = struct.pack("<65536h", *ALL_SAMPLES)


def _reference_from_tables(x: int, law: str) -> int:
    """Encode one sample by walking G.711's decision values, independently of g711.py.

    mu-law, Table 2a, 14-bit magnitude scale (0..8159): segment ends 31, 95, 223, 479, 991,
    2015, 4063, 8159 with 16 intervals each of width 2, 4, 8, ... 256, except that the first
    interval of segment 1 ([0, 1)) is half wide. A-law, Table 1a, 12-bit magnitude scale
    (0..2047 here, ``y >> 4``): segment ends 32, 64, 128, ... 2048, width 2, 2, 4, ... 128
    in the standard's 4096 scale, i.e. 1, 1, 2, ... 64 on ``y >> 4``.
    """
    y = x if x >= 0 else ~x  # G.191: one's complement magnitude for negative samples
    if law == "u":
        m = y >> 2
        starts = [0, 31, 95, 223, 479, 991, 2015, 4063]
        seg = max(s for s in range(8) if m >= starts[s] or s == 0)
        width = 2 << seg
        lower = starts[seg] if seg else -1  # the half-wide first interval: [-1, 1)
        step = min((m - lower) // width, 15)
        return (0xFF if x >= 0 else 0x7F) ^ (seg << 4 | step)
    n = y >> 4
    starts = [0, 16, 32, 64, 128, 256, 512, 1024]
    seg = max(s for s in range(8) if n >= starts[s])
    width = 1 if seg < 2 else 1 << (seg - 1)
    step = (n - starts[seg]) // width
    return (0xD5 if x >= 0 else 0x55) ^ (seg << 4 | step)


@pytest.mark.parametrize(
    ("x", "code"),
    [
        (0, 0xFF),  # 14-bit 0 -> biased 33 -> segment 0, step 0 -> 0x00 inverted: 0xFF
        (-1, 0x7F),  # ~-1 = 0: the same magnitude, sign bit cleared
        (4, 0xFE),  # 14-bit 1 -> biased 34 -> (34 >> 1) & 15 = 1 -> 0x01 inverted
        (-5, 0x7E),  # ~-5 = 4 -> 14-bit 1, negative
        (124, 0xEF),  # 14-bit 31 -> biased 64: first value of segment 1 -> 0x10 inverted
        (120, 0xF0),  # 14-bit 30 -> biased 63 -> segment 0, step 15 -> 0x0F inverted
        (1000, 0xCE),  # 14-bit 250 -> biased 283 -> segment 3, (283 >> 4) & 15 = 1 -> 0x31
        (32635, 0x80),  # 14-bit 8158 -> biased 8191: top of the top segment
        (32767, 0x80),  # clipped (G.711's 8159): most positive code
        (-32768, 0x00),  # most negative code
    ],
)
def test_ulaw_reference_values(x: int, code: int) -> None:
    assert g711.ulaw_encode_sample(x) == code
    assert g711.ulaw_encode(struct.pack("<h", x)) == bytes([code])


@pytest.mark.parametrize(
    ("x", "code"),
    [
        (0, 0xD5),  # 12-bit 0 -> segment 0, step 0, sign 1 -> 0x80 ^ 0x55
        (-1, 0x55),  # ~-1 = 0, sign 0 -> 0x00 ^ 0x55
        (16, 0xD4),  # 12-bit 1 -> 0x81 ^ 0x55
        (256, 0xC5),  # 12-bit 16 -> segment 1, step 0 -> 0x90 ^ 0x55
        (1000, 0xFA),  # 12-bit 62 -> segment 2, (62 >> 1) & 15 = 15 -> 0xAF ^ 0x55
        (32767, 0xAA),  # 12-bit 2047 -> segment 7, step 15 -> 0xFF ^ 0x55
        (-32768, 0x2A),  # ~ = 32767 -> 0x7F ^ 0x55
    ],
)
def test_alaw_reference_values(x: int, code: int) -> None:
    assert g711.alaw_encode_sample(x) == code
    assert g711.alaw_encode(struct.pack("<h", x)) == bytes([code])


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0xFF, 0),
        (0x7F, 0),
        (0xFE, 8),  # Table 2a: first quantized value 2 (x4 = 8 in 16-bit)
        (0xF0, 120),  # last step of segment 0: 30 (x4)
        (0xEF, 132),  # segment 1 starts at 33 (x4)
        (0x80, 32124),  # 8031 x 4: the largest reconstructed value
        (0x00, -32124),
    ],
)
def test_ulaw_decode_values(code: int, value: int) -> None:
    assert g711.ulaw_decode_sample(code) == value
    assert g711.ulaw_decode(bytes([code])) == struct.pack("<h", value)


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xC5, 264), (0xAA, 32256), (0x2A, -32256)],
)
def test_alaw_decode_values(code: int, value: int) -> None:
    assert g711.alaw_decode_sample(code) == value
    assert g711.alaw_decode(bytes([code])) == struct.pack("<h", value)


@pytest.mark.parametrize("law", ["u", "a"])
def test_tables_follow_the_standard_segment_tables_for_every_sample(law: str) -> None:
    table = g711.ULAW_ENCODE_TABLE if law == "u" else g711.ALAW_ENCODE_TABLE
    expected = bytes(_reference_from_tables(x, law) for x in ALL_SAMPLES)
    assert bytes(table[x & 0xFFFF] for x in ALL_SAMPLES) == expected


@pytest.mark.parametrize("law", ["u", "a"])
def test_fast_encoder_equals_the_table_for_every_sample(law: str) -> None:
    """The byte-plane encoder must agree with the 65536-entry table everywhere."""
    table = g711.ULAW_ENCODE_TABLE if law == "u" else g711.ALAW_ENCODE_TABLE
    encode = g711.ulaw_encode if law == "u" else g711.alaw_encode
    scalar = g711.ulaw_encode_sample if law == "u" else g711.alaw_encode_sample
    expected = bytes(table[x & 0xFFFF] for x in ALL_SAMPLES)
    assert encode(ALL_PCM) == expected
    assert bytes(scalar(x) for x in ALL_SAMPLES) == expected


def _step(code: int, law: str) -> int:
    """Quantization step (16-bit units) of the segment a code belongs to."""
    if law == "u":
        return 8 << ((~code >> 4) & 7)
    seg = ((code ^ 0x55) >> 4) & 7
    return 16 << max(seg - 1, 0)


@pytest.mark.parametrize("law", ["u", "a"])
def test_round_trip_error_is_at_most_half_a_step(law: str) -> None:
    encode = g711.ulaw_encode if law == "u" else g711.alaw_encode
    decode = g711.ulaw_decode if law == "u" else g711.alaw_decode
    codes = encode(ALL_PCM)
    decoded = struct.unpack("<65536h", decode(codes))
    clipped = 0
    for x, code, y in zip(ALL_SAMPLES, codes, decoded, strict=True):
        if law == "u" and abs(x) > 32635 and code in (0x80, 0x00):
            # Beyond G.711's overload point (8159 in 14 bits): the extreme code, +-32124.
            assert y == (32124 if x > 0 else -32124)
            clipped += 1
            continue
        assert abs(y - x) <= _step(code, law) // 2, (x, hex(code), y)
    # 32636..32767 (132 samples) and -32768..-32636 (133, one's complement magnitudes).
    assert clipped == (265 if law == "u" else 0)


@given(st.lists(st.integers(-32768, 32767), max_size=400))
def test_encode_is_sample_wise_and_accepts_arrays(samples: list[int]) -> None:
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    expected = bytes(g711.ULAW_ENCODE_TABLE[x & 0xFFFF] for x in samples)
    assert g711.ulaw_encode(pcm) == expected
    assert g711.ulaw_encode(array("h", samples)) == expected
    assert g711.ulaw_encode(bytearray(pcm)) == expected
    expected_a = bytes(g711.ALAW_ENCODE_TABLE[x & 0xFFFF] for x in samples)
    assert g711.alaw_encode(memoryview(pcm)) == expected_a


def test_decode_round_trips_codes_and_returns_arrays() -> None:
    codes = bytes(range(256))
    for encode, decode in (
        (g711.ulaw_encode, g711.ulaw_decode),
        (g711.alaw_encode, g711.alaw_decode),
    ):
        pcm = decode(codes)
        assert len(pcm) == 512
        reencoded = encode(pcm)
        # Every code re-encodes to itself, except mu-law's negative zero (0x7F -> 0 -> 0xFF).
        assert [c for c in range(256) if reencoded[c] != c] == (
            [0x7F] if encode is g711.ulaw_encode else []
        )
        assert list(g711.pcm_samples(pcm)) == list(struct.unpack("<256h", pcm))


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        g711.ulaw_encode(b"\x00\x00\x00")
    with pytest.raises(TypeError, match="16-bit"):
        g711.alaw_encode(array("i", [0]))
    assert g711.ulaw_encode(b"") == b""


def test_codecs_carry_rfc3551_payload_types() -> None:
    assert (g711.PCMU.payload_type, g711.PCMA.payload_type) == (0, 8)
    assert g711.CODECS["PCMU"].samples_per_frame(20) == 160
    assert g711.PCMA.encode is g711.alaw_encode


def _audioop():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # Python 3.13+
            return None
    return audioop


@pytest.mark.skipif(_audioop() is None, reason="audioop removed from this Python")
def test_cross_check_with_audioop_for_all_samples() -> None:
    audioop = _audioop()
    assert audioop.lin2alaw(ALL_PCM, 2) == g711.alaw_encode(ALL_PCM)
    theirs = audioop.lin2ulaw(ALL_PCM, 2)
    ours = g711.ulaw_encode(ALL_PCM)
    assert theirs[32768:] == ours[32768:]  # x >= 0: identical
    # x < 0: audioop negates after the shift, so its 14-bit magnitude is one step larger
    # than G.191's one's complement: audioop(x) == ours(x - 4).
    for x in range(-32764, 0):
        assert theirs[x + 32768] == ours[x - 4 + 32768], x
    assert theirs[:4] == ours[:4] == b"\x00" * 4  # the clipped bottom end
    codes = bytes(range(256))
    assert audioop.ulaw2lin(codes, 2) == g711.ulaw_decode(codes)
    assert audioop.alaw2lin(codes, 2) == g711.alaw_decode(codes)


def test_little_endian_assumption_is_explicit() -> None:
    assert g711.pcm_bytes(array("h", [1, -2])) == b"\x01\x00\xfe\xff"
    assert sys.byteorder in ("little", "big")
