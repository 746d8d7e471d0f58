"""Shared helpers: codec availability (skip locally, fail on CI) and small media files."""

from __future__ import annotations

import os
import wave
from array import array
from pathlib import Path
from typing import Any

import pytest

from callmeter.media import encode, signal

#: Debian 12 package that provides each FFmpeg encoder to python3-av.
DEBIAN_PROVIDER = {
    "G722": "libavcodec59 (FFmpeg's own g722 encoder)",
    "opus": "libavcodec59 + libopus0",
    "VP8": "libavcodec59 + libvpx7",
    "H264": "libavcodec59 + libx264-164",
}


def require_encoder(codec: str) -> None:
    """Skip when this PyAV build lacks the encoder; fail instead when CI=true."""
    if encode.encoder_available(codec):
        return
    message = f"no {codec} encoder in this PyAV build (Debian: {DEBIAN_PROVIDER.get(codec)})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def av_module() -> Any:
    """PyAV, or a skip (a failure on CI) when it is not installed."""
    try:
        import av
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("PyAV is not installed (Debian python3-av, PyPI av)")
        pytest.skip("PyAV is not installed")
    return av


def write_wav(path: Path, samples: array[int], rate: int, channels: int = 1) -> Path:
    """A 16-bit PCM WAV file (stdlib ``wave``); stereo duplicates the mono samples."""
    data = samples
    if channels == 2:
        data = array("h", [s for s in samples for _ in range(2)])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def tone_wav(path: Path, seconds: float = 1.0, rate: int = 16000) -> Path:
    """A 1004 Hz tone at -20 dBov as a mono WAV."""
    return write_wav(path, signal.tone(seconds, rate, level_dbov=-20.0), rate)
