"""Media files for a test: fetched from http(s):// (treq) or read from file://, checked, cached.

:class:`MediaFetcher` turns a plan's ``media`` URL into a :class:`MediaFile` (a local path and
what it contains) at test start, or fails with one :class:`MediaError` naming the URL (without
credentials or query values) and the reason, for that test only.

- Size: at most ``max_bytes`` (50 MiB by default). A ``Content-Length`` above it is refused
  before any body byte is read; without one, the download stops as soon as it passes it
  (counted after content decoding, so a compressed bomb is caught too).
- Time: the whole fetch (connect, headers, body) has ``timeout_s`` (30 s by default) on the
  fetcher's clock; at the deadline the request is cancelled or the body transfer aborted.
- Content: the first bytes must be a known container's magic number (:func:`sniff`: WAV/RIFF,
  AVI, Ogg, MP3 (ID3 or an MPEG audio frame), AAC ADTS, MP4/ISO-BMFF, WebM/Matroska, FLAC);
  a download that does not start like media is aborted early. Then PyAV must open the file
  and decode a frame of an audio or video stream (:func:`probe`).
- Cache (:mod:`callmeter.media.cache`): within ``fresh_s`` (300 s by default) of the last
  download or validation a URL is served from the cache with no request at all; after that
  the fetcher sends a conditional GET (``If-None-Match`` with the stored ``ETag``,
  ``If-Modified-Since`` with the stored ``Last-Modified``, RFC 9110 section 13.1) and a
  ``304 Not Modified`` renews the entry without a download. Several tests asking for the same
  URL at once share one download.
- ``file://`` URLs (absolute paths, host empty or ``localhost``) are checked the same way and
  used in place, not copied.

User information in a URL (``https://user:password@host/...``) is sent as HTTP basic
authentication, never logged or put in an error message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from twisted.internet import defer
from twisted.internet import error as ierror
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web import client as webclient
from twisted.web import http
from twisted.web.http_headers import Headers

from callmeter.media.cache import CacheEntry, MediaCache

__all__ = [
    "DEFAULT_FETCH_TIMEOUT_S",
    "DEFAULT_FRESH_S",
    "DEFAULT_MAX_MEDIA_BYTES",
    "MediaError",
    "MediaFetcher",
    "MediaFile",
    "MediaInfo",
    "probe",
    "redact_url",
    "sniff",
]

DEFAULT_MAX_MEDIA_BYTES = 50 * 1024**2
DEFAULT_FETCH_TIMEOUT_S = 30.0
DEFAULT_FRESH_S = 300.0
_SNIFF_BYTES = 64
_CHUNK = 1 << 20


class MediaError(Exception):
    """A media URL could not be used. ``kind`` is one of :attr:`KINDS`.

    The message names the URL with credentials and query values removed, and the reason.
    """

    KINDS = (
        "bad_url",
        "not_found",
        "http_status",
        "timeout",
        "connect",
        "too_large",
        "not_media",
        "io",
    )

    def __init__(self, url: str, kind: str, reason: str) -> None:
        self.url = redact_url(url)
        self.kind = kind
        self.reason = reason
        super().__init__(f"media {self.url}: {reason}")


@dataclass(frozen=True)
class MediaInfo:
    """What PyAV found in a file."""

    container: str
    has_audio: bool
    has_video: bool
    duration_s: float | None


@dataclass(frozen=True)
class MediaFile:
    """A checked media file on local disk."""

    url: str  #: redacted
    path: Path
    sha256: str
    size: int
    container: str  #: from :func:`sniff`
    has_audio: bool
    has_video: bool
    from_cache: bool


def redact_url(url: str) -> str:
    """``url`` without the password of its user information and without query values."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
        query = parts.query
        if query:
            query = urlencode([(k, "***") for k, _ in parse_qsl(query, keep_blank_values=True)])
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<unparsable URL>"


def sniff(head: bytes) -> str | None:
    """The container a file's first bytes announce, or None (magic numbers of each format)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"RF64" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:3] == b"ID3":
        return "mp3"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[4:8] == b"ftyp":
        return "mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        layer = (head[1] >> 1) & 0x03
        if layer:  # MPEG audio layer III/II/I frame sync
            return "mp3"
        if head[1] & 0xF6 == 0xF0:  # ADTS: sync 12 bits, layer 00
            return "aac"
    return None


def probe(path: str | Path) -> MediaInfo:
    """Open ``path`` with PyAV and decode one frame; raises ValueError if it is not media."""
    try:
        import av
    except ImportError:
        raise ValueError("PyAV is not installed (python3-av / av): cannot check media") from None
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise ValueError(f"not a media file PyAV can open ({exc})") from None
    try:
        has_audio = bool(container.streams.audio)
        has_video = bool(container.streams.video)
        if not (has_audio or has_video):
            raise ValueError("no audio or video stream")
        selector = {"audio": 0} if has_audio else {"video": 0}
        try:
            for _frame in container.decode(**selector):
                break
            else:
                raise ValueError("the stream has no decodable frame")
        except av.error.FFmpegError as exc:
            raise ValueError(f"the stream does not decode ({exc})") from None
        duration = None if container.duration is None else container.duration / 1_000_000
        return MediaInfo(container.format.name, has_audio, has_video, duration)
    finally:
        container.close()


# Body download -----------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _NotMedia(Exception):
    pass


class _BodyWriter(Protocol):
    """Streams a response body to a file, hashing, counting and sniffing as it goes."""

    def __init__(self, out: IO[bytes], limit: int, done: defer.Deferred[tuple[str, str]]) -> None:
        self.out = out
        self.limit = limit
        self.done = done
        self.size = 0
        self.digest = hashlib.sha256()
        self.head = b""
        self.container: str | None = None
        self.failed: Exception | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.failed is not None:
            return
        self.size += len(data)
        if self.size > self.limit:
            self._abort(_TooLarge(f"larger than the {self.limit}-byte limit"))
            return
        if self.container is None:
            self.head += data[: _SNIFF_BYTES - len(self.head)]
            if len(self.head) >= _SNIFF_BYTES:
                self.container = sniff(self.head)
                if self.container is None:
                    self._abort(_NotMedia("not an audio or video file (unknown content)"))
                    return
        self.digest.update(data)
        try:
            self.out.write(data)
        except OSError as exc:
            self._abort(exc)

    def _abort(self, exc: Exception) -> None:
        self.failed = exc
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.done.called:
            return
        if self.failed is not None:
            self.done.errback(self.failed)
        elif reason.check(webclient.ResponseDone, http.PotentialDataLoss):
            container = self.container or sniff(self.head)
            if container is None:
                self.done.errback(_NotMedia("not an audio or video file (unknown content)"))
            else:
                self.done.callback((self.digest.hexdigest(), container))
        else:
            self.done.errback(reason)


class _Discard(Protocol):
    """Drops a body we do not want (error statuses) by stopping the transfer."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


# The fetcher --------------------------------------------------------------------------


class MediaFetcher:
    """Fetches, checks and caches media files (see the module docstring).

    ``reactor`` makes the connections; ``clock`` (the reactor when None) runs the deadline;
    ``agent`` (an ``IAgent``, e.g. with a custom TLS policy) replaces the default
    non-persistent ``Agent``.
    """

    def __init__(
        self,
        cache: MediaCache,
        reactor: Any = None,
        *,
        max_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
        timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
        fresh_s: float = DEFAULT_FRESH_S,
        clock: IReactorTime | None = None,
        agent: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if max_bytes <= 0 or timeout_s <= 0:
            raise ValueError("max_bytes and timeout_s must be positive")
        import treq.client

        self.cache = cache
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.fresh_s = fresh_s
        self._reactor = reactor
        self._clock: IReactorTime = clock if clock is not None else reactor
        self._pool = webclient.HTTPConnectionPool(reactor, persistent=False)
        self._client = treq.client.HTTPClient(
            agent if agent is not None else webclient.Agent(reactor, pool=self._pool)
        )
        self._inflight: dict[str, list[defer.Deferred[MediaFile]]] = {}
        #: Full downloads started, for tests and the report.
        self.downloads = 0

    def close(self) -> defer.Deferred[None]:
        """Close idle connections (there are none with the default non-persistent pool)."""
        return self._pool.closeCachedConnections()  # type: ignore[no-any-return]

    def fetch(self, url: str) -> defer.Deferred[MediaFile]:
        """The checked local file for ``url``; fails with :class:`MediaError` only."""
        waiting: defer.Deferred[MediaFile] = defer.Deferred()
        if url in self._inflight:
            self._inflight[url].append(waiting)
            return waiting
        self._inflight[url] = [waiting]

        def finish(result: MediaFile | Failure) -> None:
            for d in self._inflight.pop(url, []):
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(result)

        d = defer.Deferred.fromCoroutine(self._fetch(url))
        d.addBoth(finish)
        return waiting

    async def _fetch(self, url: str) -> MediaFile:
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise MediaError(url, "bad_url", f"not a URL ({exc})") from None
        if parts.scheme == "file":
            return self._local(url, parts.netloc, unquote(parts.path))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MediaError(
                url, "bad_url", "only http://, https:// and file:// URLs are supported"
            )
        return await self._remote(url)

    def _check(self, url: str, path: Path) -> MediaInfo:
        try:
            return probe(path)
        except ValueError as exc:
            raise MediaError(url, "not_media", str(exc)) from None

    def _local(self, url: str, host: str, path_text: str) -> MediaFile:
        if host not in ("", "localhost") or not path_text.startswith("/"):
            raise MediaError(url, "bad_url", "a file:// URL needs an absolute local path")
        path = Path(path_text)
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise MediaError(url, "io", "not a regular file")
            if size > self.max_bytes:
                raise MediaError(
                    url, "too_large", f"{size} bytes, larger than the {self.max_bytes}-byte limit"
                )
            digest = hashlib.sha256()
            with path.open("rb") as f:
                head = f.read(_SNIFF_BYTES)
                digest.update(head)
                for chunk in iter(lambda: f.read(_CHUNK), b""):
                    digest.update(chunk)
        except FileNotFoundError:
            raise MediaError(url, "not_found", "no such file") from None
        except OSError as exc:
            raise MediaError(url, "io", exc.strerror or str(exc)) from None
        container = sniff(head)
        if container is None:
            raise MediaError(url, "not_media", "not an audio or video file (unknown content)")
        info = self._check(url, path)
        return MediaFile(
            redact_url(url), path, digest.hexdigest(), size, container,
            info.has_audio, info.has_video, from_cache=False,
        )  # fmt: skip

    def _request_target(self, url: str) -> tuple[str, tuple[str, str] | None]:
        """The URL without user information, and the basic-auth pair it carried."""
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url, None
        userinfo, host = parts.netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        bare = urlunsplit((parts.scheme, host, parts.path, parts.query, ""))
        return bare, (unquote(user), unquote(password))

    async def _remote(self, url: str) -> MediaFile:
        entry = self.cache.lookup(url)
        if entry is not None and entry.is_fresh(self._clock.seconds(), self.fresh_s):
            self.cache.touch(entry)
            return self._from_entry(entry)
        headers = Headers()
        if entry is not None:
            if entry.etag:
                headers.setRawHeaders(b"If-None-Match", [entry.etag.encode("latin-1")])
            if entry.last_modified:
                headers.setRawHeaders(b"If-Modified-Since", [entry.last_modified.encode("latin-1")])
        target, auth = self._request_target(url)

        timed_out = False
        body: _BodyWriter | None = None
        requested: defer.Deferred[Any] = self._client.request(
            "GET", target, headers=headers, auth=auth, unbuffered=True, reactor=self._reactor
        )

        def on_timeout() -> None:
            nonlocal timed_out
            timed_out = True
            if body is not None:
                body._abort(TimeoutError())
            else:  # no response yet (``called`` may be true while it waits on the connection)
                requested.cancel()

        deadline = self._clock.callLater(self.timeout_s, on_timeout)
        temp: Path | None = None
        try:
            try:
                response = await requested
            except Exception as exc:
                if timed_out:
                    raise self._timeout(url) from None
                raise MediaError(url, "connect", _connect_reason(exc)) from None

            code = response.code
            if code == http.NOT_MODIFIED and entry is not None:
                response.deliverBody(_Discard())
                return self._from_entry(self.cache.revalidated(url, entry))
            if code != http.OK:
                response.deliverBody(_Discard())
                if code in (http.NOT_FOUND, http.GONE):
                    raise MediaError(url, "not_found", f"HTTP {code} {_phrase(code)}")
                raise MediaError(url, "http_status", f"HTTP {code} {_phrase(code)}")
            length = response.length
            if isinstance(length, int) and length > self.max_bytes:
                response.deliverBody(_Discard())
                raise MediaError(
                    url,
                    "too_large",
                    f"Content-Length {length} is larger than the {self.max_bytes}-byte limit",
                )

            self.downloads += 1
            temp, out = self.cache.temp_file()
            done: defer.Deferred[tuple[str, str]] = defer.Deferred()
            body = _BodyWriter(out, self.max_bytes, done)
            try:
                response.deliverBody(body)
                try:
                    sha256, container = await done
                except _TooLarge as exc:
                    raise MediaError(url, "too_large", str(exc)) from None
                except _NotMedia as exc:
                    raise MediaError(url, "not_media", str(exc)) from None
                except Exception as exc:
                    if timed_out:
                        raise self._timeout(url) from None
                    reason = _connect_reason(exc)
                    raise MediaError(url, "io", f"download interrupted ({reason})") from None
            finally:
                out.close()
            info = self._check(url, temp)
            headers_in = response.headers
            stored = self.cache.store(
                url,
                redact_url(url),
                temp,
                sha256,
                container,
                etag=_header(headers_in, b"etag"),
                last_modified=_header(headers_in, b"last-modified"),
            )
            temp = None
            return self._from_entry(stored, from_cache=False, info=info)
        finally:
            if deadline.active():
                deadline.cancel()
            if temp is not None:
                self.cache.discard(temp)

    def _timeout(self, url: str) -> MediaError:
        return MediaError(url, "timeout", f"no complete response within {self.timeout_s:g} s")

    def _from_entry(
        self, entry: CacheEntry, from_cache: bool = True, info: MediaInfo | None = None
    ) -> MediaFile:
        if info is None:
            try:
                info = probe(entry.path)
            except ValueError as exc:  # a damaged cache file: checked before it was stored
                raise MediaError(entry.url, "not_media", f"cached copy: {exc}") from None
        return MediaFile(
            entry.url, entry.path, entry.sha256, entry.size, entry.container,
            info.has_audio, info.has_video, from_cache,
        )  # fmt: skip


def _header(headers: Any, name: bytes) -> str | None:
    values = headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else None


def _phrase(code: int) -> str:
    return http.RESPONSES.get(code, b"").decode("ascii", "replace")


def _connect_reason(exc: BaseException) -> str:
    """A short reason for a failed connection, looking inside Agent's wrapper failures."""
    inner: list[BaseException] = []
    reasons = getattr(exc, "reasons", None)
    if reasons:
        inner = [r.value for r in reasons if isinstance(r, Failure) and r.value is not None]
    for e in [exc, *inner]:
        if isinstance(e, ierror.ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ierror.DNSLookupError):
            return "host name not found"
        if isinstance(e, ierror.TimeoutError | TimeoutError):
            return "connection timed out"
    text = "; ".join(str(e) for e in inner) if inner else str(exc)
    return text or type(exc).__name__
