"""Encoding once per test: every codec's framing, decodability, bit rate against the seed."""

from __future__ import annotations

import math
from array import array
from pathlib import Path
from typing import Any

import pytest

from callmeter.media import encode, g711, video
from callmeter.media.encode import EncodeError, prepare
from callmeter.media.packetize import Payload, vp8_is_keyframe
from callmeter.media.signal import rms_dbov
from tests.unit.mediafiles.depacketize import annexb, h264_nal_units, vp8_frames
from tests.unit.mediafiles.helpers import av_module, require_encoder, tone_wav, write_wav

SMALL = video.VideoFormat(128, 96, 25)


def payloads(media: Any) -> list[Payload]:
    return [Payload(p, m) for p, m in zip(media.payloads, media.markers, strict=True)]


def frequency(samples: array[int], rate: int) -> float:
    """Frequency of a tone from its rising zero crossings."""
    crossings = [i for i in range(1, len(samples)) if samples[i - 1] < 0 <= samples[i]]
    return rate * (len(crossings) - 1) / (crossings[-1] - crossings[0])


def decode(av: Any, name: str, packets: list[bytes], **settings: Any) -> list[Any]:
    ctx = av.CodecContext.create(name, "r")
    for key, value in settings.items():
        setattr(ctx, key, value)
    frames: list[Any] = []
    for data in packets:
        frames += ctx.decode(av.Packet(data))
    frames += ctx.decode(None)
    return frames


def pcm(frames: list[Any]) -> array[int]:
    out = array("h")
    for f in frames:
        out.frombytes(bytes(f.planes[0])[: 2 * f.samples])
    return out


def test_codec_names() -> None:
    assert encode.canonical_codec("pcmu") == "PCMU"
    assert encode.canonical_codec("OPUS") == "opus"
    assert encode.canonical_codec("h.264") == "H264"
    assert encode.canonical_codec("vp8") == "VP8"
    with pytest.raises(EncodeError, match="unknown codec 'GSM'"):
        encode.canonical_codec("GSM")


def test_generated_g711_needs_no_file() -> None:
    result = prepare("PCMA", seconds=1.0)
    media = result.media
    assert (media.codec, media.kind, media.clock_rate) == ("PCMA", "audio", 8000)
    assert media.packets == 50 and {len(p) for p in media.payloads} == {160}
    assert set(media.ts_increments) == {160} and media.markers[0]


def test_g711_from_a_stereo_wav_is_resampled_to_8k(tmp_path: Path) -> None:
    av_module()
    path = write_wav(tmp_path / "t.wav", g711.pcm_samples(_tone(16000)), 16000, channels=2)
    media = prepare("PCMU", path).media
    assert media.packets == 50  # 1 s at 20 ms
    decoded = g711.pcm_samples(g711.ulaw_decode(b"".join(media.payloads)))
    assert abs(frequency(decoded[800:], 8000) - 1004) < 3
    assert abs(rms_dbov(decoded[800:]) + 20) < 0.5


def _tone(rate: int) -> bytes:
    from callmeter.media.signal import tone

    return g711.pcm_bytes(tone(1.0, rate, level_dbov=-20.0))


def test_g722_framing_and_decoding(tmp_path: Path) -> None:
    av = av_module()
    require_encoder("G722")
    media = prepare("G722", tone_wav(tmp_path / "t.wav")).media
    # RFC 3551 4.5.2: 8000 Hz RTP clock, 64 kbit/s: 160 bytes and +160 per 20 ms.
    assert (media.codec, media.clock_rate, media.packets) == ("G722", 8000, 50)
    assert {len(p) for p in media.payloads} == {160} and set(media.ts_increments) == {160}
    out = pcm(decode(av, "g722", list(media.payloads), sample_rate=16000, layout="mono"))
    assert len(out) == 16000
    assert abs(frequency(out[1600:], 16000) - 1004) < 3
    assert abs(rms_dbov(out[1600:]) + 20) < 1.0


def test_opus_one_packet_per_20ms_at_48k(tmp_path: Path) -> None:
    av = av_module()
    require_encoder("opus")
    result = prepare("opus", tone_wav(tmp_path / "t.wav"))
    media = result.media
    # RFC 7587: 48 kHz clock whatever the audio bandwidth, 960 per 20 ms packet.
    assert (media.codec, media.clock_rate) == ("opus", 48000)
    assert set(media.ts_increments) == {960}
    assert media.packets in (50, 51)  # + the encoder's lookahead flushed at the end
    # TOC octet (RFC 6716 3.1): one 20 ms frame in every packet: code 0, or code 3 (CBR
    # padding) with a frame count of 1.
    for p in media.payloads:
        assert opus_frame_ms(p[0] >> 3) == 20
        assert p[0] & 0x03 == 0 or (p[0] & 0x03 == 3 and p[1] & 0x3F == 1)
    frames = decode(av, "libopus", list(media.payloads), sample_rate=48000, layout="mono")
    assert {f.samples for f in frames} == {960}
    out = pcm(frames)
    assert abs(frequency(out[4800:], 48000) - 1004) < 10  # a perceptual codec: phase moves
    assert 28_000 <= result.payload_bitrate <= 36_000  # CBR 32 kbit/s


def opus_frame_ms(config: int) -> float:
    """Frame duration of a TOC configuration number, RFC 6716 section 3.1, Table 2."""
    if config < 12:  # SILK-only: 10, 20, 40, 60 ms
        return (10, 20, 40, 60)[config % 4]
    if config < 16:  # Hybrid: 10, 20 ms
        return (10, 20)[config % 2]
    return (2.5, 5, 10, 20)[config % 4]  # CELT-only


def test_vp8_frames_decode_and_are_marked() -> None:
    av = av_module()
    require_encoder("VP8")
    result = prepare("VP8", seconds=0.4, video_format=SMALL)
    media = result.media
    assert (media.codec, media.kind, media.clock_rate) == ("VP8", "video", 90000)
    assert sum(media.markers) == 10 and media.markers[-1]
    # The frame interval follows the frame's last packet; packets of a frame share a timestamp.
    assert [i for m, i in zip(media.markers, media.ts_increments, strict=True) if m] == [3600] * 10
    assert all(i == 0 for m, i in zip(media.markers, media.ts_increments, strict=True) if not m)
    frames = vp8_frames(payloads(media))
    assert len(frames) == 10 and result.keyframes == 1
    assert vp8_is_keyframe(frames[0])
    assert not any(vp8_is_keyframe(f) for f in frames[1:])
    pictures = decode(av, "vp8", frames)
    assert [(p.width, p.height) for p in pictures] == [(128, 96)] * 10


def test_h264_constrained_baseline_decodes() -> None:
    av = av_module()
    require_encoder("H264")
    result = prepare("H264", seconds=0.4, video_format=SMALL)
    media = result.media
    assert (media.codec, media.clock_rate) == ("H264", 90000)
    assert result.fmtp.startswith("profile-level-id=42c0") and "packetization-mode=1" in result.fmtp
    units = h264_nal_units(payloads(media))
    assert len(units) == 10
    assert [n[0] & 0x1F for n in units[0][:2]] == [7, 8]  # SPS, PPS before the IDR
    assert any(n[0] & 0x1F == 5 for n in units[0])
    assert all(len(p) <= 1200 for p in media.payloads)
    pictures = decode(av, "h264", [annexb(u) for u in units])
    assert len(pictures) == 10 and (pictures[0].width, pictures[0].height) == (128, 96)


def test_video_file_is_rescaled_and_retimed(tmp_path: Path) -> None:
    av = av_module()
    require_encoder("VP8")
    require_encoder("H264")
    path = tmp_path / "clip.webm"
    container = av.open(str(path), "w", format="webm")
    stream = container.add_stream("libvpx", rate=10)
    stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
    source = video.VideoFormat(160, 120, 10)
    for i, frame in enumerate(encode._video_frames(av, video.pattern_frames(source, 10))):
        frame.pts = i
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()

    frames = encode.decode_video(path, SMALL)  # 1 s at 10 fps -> 25 frames at 25 fps
    assert len(frames) == 25 and {(f.width, f.height) for f in frames} == {(128, 96)}
    media = prepare("H264", path, video_format=SMALL).media
    assert sum(media.markers) == 25 and media.duration == 1.0
    with pytest.raises(EncodeError, match="no audio stream"):
        prepare("PCMU", path)


def test_not_media_is_an_encode_error(tmp_path: Path) -> None:
    av_module()
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 100)
    with pytest.raises(EncodeError, match=r"notes\.txt"):
        prepare("PCMU", text)
    with pytest.raises(EncodeError, match="no video stream"):
        prepare("VP8", tone_wav(tmp_path / "t.wav"))


# Bit rates against the seed's per-direction table (worker-networking, "Media Plane Bandwidth").
ETHERNET_BYTES = 14 + 4  # header + FCS, the rest of "on the wire" for the audio rows


@pytest.mark.parametrize(
    ("codec", "fmt", "table_kbps"),
    [
        ("PCMU", None, 90),
        ("G722", None, 90),
        ("opus", None, 50),
        ("VP8", video.VIDEO_360P, 500),
        ("H264", video.VIDEO_720P, 1500),
    ],
)
def test_bitrate_matches_the_seed_table(
    codec: str, fmt: video.VideoFormat | None, table_kbps: int
) -> None:
    if codec != "PCMU":
        av_module()
        require_encoder(codec)
    seconds = 3.0 if fmt else 2.0
    result = prepare(codec, seconds=seconds, video_format=fmt)
    ethernet = 8 * ETHERNET_BYTES * result.media.packet_rate
    kbps = (result.wire_bitrate + ethernet) / 1000
    assert math.isclose(kbps, table_kbps, rel_tol=0.12), f"{codec}: {kbps:.1f} kbit/s"
