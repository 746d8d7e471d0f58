"""G.711 PCMU (mu-law) and PCMA (A-law) in pure Python, no native library, no NumPy.

ITU-T G.711 defines the companding laws on a 14-bit (mu-law) or 13-bit (A-law) uniform
code: Table 2a (mu-law) and Table 1a (A-law) give, per segment, the decision values and the
reconstructed values. This module works on 16-bit linear PCM and maps it onto those codes the
way the ITU-T G.191 Software Tool Library reference does:

- the magnitude of a negative sample ``x`` is its one's complement ``~x`` (so ``x`` and
  ``-x - 1`` differ only in the sign bit, the code book is symmetric about -0.5, and -1
  encodes to the negative "zero" code 0x7F in mu-law),
- mu-law keeps the top 14 bits (``y >> 2``), adds the bias 33 and clips at 8159 (Table 2a),
- A-law keeps the top 13 bits (sign + ``y >> 4``), segments 0 and 1 share a step (Table 1a),
- the transmitted character has all bits inverted (mu-law) or the even bits inverted
  (A-law, XOR 0x55), G.711 section 3.

Python's ``audioop`` (deprecated, removed in 3.13) agrees exactly for A-law and for
non-negative mu-law input; for negative mu-law input it shifts before negating, so its 14-bit
magnitude is one larger than G.191's: ``audioop.lin2ulaw(x) == ulaw_encode(x - 4)`` for
``x < 0`` (it never emits 0x7F). Decoding is identical in all three.

Speed: the 65536-entry encode tables and 256-entry decode tables are built once at import
(a few milliseconds). Decoding is two ``bytes.translate`` calls (low and high byte planes)
interleaved by slice assignment. Encoding avoids a Python-level loop per sample: the
samples are folded to a magnitude with big-integer arithmetic on 16-bit lanes, split into
byte planes, turned into one-byte keys with ``bytes.translate`` and mapped to codes with a
last ``translate``; see :class:`_PlaneEncoder`. The result equals a lookup in the 65536-entry
table for every input (tested exhaustively).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

__all__ = [
    "ALAW_DECODE_TABLE",
    "ALAW_ENCODE_TABLE",
    "CODECS",
    "PCMA",
    "PCMU",
    "ULAW_DECODE_TABLE",
    "ULAW_ENCODE_TABLE",
    "G711Codec",
    "PcmLike",
    "alaw_decode",
    "alaw_decode_sample",
    "alaw_encode",
    "alaw_encode_sample",
    "pcm_bytes",
    "pcm_samples",
    "ulaw_decode",
    "ulaw_decode_sample",
    "ulaw_encode",
    "ulaw_encode_sample",
]

#: 16-bit signed linear PCM: little-endian bytes, or an ``array('h')`` in native order.
PcmLike = Union[bytes, bytearray, memoryview, "array[int]"]

_LITTLE = sys.byteorder == "little"

# mu-law (G.711 Table 2a): bias 33 on the 14-bit magnitude, clipped at 8159 + 33 - 1.
_ULAW_BIAS = 33
_ULAW_MAX_BIASED = 0x1FFF


def _ulaw_magnitude_code(m: int) -> int:
    """Segment and step (``seg << 4 | mant``) for a 14-bit magnitude ``m`` (0..8191)."""
    v = min(m + _ULAW_BIAS, _ULAW_MAX_BIASED)
    seg = v.bit_length() - 6  # v in [32, 64) -> segment 0 ... [4096, 8192) -> segment 7
    return (seg << 4) | ((v >> (seg + 1)) & 0x0F)


def _alaw_magnitude_code(n: int) -> int:
    """Segment and step (``seg << 4 | mant``) for a 12-bit magnitude ``n`` (0..2047)."""
    if n < 32:  # segments 0 and 1 share the smallest step (G.711 Table 1a)
        return n
    seg = n.bit_length() - 4  # n in [32, 64) -> segment 2 ... [1024, 2048) -> segment 7
    return (seg << 4) | ((n >> (seg - 1)) & 0x0F)


def ulaw_encode_sample(x: int) -> int:
    """Encode one 16-bit sample to a PCMU code (G.711 Table 2a, G.191 16-bit mapping)."""
    if x >= 0:
        return 0xFF ^ _ulaw_magnitude_code(min(x, 0x7FFF) >> 2)
    return 0x7F ^ _ulaw_magnitude_code(min(~x, 0x7FFF) >> 2)


def alaw_encode_sample(x: int) -> int:
    """Encode one 16-bit sample to a PCMA code (G.711 Table 1a, G.191 16-bit mapping)."""
    if x >= 0:
        return 0xD5 ^ _alaw_magnitude_code(min(x, 0x7FFF) >> 4)
    return 0x55 ^ _alaw_magnitude_code(min(~x, 0x7FFF) >> 4)


def ulaw_decode_sample(code: int) -> int:
    """Decode one PCMU code to its 16-bit reconstructed value (Table 2a, times 4)."""
    u = ~code & 0xFF
    seg = (u >> 4) & 0x07
    magnitude = ((((u & 0x0F) << 3) + 0x84) << seg) - 0x84
    return -magnitude if u & 0x80 else magnitude


def alaw_decode_sample(code: int) -> int:
    """Decode one PCMA code to its 16-bit reconstructed value (Table 1a, times 8)."""
    a = (code ^ 0x55) & 0xFF
    seg = (a >> 4) & 0x07
    mant = a & 0x0F
    magnitude = (mant << 4) + 8 if seg == 0 else ((mant << 4) + 0x108) << (seg - 1)
    return magnitude if a & 0x80 else -magnitude


def _build_encode_table(
    magnitude_code: Callable[[int], int], shift: int, positive_xor: int
) -> bytes:
    """65536 codes indexed by the unsigned 16-bit sample (``x & 0xFFFF``)."""
    per_magnitude = bytes(positive_xor ^ magnitude_code(m) for m in range(0x8000 >> shift))
    positive = bytearray(0x8000)
    for k in range(1 << shift):  # each magnitude covers 2**shift consecutive samples
        positive[k :: 1 << shift] = per_magnitude
    # Negative x has magnitude ~x = 32767 - (x + 32768): the positive half reversed, and
    # the sign bit (0x80 of the transmitted character) cleared.
    flip_sign = bytes(b ^ 0x80 for b in range(256))
    return bytes(positive) + bytes(positive[::-1]).translate(flip_sign)


#: PCMU code for every 16-bit sample, indexed by ``x & 0xFFFF``.
ULAW_ENCODE_TABLE: bytes = _build_encode_table(_ulaw_magnitude_code, 2, 0xFF)
#: PCMA code for every 16-bit sample, indexed by ``x & 0xFFFF``.
ALAW_ENCODE_TABLE: bytes = _build_encode_table(_alaw_magnitude_code, 4, 0xD5)
#: 16-bit value of every PCMU code.
ULAW_DECODE_TABLE: tuple[int, ...] = tuple(ulaw_decode_sample(c) for c in range(256))
#: 16-bit value of every PCMA code.
ALAW_DECODE_TABLE: tuple[int, ...] = tuple(alaw_decode_sample(c) for c in range(256))


class _PlaneEncoder:
    """Table lookup of 16-bit samples without a Python loop per sample.

    With ``y`` the folded magnitude (``x`` or ``~x``) and ``w = y + offset`` (offset 132 =
    33 << 2 for mu-law, 0 for A-law), every G.711 segment starts at a power of two of ``w``
    of at least 256 (mu-law segment 0 is [128, 256)). Split ``w`` into its high byte ``hw``
    and low byte ``lw``; the code of a sample then depends on:

    - ``hw < 8``: ``hw`` and ``lw >> 3`` -- key ``32 * hw + (lw >> 3)``, 256 keys;
    - ``hw >= 8`` (segments whose step is 128 or more): ``hw`` and ``lw >> 7`` -- key
      ``2 * (hw - 8) + (lw >> 7)``, at most 242 keys.

    Each key is the OR of two ``translate`` results (disjoint bits), a last ``translate``
    maps keys to codes, a byte mask chooses between the two, and the sign is XORed in.
    Folding and adding the offset happen on the whole frame at once as one big integer of
    16-bit lanes; ``w`` never exceeds 0x8083, so no lane carries into the next.
    """

    __slots__ = ("_hi_code", "_hi_key", "_lanes", "_lo_code", "_lo_key", "_offset")

    _HW_TIMES_32 = bytes((h << 5) & 0xFF if h < 8 else 0 for h in range(256))
    _LW_SHR3 = bytes(b >> 3 for b in range(256))
    _LW_SHR7 = bytes(b >> 7 for b in range(256))
    _HW_IS_HIGH = bytes(0xFF if h >= 8 else 0 for h in range(256))
    _SIGN_BIT = bytes(0x80 if h >= 0x80 else 0 for h in range(256))
    _UNUSED_KEY = 242

    def __init__(self, table: bytes, offset: int) -> None:
        self._offset = offset
        self._lanes: dict[int, tuple[int, int]] = {}
        self._lo_key = self._HW_TIMES_32
        self._hi_key = bytes(2 * (h - 8) if 8 <= h <= 128 else self._UNUSED_KEY for h in range(256))
        # Codes of the non-negative sample x = w - offset at each key's first w.
        self._lo_code = bytes(
            table[max((k >> 5) << 8 | (k & 31) << 3, offset) - offset] for k in range(256)
        )
        self._hi_code = bytes(
            table[min((8 + (k >> 1)) << 8 | (k & 1) << 7, 0x7FFF + offset) - offset]
            if k < self._UNUSED_KEY
            else 0
            for k in range(256)
        )

    def _constants(self, n: int) -> tuple[int, int]:
        lanes = self._lanes.get(n)
        if lanes is None:
            ones = int.from_bytes(b"\x01\x00" * n, "little")
            lanes = (ones, ones * self._offset)
            if len(self._lanes) < 64:  # frame sizes in use: a handful
                self._lanes[n] = lanes
        return lanes

    def encode(self, pcm: bytes) -> bytes:
        n = len(pcm) >> 1
        if n == 0:
            return b""
        ones, offsets = self._constants(n)
        x = int.from_bytes(pcm, "little")
        negative = (x >> 15) & ones  # 1 in each lane holding a negative sample
        w = ((x ^ (negative * 0xFFFF)) + offsets).to_bytes(2 * n, "little")
        hw = w[1::2]
        lw = w[0::2]
        lo_key = int.from_bytes(hw.translate(self._lo_key), "little") | int.from_bytes(
            lw.translate(self._LW_SHR3), "little"
        )
        hi_key = int.from_bytes(hw.translate(self._hi_key), "little") | int.from_bytes(
            lw.translate(self._LW_SHR7), "little"
        )
        lo = int.from_bytes(lo_key.to_bytes(n, "little").translate(self._lo_code), "little")
        hi = int.from_bytes(hi_key.to_bytes(n, "little").translate(self._hi_code), "little")
        high = int.from_bytes(hw.translate(self._HW_IS_HIGH), "little")
        sign = int.from_bytes(pcm[1::2].translate(self._SIGN_BIT), "little")
        return (lo ^ ((lo ^ hi) & high) ^ sign).to_bytes(n, "little")


def _decode_planes(table: tuple[int, ...]) -> tuple[bytes, bytes]:
    return (
        bytes(v & 0xFF for v in table),
        bytes((v >> 8) & 0xFF for v in table),
    )


_ULAW_PLANES = _decode_planes(ULAW_DECODE_TABLE)
_ALAW_PLANES = _decode_planes(ALAW_DECODE_TABLE)
_ULAW_ENCODER = _PlaneEncoder(ULAW_ENCODE_TABLE, 132)
_ALAW_ENCODER = _PlaneEncoder(ALAW_ENCODE_TABLE, 0)


def pcm_bytes(pcm: PcmLike) -> bytes:
    """16-bit PCM as little-endian bytes (an ``array('h')`` is byte-swapped on big-endian)."""
    if isinstance(pcm, array):
        if pcm.itemsize != 2:
            raise TypeError(f"expected a 16-bit array ('h'), got typecode {pcm.typecode!r}")
        if _LITTLE:
            return pcm.tobytes()
        swapped = array(pcm.typecode, pcm)
        swapped.byteswap()
        return swapped.tobytes()
    data = bytes(pcm)
    if len(data) % 2:
        raise ValueError(f"16-bit PCM needs an even number of bytes, got {len(data)}")
    return data


def pcm_samples(pcm: bytes | bytearray | memoryview) -> array[int]:
    """Little-endian 16-bit PCM bytes as an ``array('h')`` of samples."""
    samples = array("h", pcm_bytes(pcm))
    if not _LITTLE:
        samples.byteswap()
    return samples


def _decode(codes: bytes | bytearray | memoryview, planes: tuple[bytes, bytes]) -> bytes:
    data = bytes(codes)
    out = bytearray(2 * len(data))
    out[0::2] = data.translate(planes[0])
    out[1::2] = data.translate(planes[1])
    return bytes(out)


def ulaw_encode(pcm: PcmLike) -> bytes:
    """Encode 16-bit linear PCM to PCMU (one byte per sample), ITU-T G.711."""
    return _ULAW_ENCODER.encode(pcm_bytes(pcm))


def alaw_encode(pcm: PcmLike) -> bytes:
    """Encode 16-bit linear PCM to PCMA (one byte per sample), ITU-T G.711."""
    return _ALAW_ENCODER.encode(pcm_bytes(pcm))


def ulaw_decode(codes: bytes | bytearray | memoryview) -> bytes:
    """Decode PCMU to 16-bit little-endian linear PCM, ITU-T G.711."""
    return _decode(codes, _ULAW_PLANES)


def alaw_decode(codes: bytes | bytearray | memoryview) -> bytes:
    """Decode PCMA to 16-bit little-endian linear PCM, ITU-T G.711."""
    return _decode(codes, _ALAW_PLANES)


@dataclass(frozen=True)
class G711Codec:
    """A G.711 variant with its RTP/AVP static payload type (RFC 3551 section 6)."""

    name: str
    payload_type: int
    encode: Callable[[PcmLike], bytes]
    decode: Callable[[bytes | bytearray | memoryview], bytes]
    clock_rate: int = 8000
    bytes_per_sample: int = 1

    def samples_per_frame(self, ptime_ms: int) -> int:
        """Samples (and payload bytes) in one packet of ``ptime_ms`` milliseconds."""
        return self.clock_rate * ptime_ms // 1000


PCMU = G711Codec("PCMU", 0, ulaw_encode, ulaw_decode)
PCMA = G711Codec("PCMA", 8, alaw_encode, alaw_decode)
#: Built-in codecs by SDP encoding name (RFC 3551 section 4.5.14).
CODECS: dict[str, G711Codec] = {PCMU.name: PCMU, PCMA.name: PCMA}
