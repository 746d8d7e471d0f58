"""Encode a media file (or the generated default signal) once per test into RTP payloads.

The result is a :class:`callmeter.media.prepared.PreparedMedia` that every endpoint replays.

Codecs, their RTP clock and framing:

========  ==========  =====================================================================
PCMU/A    8000        :mod:`callmeter.media.g711` (pure Python), 20 ms = 160 bytes (RFC 3551)
G722      8000        ffmpeg's ``g722`` encoder, 16 kHz audio, 64 kbit/s, 20 ms = 160 bytes;
                      the RTP clock is 8000 although sampling is 16 kHz (RFC 3551 4.5.2)
opus      48000       libopus, 48 kHz mono, 20 ms frames, one Opus packet per RTP payload
                      (RFC 7587 section 4.2), timestamp +960 per packet
VP8       90000       libvpx realtime, no alt-ref/lag, RFC 7741 packetization
H264      90000       libx264 baseline (constrained baseline, profile-level-id 42c0xx), no
                      B-frames, zerolatency, RFC 6184 packetization-mode=1 (single NAL/FU-A)
========  ==========  =====================================================================

Why PyAV rather than running the ``ffmpeg`` program: the same FFmpeg libraries, but in
process. Decoded frames and encoded packets stay in memory (no temporary files, no pipes,
no parsing of a subprocess's output or of a container it wrote to get frame boundaries:
every encoded packet *is* one frame, with its key-frame flag); a failure is a Python
exception naming the problem rather than an exit status and a log to scrape; there is no
process to start, watch, time out and kill per test. It exists in both dependency worlds:
Debian 12 ``python3-av`` (PyAV 10 on FFmpeg 5.1, whose libavcodec59 links libx264, libvpx and
libopus) and PyPI ``av`` wheels (bundling their own FFmpeg with the same encoders). The code
uses only API present in both (``CodecContext.create``, ``AudioResampler``, ``reformat``,
codec options passed as a dict), e.g. B-frames are disabled with the ``bf`` option rather
than the ``max_b_frames`` attribute PyAV 10 lacks. PyAV is imported lazily: the generated
G.711 signal needs no native library at all.

Bit rates are set so that a stream on the wire (payload + RTP 12 + UDP 8 + IPv4 20 bytes per
packet) matches the seed's bandwidth table: G.711 and G.722 ~80 kbit/s (90 with Ethernet
framing), Opus ~50 kbit/s (32 kbit/s payload), VP8 360p ~500 kbit/s, H.264 720p ~1.5 Mbit/s.
The generated video has a noise box so that the encoder really spends that budget.

Encoding is CPU work of seconds for video (see the module's tests and the report for the
figures measured): call :func:`prepare` from a thread (``deferToThread``), not the reactor.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from callmeter.media import g711, packetize, prepared, signal, video
from callmeter.media.prepared import PreparedMedia

__all__ = [
    "AUDIO_CODECS",
    "CLOCK_RATES",
    "DEFAULT_BITRATES",
    "ENCODERS",
    "VIDEO_CODECS",
    "WIRE_OVERHEAD_BYTES",
    "EncodeError",
    "Encoded",
    "canonical_codec",
    "decode_audio",
    "decode_video",
    "encode_g722",
    "encode_h264",
    "encode_opus",
    "encode_vp8",
    "encoder_available",
    "generated_audio",
    "prepare",
]

AUDIO_CODECS = ("PCMU", "PCMA", "G722", "opus")
VIDEO_CODECS = ("VP8", "H264")
#: RTP clock rate per codec (RFC 3551 section 6, RFC 7587 4.1, RFC 7741 6.1, RFC 6184 8.1).
CLOCK_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 8000, "opus": 48000, "VP8": 90000, "H264": 90000}
#: Sampling rate the audio codecs take.
_SAMPLE_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 16000, "opus": 48000}
#: The FFmpeg encoder used for each codec (None: built in).
ENCODERS: dict[str, str | None] = {
    "PCMU": None,
    "PCMA": None,
    "G722": "g722",
    "opus": "libopus",
    "VP8": "libvpx",
    "H264": "libx264",
}
#: Encoder target bit rates (payload), tuned to the seed's per-direction bandwidth table.
DEFAULT_BITRATES = {"opus": 32_000, "VP8": 460_000, "H264": 1_400_000}
#: IPv4 (20) + UDP (8) + RTP (12) header bytes per packet.
WIRE_OVERHEAD_BYTES = 40
_KEYFRAME_INTERVAL_S = 2


class EncodeError(Exception):
    """The media cannot be decoded or encoded (message names the codec and the reason)."""


@dataclass(frozen=True, eq=False)
class Encoded:
    """A prepared stream and what the offer/answer and the report need about it."""

    media: PreparedMedia
    #: SDP ``a=fmtp`` parameters ("" when none), e.g. H.264 profile-level-id.
    fmtp: str = ""
    #: CPU seconds spent decoding and encoding (all threads of the process).
    cpu_seconds: float = 0.0
    #: Key frames per loop (video), for the report.
    keyframes: int = 0

    @property
    def payload_bitrate(self) -> float:
        """Payload bits per second."""
        return 8 * sum(len(p) for p in self.media.payloads) / self.media.duration

    @property
    def wire_bitrate(self) -> float:
        """Bits per second on the wire with IPv4, UDP and RTP headers (no link framing)."""
        overhead = 8 * WIRE_OVERHEAD_BYTES * self.media.packets / self.media.duration
        return self.payload_bitrate + overhead


def canonical_codec(name: str) -> str:
    """The SDP encoding name as :class:`PreparedMedia` spells it (PCMU ... opus, VP8, H264)."""
    for codec in (*AUDIO_CODECS, *VIDEO_CODECS):
        if codec.lower() == name.lower().replace(".", ""):
            return codec
    raise EncodeError(f"unknown codec {name!r} (known: {', '.join(AUDIO_CODECS + VIDEO_CODECS)})")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise EncodeError(
            "PyAV is not installed (Debian: python3-av, PyPI: av): needed to decode media "
            "files and for G.722, Opus, VP8 and H.264"
        ) from None
    return av


def encoder_available(codec: str) -> bool:
    """True when the codec can be encoded here (built in, or PyAV has its encoder)."""
    encoder = ENCODERS[canonical_codec(codec)]
    if encoder is None:
        return True
    try:
        av = _av()
        av.Codec(encoder, "w")
    except Exception:
        return False
    return True


# Decoding --------------------------------------------------------------------------------


def _open(path: str | Path) -> Any:
    av = _av()
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise EncodeError(f"{Path(path).name}: cannot open as media: {exc}") from None


def decode_audio(path: str | Path, sample_rate: int, max_seconds: float = 60.0) -> array[int]:
    """The first audio stream of a file as mono 16-bit PCM at ``sample_rate`` (resampled)."""
    av = _av()
    container = _open(path)
    try:
        if not container.streams.audio:
            raise EncodeError(f"{Path(path).name}: no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        limit = int(max_seconds * sample_rate)
        out = bytearray()

        def take(frames: Sequence[Any]) -> None:
            for frame in frames:
                out.extend(bytes(frame.planes[0])[: 2 * frame.samples])

        try:
            for frame in container.decode(audio=0):
                take(resampler.resample(frame))
                if len(out) >= 2 * limit:
                    break
            else:
                take(resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise EncodeError(f"{Path(path).name}: audio decoding failed: {exc}") from None
    finally:
        container.close()
    samples = array("h")
    samples.frombytes(bytes(out[: 2 * limit]))
    if not samples:
        raise EncodeError(f"{Path(path).name}: the audio stream has no samples")
    return samples


def decode_video(path: str | Path, fmt: video.VideoFormat, max_seconds: float = 30.0) -> list[Any]:
    """The first video stream as ``av.VideoFrame``s scaled to ``fmt`` at ``fmt.fps``.

    Frames are resampled in time by their presentation times: slot ``k`` (at ``k / fps``
    seconds) shows the latest source frame at or before it, so frames are repeated or
    dropped as the rates differ.
    """
    av = _av()
    container = _open(path)
    frames: list[Any] = []
    try:
        if not container.streams.video:
            raise EncodeError(f"{Path(path).name}: no video stream")
        limit = int(max_seconds * fmt.fps)
        start: float | None = None
        current = None
        t = 0.0
        decoded = 0
        try:
            for frame in container.decode(video=0):
                t = frame.time if frame.time is not None else decoded / fmt.fps
                if start is None:
                    start = t
                t -= start
                while current is not None and len(frames) < limit and len(frames) / fmt.fps < t:
                    frames.append(current)
                if len(frames) >= limit:
                    break
                current = frame.reformat(width=fmt.width, height=fmt.height, format="yuv420p")
                decoded += 1
            # The last frame lasts one source frame interval.
            end = t + (t / (decoded - 1) if decoded > 1 else 1 / fmt.fps)
            while current is not None and len(frames) < limit and len(frames) / fmt.fps < end:
                frames.append(current)
        except av.error.FFmpegError as exc:
            raise EncodeError(f"{Path(path).name}: video decoding failed: {exc}") from None
    finally:
        container.close()
    if not frames:
        raise EncodeError(f"{Path(path).name}: the video stream has no frames")
    return frames


def generated_audio(sample_rate: int, seconds: float = 10.0) -> array[int]:
    """The default audio: :func:`callmeter.media.signal.speech_like` at ``sample_rate``.

    Rates above 16 kHz are generated at 16 kHz and resampled (the signal has no content
    above 8 kHz, and the generator is pure Python).
    """
    if sample_rate <= 16000:
        return signal.speech_like(seconds, sample_rate)
    return _resample(signal.speech_like(seconds, 16000), 16000, sample_rate)


def _audio_frame(av: Any, pcm: bytes, rate: int, pts: int) -> Any:
    frame = av.AudioFrame(format="s16", layout="mono", samples=len(pcm) // 2)
    frame.planes[0].update(pcm)
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = Fraction(1, rate)
    return frame


def _resample(samples: array[int], rate_in: int, rate_out: int) -> array[int]:
    av = _av()
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate_out)
    out = bytearray()
    data = g711.pcm_bytes(samples)
    chunk = 2 * rate_in // 10
    frames = [
        _audio_frame(av, data[i : i + chunk], rate_in, i // 2) for i in range(0, len(data), chunk)
    ]
    for frame in [*frames, None]:
        for o in resampler.resample(frame):
            out.extend(bytes(o.planes[0])[: 2 * o.samples])
    result = array("h")
    result.frombytes(bytes(out))
    return result


# Encoders --------------------------------------------------------------------------------


def _codec_context(av: Any, encoder: str) -> Any:
    try:
        return av.CodecContext.create(encoder, "w")
    except Exception as exc:
        raise EncodeError(
            f"encoder {encoder} is not available in this PyAV/FFmpeg: {exc}"
        ) from None


def _encode_audio_frames(
    ctx: Any, av: Any, samples: array[int], rate: int, frame: int
) -> list[bytes]:
    data = g711.pcm_bytes(samples)
    step = 2 * frame
    if len(data) % step:
        data += bytes(step - len(data) % step)  # pad the last frame with silence
    packets: list[bytes] = []
    for i in range(0, len(data), step):
        packets.extend(
            bytes(p) for p in ctx.encode(_audio_frame(av, data[i : i + step], rate, i // 2))
        )
    packets.extend(bytes(p) for p in ctx.encode(None))
    return packets


def encode_g722(samples16k: array[int], ptime_ms: int = 20) -> PreparedMedia:
    """16 kHz PCM to G.722 (64 kbit/s), ``ptime_ms`` frames: 8 bytes per ms, clock 8000."""
    if ptime_ms <= 0 or ptime_ms % 10:
        raise EncodeError(f"G.722 ptime must be a multiple of 10 ms, got {ptime_ms}")
    av = _av()
    ctx = _codec_context(av, "g722")
    ctx.sample_rate = 16000
    ctx.format = "s16"
    ctx.layout = "mono"
    ctx.time_base = Fraction(1, 16000)
    ctx.open()
    stream = b"".join(_encode_audio_frames(ctx, av, samples16k, 16000, 16 * ptime_ms))
    frames = packetize.frame_audio(stream, 8 * ptime_ms)
    if not frames:
        raise EncodeError("G.722: less audio than one packet")
    n = len(frames)
    return PreparedMedia(
        "G722", "audio", 8000, tuple(frames), (8 * ptime_ms,) * n, (True,) + (False,) * (n - 1)
    )


def encode_opus(
    samples48k: array[int], bitrate: int = DEFAULT_BITRATES["opus"], ptime_ms: int = 20
) -> PreparedMedia:
    """48 kHz mono PCM to Opus (libopus, VoIP mode), one packet per RTP payload (RFC 7587)."""
    if ptime_ms not in (10, 20, 40, 60):
        raise EncodeError(f"Opus ptime must be 10, 20, 40 or 60 ms, got {ptime_ms}")
    av = _av()
    ctx = _codec_context(av, "libopus")
    ctx.sample_rate = 48000
    ctx.format = "s16"
    ctx.layout = "mono"
    ctx.bit_rate = bitrate
    ctx.time_base = Fraction(1, 48000)
    ctx.options = {"application": "voip", "frame_duration": str(ptime_ms), "vbr": "off"}
    ctx.open()
    frame = 48 * ptime_ms
    packets = _encode_audio_frames(ctx, av, samples48k, 48000, frame)
    if not packets:
        raise EncodeError("Opus: the encoder produced no packet")
    n = len(packets)
    return PreparedMedia(
        "opus", "audio", 48000, tuple(packets), (frame,) * n, (True,) + (False,) * (n - 1)
    )


def _video_frames(av: Any, frames: Sequence[Any] | Iterator[video.YuvFrame]) -> Iterator[Any]:
    """``av.VideoFrame``s from decoded frames or generated :class:`YuvFrame`s."""
    for item in frames:
        if not isinstance(item, video.YuvFrame):
            yield item
            continue
        frame = av.VideoFrame(item.width, item.height, "yuv420p")
        widths = (item.width, item.width // 2, item.width // 2)
        for plane, data, width in zip(frame.planes, (item.y, item.u, item.v), widths, strict=True):
            if plane.line_size == width:
                plane.update(data)
            else:  # rows are padded to the plane's line size
                pad = bytes(plane.line_size - width)
                plane.update(
                    b"".join(data[i : i + width] + pad for i in range(0, len(data), width))
                )
        yield frame


def _encode_video(
    encoder: str,
    options: dict[str, str],
    frames: Sequence[Any] | Iterator[video.YuvFrame],
    fmt: video.VideoFormat,
    bitrate: int,
) -> list[tuple[bytes, bool]]:
    av = _av()
    ctx = _codec_context(av, encoder)
    ctx.width = fmt.width
    ctx.height = fmt.height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, fmt.fps)
    ctx.framerate = Fraction(fmt.fps, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = _KEYFRAME_INTERVAL_S * fmt.fps
    ctx.options = {"bf": "0", "g": str(_KEYFRAME_INTERVAL_S * fmt.fps), **options}
    out: list[tuple[bytes, bool]] = []
    try:
        for index, frame in enumerate(_video_frames(av, frames)):
            frame.pts = index
            frame.time_base = ctx.time_base
            frame.pict_type = _pict_type(av, index == 0)
            out.extend((bytes(p), bool(p.is_keyframe)) for p in ctx.encode(frame))
        out.extend((bytes(p), bool(p.is_keyframe)) for p in ctx.encode(None))
    except av.error.FFmpegError as exc:
        raise EncodeError(f"{encoder}: encoding failed: {exc}") from None
    if not out:
        raise EncodeError(f"{encoder}: the encoder produced no frame")
    return out


def _pict_type(av: Any, key: bool) -> Any:
    """Force an intra picture on the first frame (the loop must start with a key frame)."""
    try:
        kinds = av.video.frame.PictureType
    except AttributeError:  # PyAV < 13 takes the name
        return "I" if key else "NONE"
    return kinds.I if key else kinds.NONE


def _video_media(
    codec: str, fmt: video.VideoFormat, frames: list[list[packetize.Payload]]
) -> PreparedMedia:
    step = 90000 // fmt.fps
    payloads: list[bytes] = []
    increments: list[int] = []
    markers: list[bool] = []
    for frame in frames:
        for i, (data, marker) in enumerate(frame):
            payloads.append(data)
            markers.append(marker)
            increments.append(step if i == len(frame) - 1 else 0)
    return PreparedMedia(codec, "video", 90000, tuple(payloads), tuple(increments), tuple(markers))


def encode_vp8(
    frames: Sequence[Any] | Iterator[video.YuvFrame],
    fmt: video.VideoFormat = video.VIDEO_360P,
    bitrate: int = DEFAULT_BITRATES["VP8"],
    max_payload: int = packetize.MAX_PAYLOAD,
) -> tuple[PreparedMedia, int]:
    """Frames to VP8 (libvpx, realtime, no alt-ref, 2 s key frames), RFC 7741 payloads.

    Returns the media and its number of key frames.
    """
    encoded = _encode_video(
        "libvpx",
        {
            "deadline": "realtime",
            "cpu-used": "16",
            "lag-in-frames": "0",
            "auto-alt-ref": "0",
            "error-resilient": "1",
            "maxrate": str(bitrate),
            "minrate": str(bitrate // 2),
            "bufsize": str(bitrate),
        },
        frames,
        fmt,
        bitrate,
    )
    packets = [
        packetize.vp8_packetize(data, picture_id=i & 0x7FFF, max_payload=max_payload)
        for i, (data, _) in enumerate(encoded)
    ]
    return _video_media("VP8", fmt, packets), sum(key for _, key in encoded)


def encode_h264(
    frames: Sequence[Any] | Iterator[video.YuvFrame],
    fmt: video.VideoFormat = video.VIDEO_720P,
    bitrate: int = DEFAULT_BITRATES["H264"],
    max_payload: int = packetize.MAX_PAYLOAD,
) -> tuple[PreparedMedia, int, str]:
    """Frames to H.264 constrained baseline (libx264), RFC 6184 packetization-mode=1.

    Returns the media, its number of key frames and the SDP profile-level-id.
    """
    encoded = _encode_video(
        "libx264",
        {
            "preset": "veryfast",
            "tune": "zerolatency",
            "profile": "baseline",
            "maxrate": str(bitrate),
            "bufsize": str(bitrate),
            "x264-params": "repeat-headers=1:aud=0:scenecut=0",
        },
        frames,
        fmt,
        bitrate,
    )
    packetizer = packetize.H264Packetizer(max_payload)
    packets = [packetizer.packetize(data) for data, _ in encoded]
    level = packetizer.profile_level_id
    if level is None:
        raise EncodeError("libx264 produced no SPS")
    return _video_media("H264", fmt, packets), sum(key for _, key in encoded), level


# The one entry point ---------------------------------------------------------------------


def prepare(
    codec: str,
    path: str | Path | None = None,
    *,
    seconds: float = 10.0,
    max_seconds: float = 30.0,
    ptime_ms: int = 20,
    video_format: video.VideoFormat | None = None,
    bitrate: int | None = None,
    max_payload: int = packetize.MAX_PAYLOAD,
) -> Encoded:
    """Encode ``path`` (or, when None, ``seconds`` of the generated signal) for ``codec``.

    Audio codecs take the file's first audio stream, video codecs its first video stream;
    at most ``max_seconds`` of a file is used (the endpoints loop it). Video defaults to
    640x360 at 25 fps for VP8 and 1280x720 at 25 fps for H.264.
    """
    name = canonical_codec(codec)
    started = time.process_time()
    fmtp = ""
    keyframes = 0
    if name in AUDIO_CODECS:
        rate = _SAMPLE_RATES[name]
        samples = (
            generated_audio(rate, seconds)
            if path is None
            else decode_audio(path, rate, max_seconds)
        )
        if name in ("PCMU", "PCMA"):
            try:
                media = prepared.prepare_g711(name, samples, ptime_ms)
            except ValueError as exc:
                raise EncodeError(f"{name}: {exc}") from None
        elif name == "G722":
            media = encode_g722(samples, ptime_ms)
        else:
            media = encode_opus(samples, bitrate or DEFAULT_BITRATES["opus"], ptime_ms)
    else:
        fmt = video_format or (video.VIDEO_720P if name == "H264" else video.VIDEO_360P)
        frames: Sequence[Any] | Iterator[video.YuvFrame] = (
            video.pattern_frames(fmt, round(seconds * fmt.fps))
            if path is None
            else decode_video(path, fmt, max_seconds)
        )
        if name == "VP8":
            media, keyframes = encode_vp8(
                frames, fmt, bitrate or DEFAULT_BITRATES["VP8"], max_payload
            )
        else:
            media, keyframes, level = encode_h264(
                frames, fmt, bitrate or DEFAULT_BITRATES["H264"], max_payload
            )
            fmtp = f"profile-level-id={level};packetization-mode=1"
    return Encoded(
        media=media,
        fmtp=fmtp,
        cpu_seconds=time.process_time() - started,
        keyframes=keyframes,
    )
