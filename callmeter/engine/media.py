"""The engine's media: one process-wide pacer, port allocator and prepared media per test,
and a :class:`~callmeter.media.call_media.CallMedia` per call with the group's codecs.

Media is prepared once per test (ARCHITECTURE.md "Hot path rules"): each audio codec a group
uses gets its payload list built once, from the group's media file when the plan names one and
otherwise from the generated speech-like signal, and every call of every endpoint replays it
with its own SSRC, sequence numbers and timestamps.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorFDSet

from callmeter.config import Config
from callmeter.engine.metrics import StreamResult
from callmeter.engine.run import MediaFactory, RunMedia
from callmeter.media.call_media import CallMedia
from callmeter.media.call_media import MediaFactory as CallMediaFactory
from callmeter.media.prepared import PreparedMedia, default_audio
from callmeter.plan import Group, Plan
from callmeter.rtp.pacer import Pacer
from callmeter.rtp.ports import RtpPortAllocator
from callmeter.rtp.stream import UdpMux

__all__ = ["EngineMedia", "media_factory", "stream_results"]

BUILT_IN_AUDIO = ("PCMU", "PCMA")


def media_cache_dir(config: Config) -> str:
    """MEDIA_CACHE_DIR when we may write there, else the user's cache (a `callmeter run` by a
    user who cannot write /var/cache/callmeter still caches its downloads)."""
    wanted = config.media_cache_dir
    probe = wanted
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if os.access(probe, os.W_OK):
        return wanted
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "callmeter")


@defer.inlineCallbacks
def fetch_plan_media(
    config: Config, plan: Plan, reactor: Any
) -> Generator[defer.Deferred[Any], Any, dict[str, str]]:
    """Fetch (or find in the cache) every media file the plan names: URL -> local path.

    Fails with ValueError naming the URL (credentials removed) and the reason: a 404, a
    timeout, a file that is not media.
    """
    urls = sorted({url for g in plan.groups for url in (g.media, g.video_media) if url})
    if not urls:
        return {}
    from callmeter.media.cache import MediaCache
    from callmeter.media.fetch import MediaError, MediaFetcher

    fetcher = MediaFetcher(MediaCache(media_cache_dir(config)), reactor)
    paths: dict[str, str] = {}
    try:
        for url in urls:
            try:
                media = yield fetcher.fetch(url)
            except MediaError as error:
                raise ValueError(str(error)) from None
            paths[url] = str(media.path)
    finally:
        fetcher.close()
    return paths


def _prepare(codec: str, path: str | None = None) -> PreparedMedia:
    """``codec``'s media, encoded once: from ``path`` when the plan names a file, else the
    generated signal; G.711 is built in, the rest (and every file) needs PyAV."""
    if codec.upper() in BUILT_IN_AUDIO and path is None:
        return default_audio(codec.upper())
    try:
        from callmeter.media.encode import EncodeError, prepare
    except ImportError as error:
        raise ValueError(
            f"{codec} needs PyAV ({error}): apt install python3-av, or pip install "
            "'callmeter-worker[media]'"
        ) from None
    try:
        return prepare(codec, path).media
    except ImportError as error:
        raise ValueError(f"{codec} needs PyAV ({error}): apt install python3-av") from None
    except EncodeError as error:
        raise ValueError(f"{codec}: {error}") from None


def stream_results(media: CallMedia) -> list[StreamResult]:
    """The engine's view of a call's streams (cumulative figures)."""
    results = []
    for snap in media.snapshot():
        results.append(
            StreamResult(
                sent_packets=snap.packets_sent,
                sent_bytes=snap.bytes_sent,
                received_packets=snap.packets_received,
                received_bytes=snap.bytes_received,
                lost_packets=snap.lost,
                expected_packets=snap.expected,
                jitter_ms=snap.jitter_ms,
                rtt_ms=snap.rtt_mean_ms,
                mos=snap.mos,
                stray_packets=snap.stray_packets,
                media_state=snap.media_state,
                stopped_at_s=snap.stopped_at_s,
                events_received=snap.events_received,
                cn_received=snap.cn_received,
                other_payload_received=snap.other_payload_received,
                other_ssrc_packets=snap.other_ssrc_packets,
                rtcp_received=snap.rtcp_received,
                codec=snap.codec,
                emodel=snap.emodel,
            )
        )
    return results


class EngineMedia(CallMedia):
    """A CallMedia that also reports :class:`StreamResult` figures to the engine."""

    def results(self) -> list[StreamResult]:
        return stream_results(self)


@dataclass
class _GroupMedia:
    factory: CallMediaFactory

    def __call__(self) -> EngineMedia:
        return EngineMedia(self.factory)


def media_factory(
    config: Config, plan: Plan, reactor: Any, files: Mapping[str, str] | None = None
) -> MediaFactory:
    """Everything a test's calls share, and a factory making each call's media by group.

    ``files`` maps the plan's media URLs to local paths (:func:`fetch_plan_media`).
    """
    files = files or {}
    # A real reactor: the pacer sleeps on a timerfd (exact, where epoll's timeout is whole ms).
    pacer = Pacer(reactor, precise=IReactorFDSet.providedBy(reactor))
    mux = UdpMux(reactor)  # one receive multiplexer for every stream of the process
    allocator = RtpPortAllocator(config.rtp_port_min, config.rtp_port_max)
    encoded: dict[tuple[str, str | None], PreparedMedia] = {}

    def once(codec: str, url: str | None) -> PreparedMedia:
        path = files.get(url) if url else None
        key = (codec.lower(), path)
        if key not in encoded:
            encoded[key] = _prepare(codec, path)
        return encoded[key]

    by_group: dict[str, _GroupMedia] = {}
    for group in plan.groups:
        prepared = {codec.lower(): once(codec, group.media) for codec in group.codecs}
        prepared.update({codec.lower(): once(codec, group.video_media) for codec in group.video})
        by_group[group.name] = _GroupMedia(
            CallMediaFactory(
                reactor=reactor,
                pacer=pacer,
                allocator=allocator,
                sip_ip=config.sip_ip,
                sdp_ip=config.sdp_ip,
                prepared=prepared,
                audio_codecs=tuple(group.codecs),
                video_codecs=tuple(group.video),
                mux=mux,
                plc=plan.emodel_plc,
            )
        )

    def make(group: Group) -> RunMedia:
        return by_group[group.name]()

    return make
