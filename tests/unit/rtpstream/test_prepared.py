"""PreparedMedia: G.711 frames, timestamp increments, markers, cached header octets."""

from __future__ import annotations

from array import array

import pytest

from callmeter.media import g711
from callmeter.media.prepared import PreparedMedia, default_audio, prepare_g711


def test_prepare_g711_cuts_ptime_frames() -> None:
    pcm = array("h", range(-800, 800))  # 1600 samples = 10 frames of 20 ms + 0
    media = prepare_g711("pcma", pcm, ptime_ms=20)
    assert media.codec == "PCMA" and media.clock_rate == 8000 and media.kind == "audio"
    assert media.packets == 10
    assert all(len(p) == 160 for p in media.payloads)
    assert b"".join(media.payloads) == g711.alaw_encode(pcm)
    assert media.samples_per_packet == 160 and media.ptime_ms == 20.0
    assert media.duration == pytest.approx(0.2)
    assert media.markers == (True,) + (False,) * 9


def test_partial_frame_dropped_and_errors() -> None:
    assert prepare_g711("PCMU", [0] * 250, ptime_ms=30).packets == 1
    with pytest.raises(ValueError):
        prepare_g711("G722", [0] * 320)
    with pytest.raises(ValueError):
        prepare_g711("PCMU", [0] * 100)


def test_default_audio_is_ten_seconds_of_speech() -> None:
    media = default_audio("PCMU", 2.0)
    assert media.packets == 100 and media.packet_rate == pytest.approx(50.0)
    assert len(set(media.payloads)) > 10  # a signal, not silence


def test_video_shape_and_second_bytes() -> None:
    frame = PreparedMedia(
        codec="VP8",
        kind="video",
        clock_rate=90000,
        payloads=(b"a", b"b", b"c"),
        ts_increments=(0, 0, 3000),
        markers=(False, False, True),
    )
    assert frame.samples_per_packet is None and frame.ptime_ms is None
    assert frame.duration == pytest.approx(1 / 30)
    assert frame.second_bytes(96) == (96, 96, 96 | 0x80)
    assert frame.second_bytes(96) is frame.second_bytes(96)  # cached
    with pytest.raises(ValueError):
        PreparedMedia("VP8", "video", 90000, (b"a",), (0,), (False,))  # loop takes no time
