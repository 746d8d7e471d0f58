"""Content checks and file:// URLs (no network): sniffing, PyAV probe, redaction, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.media.cache import MediaCache
from callmeter.media.fetch import MediaError, MediaFetcher, MediaFile, probe, redact_url, sniff
from tests.unit.mediafiles.helpers import av_module, tone_wav


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"RIFF\x24\x08\x00\x00WAVEfmt ", "wav"),
        (b"RIFF\x24\x08\x00\x00AVI LIST", "avi"),
        (b"OggS\x00\x02", "ogg"),
        (b"ID3\x04\x00\x00", "mp3"),
        (b"\xff\xfb\x90\x64", "mp3"),  # MPEG-1 layer III frame header
        (b"\xff\xf1\x50\x80", "aac"),  # ADTS
        (b"\x00\x00\x00\x20ftypisom", "mp4"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86", "matroska"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"<html><body>", None),
        (b"hello world", None),
        (b"", None),
    ],
)
def test_sniff(head: bytes, kind: str | None) -> None:
    assert sniff(head) == kind


def test_redact_url() -> None:
    assert redact_url("https://bob:s3cret@h.test/a.wav") == "https://bob:***@h.test/a.wav"
    assert redact_url("https://bob@h.test/a.wav") == "https://bob@h.test/a.wav"
    assert (
        redact_url("https://h.test/a.wav?X-Amz-Signature=abc&v=1#frag")
        == "https://h.test/a.wav?X-Amz-Signature=%2A%2A%2A&v=%2A%2A%2A"
    )
    error = MediaError("https://bob:s3cret@h.test/a.wav?token=zzz", "not_found", "HTTP 404")
    assert "s3cret" not in str(error) and "zzz" not in str(error)
    assert str(error).startswith("media https://bob:***@h.test/a.wav?token=") and error.kind


def test_probe(tmp_path: Path) -> None:
    av_module()
    info = probe(tone_wav(tmp_path / "t.wav"))
    assert info.has_audio and not info.has_video and info.container == "wav"
    assert info.duration_s is not None and abs(info.duration_s - 1.0) < 0.01
    fake = tmp_path / "fake.wav"
    fake.write_bytes(b"RIFF\x24\x08\x00\x00WAVE" + b"garbage" * 20)
    with pytest.raises(ValueError):
        probe(fake)


def fetch_now(fetcher: MediaFetcher, url: str) -> Any:
    """file:// fetches complete synchronously: the result or the failure's exception."""
    results: list[Any] = []
    fetcher.fetch(url).addBoth(results.append)
    assert len(results) == 1
    result = results[0]
    return result if isinstance(result, MediaFile) else result.value


@pytest.fixture
def fetcher(tmp_path: Path) -> MediaFetcher:
    clock = Clock()
    return MediaFetcher(MediaCache(tmp_path / "cache"), clock, clock=clock, max_bytes=64 * 1024)


def test_file_url(tmp_path: Path, fetcher: MediaFetcher) -> None:
    av_module()
    path = tone_wav(tmp_path / "my tone.wav")
    result = fetch_now(fetcher, "file://" + str(path).replace(" ", "%20"))
    assert isinstance(result, MediaFile)
    assert result.path == path and result.has_audio and result.container == "wav"
    assert result.size == path.stat().st_size and len(result.sha256) == 64
    assert not result.from_cache


@pytest.mark.parametrize(
    ("make", "kind", "reason"),
    [
        (lambda d: d / "missing.wav", "not_found", "no such file"),
        (lambda d: d, "io", "not a regular file"),
        (lambda d: text(d / "notes.txt"), "not_media", "not an audio or video file"),
        (lambda d: big(d / "big.wav"), "too_large", "larger than the 65536-byte limit"),
    ],
)
def test_file_url_errors(
    tmp_path: Path, fetcher: MediaFetcher, make: Any, kind: str, reason: str
) -> None:
    url = "file://" + str(make(tmp_path))
    error = fetch_now(fetcher, url)
    assert isinstance(error, MediaError) and error.kind == kind
    assert reason in str(error) and str(error).startswith(f"media {url}: ")


def text(path: Path) -> Path:
    path.write_text("not media\n" * 20)
    return path


def big(path: Path) -> Path:
    tone_wav(path, seconds=3.0)
    return path


def test_bad_urls(fetcher: MediaFetcher) -> None:
    for url in ("ftp://h/a.wav", "file://otherhost/a.wav", "file:relative.wav", "nonsense"):
        error = fetch_now(fetcher, url)
        assert isinstance(error, MediaError) and error.kind == "bad_url", url
