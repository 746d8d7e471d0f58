"""MediaFetcher against a real HTTP server on 127.0.0.1 (twisted.web, same reactor).

The server serves a WAV (with an ETag, so conditional requests get 304), a 404, an endpoint
that never answers (the fetch deadline runs on a Clock the test advances, so no real waiting),
a file over the size limit with and without Content-Length, and a text file. Requests are
counted on the server side.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web import http, resource, server

from callmeter.media.cache import MediaCache
from callmeter.media.fetch import MediaError, MediaFetcher, MediaFile
from tests.unit.mediafiles.helpers import av_module, tone_wav

LIMIT = 64 * 1024


class Counting(resource.Resource):
    isLeaf = True

    def __init__(self, server_state: State) -> None:
        super().__init__()
        self.state = server_state

    def render_GET(self, request: Any) -> Any:
        path = request.path.decode()
        self.state.requests.append(path)
        return self.state.handle(path, request)


class State:
    def __init__(self, wav: bytes) -> None:
        self.wav = wav
        self.requests: list[str] = []
        self.bodies: list[str] = []
        self.hanging: list[Any] = []
        self.arrived: defer.Deferred[None] = defer.Deferred()

    def handle(self, path: str, request: Any) -> Any:
        if path in ("/tone.wav", "/secret/tone.wav"):
            if path.startswith("/secret") and request.getUser() != b"bob":
                request.setResponseCode(401)
                return b""
            request.setHeader(b"content-type", b"audio/wav")
            if request.setETag(b'"tone-v1"') is http.CACHED:  # 304 Not Modified
                return b""
            self.bodies.append(path)
            return self.wav
        if path == "/notes.txt":
            self.bodies.append(path)
            return b"just some text, not a media file at all\n" * 40
        if path == "/big.wav":  # Content-Length announces too much
            return self.wav + bytes(LIMIT)
        if path == "/big-chunked.wav":  # no Content-Length: caught while streaming
            request.write(self.wav)
            request.write(bytes(LIMIT))
            request.finish()
            return server.NOT_DONE_YET
        if path == "/slow.wav":
            self.hanging.append(request)
            self.arrived.callback(None)
            return server.NOT_DONE_YET
        if path == "/slow-body.wav":  # headers and part of the body, then nothing
            request.setHeader(b"content-length", str(len(self.wav)).encode())
            request.write(self.wav[:1000])
            self.hanging.append(request)
            self.arrived.callback(None)
            return server.NOT_DONE_YET
        if path == "/error.wav":
            request.setResponseCode(503)
            return b"busy"
        request.setResponseCode(404)
        return b"not here"


class MediaFetchTests(TestCase):
    timeout = 20

    def setUp(self) -> None:
        av_module()
        self.tmp = Path(tempfile.mkdtemp(prefix="media-fetch-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)
        wav = tone_wav(self.tmp / "tone.wav", seconds=0.5, rate=8000).read_bytes()
        self.state = State(wav)
        site = server.Site(Counting(self.state))
        site.timeOut = None  # no idle timer left in the reactor
        port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(port.stopListening)
        self.base = f"http://127.0.0.1:{port.getHost().port}"
        self.clock = Clock()
        self.fetcher = self.make_fetcher()

    def make_fetcher(self, **kwargs: Any) -> MediaFetcher:
        fetcher = MediaFetcher(
            MediaCache(self.tmp / "cache", now=self.clock.seconds),
            reactor,
            clock=self.clock,
            max_bytes=LIMIT,
            timeout_s=5.0,
            **kwargs,
        )
        self.addCleanup(fetcher.close)
        return fetcher

    @defer.inlineCallbacks
    def failure(self, url: str) -> Any:
        try:
            yield self.fetcher.fetch(url)
        except MediaError as error:
            return error
        self.fail(f"{url} did not fail")

    @defer.inlineCallbacks
    def test_download_then_cache_hit_without_request(self) -> Any:
        first = yield self.fetcher.fetch(self.base + "/tone.wav")
        self.assertIsInstance(first, MediaFile)
        self.assertFalse(first.from_cache)
        self.assertEqual(first.path.read_bytes(), self.state.wav)
        self.assertTrue(first.has_audio)
        self.assertEqual(first.container, "wav")
        second = yield self.fetcher.fetch(self.base + "/tone.wav")
        self.assertTrue(second.from_cache)
        self.assertEqual((second.path, second.sha256), (first.path, first.sha256))
        self.assertEqual(self.state.requests, ["/tone.wav"])  # fresh: no request at all
        # A second fetcher (a later test run) on the same cache directory reuses it too.
        third = yield self.make_fetcher().fetch(self.base + "/tone.wav")
        self.assertTrue(third.from_cache)
        self.assertEqual(self.state.requests, ["/tone.wav"])

    @defer.inlineCallbacks
    def test_stale_entry_revalidated_with_etag(self) -> Any:
        yield self.fetcher.fetch(self.base + "/tone.wav")
        self.clock.advance(301)  # past fresh_s: a conditional request, answered 304
        again = yield self.fetcher.fetch(self.base + "/tone.wav")
        self.assertTrue(again.from_cache)
        self.assertEqual(self.state.requests, ["/tone.wav", "/tone.wav"])
        self.assertEqual(self.state.bodies, ["/tone.wav"])  # one download only
        self.assertEqual(self.fetcher.downloads, 1)

    @defer.inlineCallbacks
    def test_concurrent_fetches_share_one_download(self) -> Any:
        results = yield defer.gatherResults(
            [self.fetcher.fetch(self.base + "/tone.wav") for _ in range(3)]
        )
        self.assertEqual(len({r.sha256 for r in results}), 1)
        self.assertEqual(self.state.requests, ["/tone.wav"])

    @defer.inlineCallbacks
    def test_credentials_as_basic_auth_never_in_errors(self) -> Any:
        ok = yield self.fetcher.fetch(self.base.replace("//", "//bob:pw@") + "/secret/tone.wav")
        self.assertEqual(ok.url, self.base.replace("//", "//bob:***@") + "/secret/tone.wav")
        error = yield self.failure(self.base.replace("//", "//eve:hunter2@") + "/secret/x.wav")
        self.assertNotIn("hunter2", str(error))

    @defer.inlineCallbacks
    def test_404(self) -> Any:
        error = yield self.failure(self.base + "/missing.wav")
        self.assertEqual(error.kind, "not_found")
        self.assertEqual(str(error), f"media {self.base}/missing.wav: HTTP 404 Not Found")

    @defer.inlineCallbacks
    def test_other_status(self) -> Any:
        error = yield self.failure(self.base + "/error.wav")
        self.assertEqual(error.kind, "http_status")
        self.assertIn("HTTP 503", str(error))

    @defer.inlineCallbacks
    def test_not_media(self) -> Any:
        error = yield self.failure(self.base + "/notes.txt")
        self.assertEqual(error.kind, "not_media")
        self.assertIn("notes.txt: not an audio or video file", str(error))
        self.assertEqual(list((self.tmp / "cache" / "media" / "objects").iterdir()), [])
        self.assertEqual(list((self.tmp / "cache" / "media" / "tmp").iterdir()), [])

    @defer.inlineCallbacks
    def test_too_large_by_content_length(self) -> Any:
        error = yield self.failure(self.base + "/big.wav")
        self.assertEqual(error.kind, "too_large")
        self.assertIn("Content-Length", str(error))
        self.assertEqual(self.fetcher.downloads, 0)  # refused before the body

    @defer.inlineCallbacks
    def test_too_large_while_streaming(self) -> Any:
        error = yield self.failure(self.base + "/big-chunked.wav")
        self.assertEqual(error.kind, "too_large")
        self.assertIn(f"larger than the {LIMIT}-byte limit", str(error))
        self.assertEqual(list((self.tmp / "cache" / "media" / "tmp").iterdir()), [])

    def test_timeout_before_headers(self) -> Any:
        return self.check_timeout("/slow.wav")

    def test_timeout_during_body(self) -> Any:
        return self.check_timeout("/slow-body.wav")

    @defer.inlineCallbacks
    def check_timeout(self, path: str) -> Any:
        pending = self.failure(self.base + path)
        yield self.state.arrived  # the server has the request and will never answer
        self.clock.advance(5.0)
        error = yield pending
        self.assertEqual(error.kind, "timeout")
        self.assertIn("no complete response within 5 s", str(error))
        self.assertEqual(list((self.tmp / "cache" / "media" / "tmp").iterdir()), [])

    @defer.inlineCallbacks
    def test_connection_refused(self) -> Any:
        site = server.Site(resource.Resource())
        port: Any = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
        number = port.getHost().port
        yield port.stopListening()
        error = yield self.failure(f"http://127.0.0.1:{number}/tone.wav")
        self.assertEqual(error.kind, "connect")
        self.assertIn("connection refused", str(error))

    @defer.inlineCallbacks
    def test_failure_does_not_break_the_next_fetch(self) -> Any:
        yield self.failure(self.base + "/notes.txt")
        ok = yield self.fetcher.fetch(self.base + "/tone.wav")
        self.assertTrue(ok.has_audio)
