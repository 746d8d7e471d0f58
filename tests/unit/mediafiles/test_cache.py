"""MediaCache: by URL and content hash, freshness, LRU eviction within the byte budget."""

from __future__ import annotations

import hashlib
from pathlib import Path

from callmeter.media.cache import MediaCache, url_key


class Now:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def put(cache: MediaCache, url: str, data: bytes, **validators: str) -> str:
    temp, out = cache.temp_file()
    with out:
        out.write(data)
    sha = hashlib.sha256(data).hexdigest()
    cache.store(url, url, temp, sha, "wav", **validators)
    return sha


def test_store_and_lookup(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, now=now)
    sha = put(cache, "https://h/a.wav", b"RIFF" + bytes(100), etag='"v1"')
    entry = cache.lookup("https://h/a.wav")
    assert entry is not None
    assert (entry.sha256, entry.size, entry.etag, entry.container) == (sha, 104, '"v1"', "wav")
    assert entry.path == tmp_path / "media" / "objects" / sha
    assert entry.path.read_bytes() == b"RIFF" + bytes(100)
    assert cache.lookup("https://h/other.wav") is None
    assert list((tmp_path / "media" / "tmp").iterdir()) == []  # renamed, not copied


def test_freshness_and_revalidation(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, now=now)
    put(cache, "u", b"x" * 10)
    entry = cache.lookup("u")
    assert entry is not None and entry.is_fresh(now(), 300)
    now.t += 300
    assert not entry.is_fresh(now(), 300)
    renewed = cache.revalidated("u", entry)
    assert renewed.is_fresh(now(), 300)
    stored = cache.lookup("u")
    assert stored is not None and stored.validated_at == now.t


def test_same_content_under_two_urls_is_one_object(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path, now=Now())
    a = put(cache, "https://a/x.wav", b"same bytes")
    b = put(cache, "https://b/y.wav", b"same bytes")
    assert a == b and len(list(cache.objects.iterdir())) == 1
    assert cache.usage() == len(b"same bytes")


def test_lru_eviction_beyond_budget(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, max_bytes=250, now=now)
    put(cache, "a", b"a" * 100)
    now.t += 1
    put(cache, "b", b"b" * 100)
    now.t += 1
    entry = cache.lookup("a")
    assert entry is not None
    cache.touch(entry)  # "a" is now more recent than "b"
    now.t += 1
    put(cache, "c", b"c" * 100)  # 300 > 250: the least recently used ("b") goes
    assert cache.lookup("b") is None
    assert cache.lookup("a") is not None and cache.lookup("c") is not None
    assert cache.usage() == 200
    assert not (cache.urls / f"{url_key('b')}.json").exists()  # dropped at lookup


def test_object_bigger_than_budget_is_kept_while_new(tmp_path: Path) -> None:
    now = Now()
    cache = MediaCache(tmp_path, max_bytes=50, now=now)
    put(cache, "small", b"s" * 10)
    now.t += 1
    put(cache, "big", b"b" * 100)
    assert cache.lookup("big") is not None and cache.lookup("small") is None


def test_damaged_index_is_a_miss(tmp_path: Path) -> None:
    cache = MediaCache(tmp_path, now=Now())
    put(cache, "u", b"data")
    (cache.urls / f"{url_key('u')}.json").write_text("{not json")
    assert cache.lookup("u") is None
    put(cache, "v", b"data2")
    entry = cache.lookup("v")
    assert entry is not None
    entry.path.write_bytes(b"truncated")  # size no longer matches
    assert cache.lookup("v") is None
