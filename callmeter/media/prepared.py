"""Media prepared once per test and replayed by every endpoint (ARCHITECTURE "Hot path rules").

A :class:`PreparedMedia` is what a sender walks: the RTP payloads of one loop of the signal,
and for each packet the marker bit and the RTP timestamp increment to the *next* packet
(RFC 3550 section 5.1: the timestamp advances with the sampling instant of the payload). The
pacer derives each packet's send time from the media timestamp (``start + ts / clock_rate``),
so the same structure serves

* audio: one packet per ptime, every increment ``clock_rate * ptime / 1000`` (160 for
  20 ms at 8000 Hz), markers only where a talk spurt starts if the encoder says so;
* video: the packets of one frame share a timestamp (increment 0 between them, RFC 6184
  section 5.1 / RFC 7741 section 4.1), the marker on the frame's last packet, and the frame
  interval in 90 kHz units after it: the whole frame is due at the same instant.

Endpoints never copy or re-encode it: each only rewrites sequence number, timestamp and SSRC
(:func:`callmeter.rtp.packet.build_packet`). Other encoders (``callmeter.media.encode`` for
G.722, Opus, VP8, H.264) produce the same dataclass.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

from callmeter.media import g711, signal

__all__ = [
    "PreparedMedia",
    "default_audio",
    "prepare_g711",
]


@dataclass(frozen=True, eq=False)
class PreparedMedia:
    """One loop of encoded media, ready to be replayed (RFC 3550 section 5.1 fields).

    ``codec`` is the SDP encoding name (PCMU, PCMA, G722, opus, VP8, H264), ``kind`` audio or
    video, ``clock_rate`` the RTP clock. ``payloads[i]`` is sent with marker ``markers[i]``;
    the packet after it carries a timestamp ``ts_increments[i]`` higher. The loop's length
    in timestamp units is the sum of the increments (it must be positive, so a loop takes
    time); replay continues the timestamp across loops.
    """

    codec: str
    kind: str
    clock_rate: int
    payloads: tuple[bytes, ...]
    ts_increments: tuple[int, ...]
    markers: tuple[bool, ...]
    _second_bytes: dict[int, tuple[int, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        n = len(self.payloads)
        if n == 0:
            raise ValueError("prepared media needs at least one packet")
        if len(self.ts_increments) != n or len(self.markers) != n:
            raise ValueError(
                f"{n} payloads but {len(self.ts_increments)} timestamp increments "
                f"and {len(self.markers)} markers"
            )
        if self.kind not in ("audio", "video"):
            raise ValueError(f"kind must be audio or video, not {self.kind!r}")
        if self.clock_rate <= 0:
            raise ValueError(f"clock rate {self.clock_rate} must be positive")
        if any(inc < 0 for inc in self.ts_increments) or self.loop_ts <= 0:
            raise ValueError("timestamp increments must be >= 0 with a positive sum")

    @property
    def packets(self) -> int:
        """Packets in one loop."""
        return len(self.payloads)

    @property
    def loop_ts(self) -> int:
        """Length of one loop in timestamp units."""
        return sum(self.ts_increments)

    @property
    def duration(self) -> float:
        """Length of one loop in seconds."""
        return self.loop_ts / self.clock_rate

    @property
    def samples_per_packet(self) -> int | None:
        """The timestamp increment per packet when it is the same for all (audio), else None."""
        first = self.ts_increments[0]
        return first if all(inc == first for inc in self.ts_increments) else None

    @property
    def ptime_ms(self) -> float | None:
        """Packet interval in milliseconds for uniform (audio) media, else None."""
        spp = self.samples_per_packet
        return None if spp is None else 1000.0 * spp / self.clock_rate

    @property
    def packet_rate(self) -> float:
        """Average packets per second."""
        return self.packets / self.duration

    def second_bytes(self, payload_type: int) -> tuple[int, ...]:
        """The RTP header's second octet (M bit and PT) of every packet for ``payload_type``.

        Computed once per payload type and cached: the sender needs no per-packet branch.
        """
        cached = self._second_bytes.get(payload_type)
        if cached is None:
            if not 0 <= payload_type <= 127:
                raise ValueError(f"payload type {payload_type} not in 0..127")
            cached = tuple(payload_type | 0x80 if m else payload_type for m in self.markers)
            self._second_bytes[payload_type] = cached
        return cached


def _frames(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data) - size + 1, size)]


def prepare_g711(
    codec_name: str, pcm16: array[int] | Sequence[int], ptime_ms: int = 20
) -> PreparedMedia:
    """Encode 8 kHz 16-bit PCM with G.711 (PCMU or PCMA) and cut it into ptime frames.

    RFC 3551 section 4.5.14: one octet per sample, timestamp increment = samples per packet.
    A trailing partial frame is dropped (the loop stays a whole number of packets). The first
    packet carries the marker (the start of a talk spurt, RFC 3551 section 4.1).
    """
    try:
        codec = g711.CODECS[codec_name.upper()]
    except KeyError:
        raise ValueError(f"{codec_name!r} is not a G.711 codec (PCMU, PCMA)") from None
    if ptime_ms <= 0 or (codec.clock_rate * ptime_ms) % 1000:
        raise ValueError(f"ptime {ptime_ms} ms is not a whole number of 8 kHz samples")
    spp = codec.samples_per_frame(ptime_ms)
    samples = pcm16 if isinstance(pcm16, array) else array("h", pcm16)
    frames = _frames(codec.encode(samples), spp)
    if not frames:
        raise ValueError(f"{len(samples)} samples are less than one {ptime_ms} ms frame")
    return PreparedMedia(
        codec=codec.name,
        kind="audio",
        clock_rate=codec.clock_rate,
        payloads=tuple(frames),
        ts_increments=(spp,) * len(frames),
        markers=(True,) + (False,) * (len(frames) - 1),
    )


def default_audio(codec_name: str, seconds: float = 10.0, ptime_ms: int = 20) -> PreparedMedia:
    """The default G.711 signal: :func:`callmeter.media.signal.speech_like`, encoded once."""
    return prepare_g711(codec_name, signal.speech_like(seconds, 8000), ptime_ms)
