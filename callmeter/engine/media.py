"""The engine's media: one process-wide pacer, port allocator and prepared media per test,
and a :class:`~callmeter.media.call_media.CallMedia` per call with the group's codecs.

Media is prepared once per test (ARCHITECTURE.md "Hot path rules"): each audio codec a group
uses gets its payload list built once, from the group's media file when the plan names one and
otherwise from the generated speech-like signal, and every call of every endpoint replays it
with its own SSRC, sequence numbers and timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def _prepare(codec: str) -> PreparedMedia:
    """The generated signal for ``codec``, encoded once: G.711 built in, the rest with PyAV."""
    if codec.upper() in BUILT_IN_AUDIO:
        return default_audio(codec.upper())
    try:
        from callmeter.media.encode import EncodeError, prepare
    except ImportError as error:
        raise ValueError(
            f"{codec} needs PyAV ({error}): apt install python3-av, or pip install "
            "'callmeter-worker[media]'"
        ) from None
    try:
        return prepare(codec).media
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
                jitter_ms=snap.jitter_ms if snap.packets_received else None,
                rtt_ms=snap.rtt_mean_ms,
                mos=snap.mos,
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


def media_factory(config: Config, plan: Plan, reactor: Any) -> MediaFactory:
    """Everything a test's calls share, and a factory making each call's media by group."""
    pacer = Pacer(reactor)
    mux = UdpMux(reactor)  # one receive multiplexer for every stream of the process
    allocator = RtpPortAllocator(config.rtp_port_min, config.rtp_port_max)
    prepared: dict[str, PreparedMedia] = {}
    for group in plan.groups:
        for codec in (*group.codecs, *group.video):
            if codec.lower() not in prepared:
                prepared[codec.lower()] = _prepare(codec)
    by_group: dict[str, _GroupMedia] = {}
    for group in plan.groups:
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
            )
        )

    def make(group: Group) -> RunMedia:
        return by_group[group.name]()

    return make
