"""The media file cache in MEDIA_CACHE_DIR: by URL and by content hash, size-bounded (LRU).

Layout under ``<MEDIA_CACHE_DIR>/media/``:

- ``objects/<sha256>``: the downloaded bytes, named by their SHA-256, so two URLs serving
  the same file share one copy and a file's identity is its content (encoded media can be
  keyed by it);
- ``urls/<sha256 of the URL>.json``: what a URL resolved to: the content hash and size, the
  validators (``ETag``, ``Last-Modified``, RFC 9110 section 8.8) and when it was last fetched
  or revalidated; the URL itself is stored with its credentials removed;
- ``tmp/``: downloads in progress, renamed into ``objects/`` once complete and checked, so a
  reader never sees a partial file (a rename within one file system is atomic).

Freshness (see :class:`callmeter.media.fetch.MediaFetcher`): an entry validated less than
``fresh_s`` ago is used without any request; an older one is revalidated with a conditional
request (``If-None-Match`` / ``If-Modified-Since``, RFC 9110 section 13.1), and a
``304 Not Modified`` renews it without a download.

Eviction: least recently used first, by object modification time, which is set on every use
(``os.utime``), until the objects fit in ``max_bytes``. The object just stored or used is never
evicted by its own store, even when it alone is bigger than the budget. URL entries whose
object is gone are dropped when next looked up. Several processes may share the directory:
every write is a rename, and a reader tolerates an object vanishing.

Synchronous file-system code (small files, a few ``stat`` calls): no reactor, no network.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "CacheEntry",
    "MediaCache",
    "url_key",
]

#: Default byte budget of the media cache.
DEFAULT_CACHE_BYTES = 2 * 1024**3
_STALE_TEMP_S = 3600.0


def url_key(url: str) -> str:
    """The file name of a URL's entry: SHA-256 of the full URL (credentials included)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """What a URL resolved to when last fetched."""

    url: str
    sha256: str
    size: int
    path: Path
    container: str
    etag: str | None
    last_modified: str | None
    validated_at: float

    def is_fresh(self, now: float, fresh_s: float) -> bool:
        """True while the entry may be used without asking the server again."""
        return 0 <= now - self.validated_at < fresh_s


class MediaCache:
    """Media files by URL and content hash under ``root``, at most ``max_bytes`` of objects."""

    def __init__(
        self,
        root: str | Path,
        max_bytes: int = DEFAULT_CACHE_BYTES,
        now: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"cache budget must be positive, got {max_bytes}")
        self.root = Path(root) / "media"
        self.max_bytes = max_bytes
        self._now = now
        self.objects = self.root / "objects"
        self.urls = self.root / "urls"
        self.tmp = self.root / "tmp"
        for directory in (self.objects, self.urls, self.tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp()

    def _remove_stale_temp(self) -> None:
        limit = time.time() - _STALE_TEMP_S
        for path in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < limit:
                    path.unlink()

    # Lookups -------------------------------------------------------------------------

    def lookup(self, url: str) -> CacheEntry | None:
        """The entry for ``url`` if its object is still there, else None."""
        index = self.urls / f"{url_key(url)}.json"
        try:
            record = json.loads(index.read_text(encoding="utf-8"))
            sha = str(record["sha256"])
            path = self.objects / sha
            size = path.stat().st_size
            if size != int(record["size"]):
                raise ValueError("size mismatch")
            return CacheEntry(
                url=str(record["url"]),
                sha256=sha,
                size=size,
                path=path,
                container=str(record["container"]),
                etag=record.get("etag"),
                last_modified=record.get("last_modified"),
                validated_at=float(record["validated_at"]),
            )
        except FileNotFoundError:
            if index.exists():  # the object was evicted: forget the URL too
                with contextlib.suppress(OSError):
                    index.unlink()
            return None
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                index.unlink()
            return None

    def touch(self, entry: CacheEntry) -> None:
        """Mark the object as just used (LRU order)."""
        now = self._now()
        with contextlib.suppress(OSError):
            os.utime(entry.path, (now, now))

    # Writes ----------------------------------------------------------------------------

    def temp_file(self) -> tuple[Path, IO[bytes]]:
        """A new file in ``tmp/`` to download into (the caller closes it)."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="dl-")
        return Path(name), os.fdopen(fd, "wb")

    def discard(self, temp: Path) -> None:
        """Remove a download that failed."""
        with contextlib.suppress(OSError):
            temp.unlink()

    def store(
        self,
        url: str,
        redacted_url: str,
        temp: Path,
        sha256: str,
        container: str,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> CacheEntry:
        """Move a complete, checked download into ``objects/`` and index it under ``url``."""
        path = self.objects / sha256
        if path.exists():
            self.discard(temp)  # the same content is already here
        else:
            os.replace(temp, path)
        entry = CacheEntry(
            url=redacted_url,
            sha256=sha256,
            size=path.stat().st_size,
            path=path,
            container=container,
            etag=etag,
            last_modified=last_modified,
            validated_at=self._now(),
        )
        self._write_index(url, entry)
        self.touch(entry)
        self.evict(keep={sha256})
        return entry

    def revalidated(self, url: str, entry: CacheEntry) -> CacheEntry:
        """Record that the server confirmed ``entry`` is current (304), and use it."""
        renewed = CacheEntry(
            url=entry.url,
            sha256=entry.sha256,
            size=entry.size,
            path=entry.path,
            container=entry.container,
            etag=entry.etag,
            last_modified=entry.last_modified,
            validated_at=self._now(),
        )
        self._write_index(url, renewed)
        self.touch(renewed)
        return renewed

    def _write_index(self, url: str, entry: CacheEntry) -> None:
        record = {
            "url": entry.url,
            "sha256": entry.sha256,
            "size": entry.size,
            "container": entry.container,
            "etag": entry.etag,
            "last_modified": entry.last_modified,
            "validated_at": entry.validated_at,
        }
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="ix-")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(name, self.urls / f"{url_key(url)}.json")

    # Size bound ------------------------------------------------------------------------

    def usage(self) -> int:
        """Bytes held in ``objects/``."""
        total = 0
        for path in self.objects.iterdir():
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def evict(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Delete least recently used objects until the rest fit ``max_bytes``.

        Returns the content hashes removed. Objects named in ``keep`` stay.
        """
        objects = []
        for path in self.objects.iterdir():
            try:
                st = path.stat()
            except OSError:
                continue
            objects.append((st.st_mtime, path.name, st.st_size, path))
        total = sum(size for _, _, size, _ in objects)
        removed = []
        for _, name, size, path in sorted(objects):
            if total <= self.max_bytes:
                break
            if name in keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size
            removed.append(name)
        return removed
