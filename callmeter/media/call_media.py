"""The media of one SIP call: SDP offer/answer (RFC 3264) in front of RTP streams (RFC 3550).

:class:`CallMedia` implements :class:`callmeter.sip.call.MediaSession`, the narrow interface
a SIP call uses, so the SIP layer never sees RTP:

* ``local_offer()``: bind a port pair per stream (audio, and video when the group has video
  codecs) and build the offer (:func:`callmeter.sip.sdp.build_offer`) with SDP_IP;
* ``apply_answer(sdp)``: :func:`~callmeter.sip.sdp.negotiated` as offerer, then configure
  each stream (peer address and port, the peer's payload type, ptime, direction);
* ``answer_offer(sdp)``: bind (first time) and :func:`~callmeter.sip.sdp.build_answer`; a
  re-INVITE's offer (RFC 3264 section 8) is answered on the same ports, with the session
  version incremented, and reconfigures the running streams (hold, codec change);
* ``start()``: the streams start sending through the process-wide pacer and reporting;
* ``stop()``: RTCP BYE, sockets closed, ports back to the allocator (idempotent; safe
  before ``start`` and after a failed negotiation).

Every failure a caller must report is a :class:`ValueError` with a clear message: an
unusable SDP (call.py answers 488 or sends BYE), and :class:`MediaPortsExhausted` when the
RTP port range is used up.

:class:`MediaFactory` holds the process-wide things (reactor, pacer, port allocator,
SIP_IP/SDP_IP, the media prepared once per test by codec name) and makes a
:class:`CallMedia` per call.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from twisted.internet import defer

from callmeter.media.prepared import PreparedMedia
from callmeter.rtp.pacer import Pacer
from callmeter.rtp.ports import PortRangeExhausted, RtpPortAllocator
from callmeter.rtp.stream import (
    DEFAULT_RTCP_INTERVAL,
    RtpStream,
    StreamReactor,
    StreamSnapshot,
    UdpMux,
)
from callmeter.sip.call import MediaUnavailable
from callmeter.sip.sdp import (
    CODECS,
    Direction,
    MediaOffer,
    SessionDescription,
    build_answer,
    build_offer,
    negotiated,
    parse_sdp,
)

__all__ = [
    "CallMedia",
    "MediaFactory",
    "MediaPortsExhausted",
]


class MediaPortsExhausted(MediaUnavailable):
    """No RTP port pair left for a call's stream (a ValueError: the call reports it)."""


@dataclass
class MediaFactory:
    """Process-wide media settings and shared objects; :meth:`create` makes a call's media.

    ``mux`` (one per process, made from ``reactor`` when not given) receives for every
    stream's sockets.

    ``prepared`` maps codec names (any case) to the media sent with that codec; every
    codec in ``audio_codecs``/``video_codecs`` needs one unless ``direction`` never sends.
    """

    reactor: StreamReactor
    pacer: Pacer
    allocator: RtpPortAllocator
    sip_ip: str
    sdp_ip: str
    prepared: Mapping[str, PreparedMedia]
    audio_codecs: Sequence[str] = ("PCMU", "PCMA")
    video_codecs: Sequence[str] = ()
    ptime: int = 20
    telephone_event: bool = True
    direction: Direction = Direction.SENDRECV
    rtcp_interval: float = DEFAULT_RTCP_INTERVAL
    rng: random.Random = field(default_factory=lambda: random.Random(secrets.randbits(64)))
    mux: UdpMux | None = None
    #: The E-model's assumption for what we receive: the receiver conceals lost packets
    #: (G.113 Bpl with PLC) or plays silence (a plan's ``emodel.plc``).
    plc: bool = True

    def __post_init__(self) -> None:
        if self.mux is None:
            self.mux = UdpMux(self.reactor)
        # After each send tick, read what has arrived (loopback peers' packets are queued
        # by then): one reactor turn per tick instead of two.
        self.pacer.after_tick.append(self.mux.drain)
        self.prepared = {name.lower(): media for name, media in self.prepared.items()}
        if not self.audio_codecs and not self.video_codecs:
            raise ValueError("a call needs audio or video codecs")
        for kind, names in (("audio", self.audio_codecs), ("video", self.video_codecs)):
            for name in names:
                known = CODECS.get(name.lower())
                if known is None or known.kind != kind:
                    raise ValueError(f"{name!r} is not a known {kind} codec")
                if self.direction.sends and name.lower() not in self.prepared:
                    raise ValueError(f"no prepared media for codec {name}")

    def create(self) -> CallMedia:
        """The media of a new call."""
        return CallMedia(self)


class CallMedia:
    """One call's streams behind the :class:`callmeter.sip.call.MediaSession` interface."""

    def __init__(self, factory: MediaFactory) -> None:
        self.factory = factory
        self.streams: dict[str, RtpStream] = {}
        self._session_id = factory.rng.getrandbits(48)
        self._version = 0
        self._offer: SessionDescription | None = None
        self._started = False
        self._stopped = False

    # --- MediaSession -------------------------------------------------------------------

    def local_offer(self) -> bytes:
        """Our SDP offer (RFC 3264 section 5); binds a port pair per stream."""
        self._check_open()
        self._open(self._kinds(("audio", "video")))
        offer = build_offer(
            self._session_id,
            self.factory.sdp_ip,
            self._media_offer("audio"),
            self._media_offer("video"),
            session_version=self._next_version(),
        )
        self._offer = offer
        return offer.to_bytes()

    def apply_answer(self, answer: bytes) -> None:
        """Their answer to our offer (RFC 3264 section 6): configure the streams."""
        self._check_open()
        if self._offer is None:
            raise ValueError("no offer was sent")
        self._configure(self._offer, parse_sdp(answer), "offerer")

    def answer_offer(self, offer: bytes) -> bytes:
        """Our answer to their offer (initial or re-INVITE); ValueError if nothing fits."""
        self._check_open()
        parsed = parse_sdp(offer)
        first = not self.streams
        try:
            if first:
                offered = tuple(dict.fromkeys(m.media for m in parsed.media if m.port))
                self._open(self._kinds(offered))
            answer = build_answer(
                parsed,
                self._session_id,
                self.factory.sdp_ip,
                self._media_offer("audio"),
                self._media_offer("video"),
                session_version=self._next_version(),
            )
            self._configure(parsed, answer, "answerer")
        except ValueError:
            if first:
                self.stop()  # release what we bound; the call answers 488
            raise
        return answer.to_bytes()

    def start(self) -> None:
        """The call is up: every configured stream starts sending and reporting."""
        if self._started or self._stopped:
            return
        self._started = True
        for stream in self.streams.values():
            if stream.negotiated is not None:
                stream.start()

    def stop(self) -> None:
        """The call is over: BYE, close sockets, release ports. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for stream in self.streams.values():
            stream.stop()

    # --- the rest -------------------------------------------------------------------------

    @property
    def closed(self) -> defer.Deferred[list[None]]:
        """Fires when every stream's sockets are closed and its ports released."""
        return defer.gatherResults([s.closed for s in self.streams.values()])

    def snapshot(self) -> list[StreamSnapshot]:
        """The figures of each stream (audio first)."""
        return [self.streams[k].snapshot() for k in ("audio", "video") if k in self.streams]

    def _check_open(self) -> None:
        if self._stopped:
            raise ValueError("call media already stopped")

    def _next_version(self) -> int:
        self._version += 1
        return self._version

    def _kinds(self, wanted: Sequence[str]) -> list[str]:
        f = self.factory
        have = {"audio": bool(f.audio_codecs), "video": bool(f.video_codecs)}
        kinds = [k for k in wanted if have.get(k)]
        if not kinds:
            raise ValueError(f"no codecs configured for the offered media {', '.join(wanted)}")
        return kinds

    def _open(self, kinds: Sequence[str]) -> None:
        f = self.factory
        for kind in kinds:
            if kind in self.streams:
                continue
            names = f.audio_codecs if kind == "audio" else f.video_codecs
            assert f.mux is not None
            stream = RtpStream(
                f.reactor,
                f.pacer,
                f.mux,
                kind=kind,
                clock_rate=CODECS[names[0].lower()].clock_rate,
                rtcp_interval=f.rtcp_interval,
                rng=random.Random(f.rng.getrandbits(64)),
                plc=f.plc,
            )
            try:
                stream.open(f.allocator, f.sip_ip)
            except PortRangeExhausted as error:
                self.stop()
                raise MediaPortsExhausted(str(error)) from None
            self.streams[kind] = stream

    def _media_offer(self, kind: str) -> MediaOffer | None:
        stream = self.streams.get(kind)
        if stream is None:
            return None
        f = self.factory
        audio = kind == "audio"
        return MediaOffer(
            port=stream.local_port,
            codecs=tuple(f.audio_codecs if audio else f.video_codecs),
            ptime=f.ptime if audio else None,
            direction=f.direction,
            telephone_event=f.telephone_event and audio,
        )

    def _configure(self, offer: SessionDescription, answer: SessionDescription, role: str) -> None:
        accepted = negotiated(offer, answer, role="offerer" if role == "offerer" else "answerer")
        by_kind = {s.kind: s for s in accepted}
        if not any(kind in by_kind for kind in self.streams):
            raise ValueError("no media stream accepted (no codec in common)")
        f = self.factory
        for kind, stream in list(self.streams.items()):
            chosen = by_kind.get(kind)
            if chosen is None:
                # Rejected (port 0): this stream has no peer (RFC 3264 section 6).
                if stream.negotiated is None:
                    stream.stop()
                    del self.streams[kind]
                continue
            media = f.prepared.get(chosen.codec.lower()) if chosen.direction.sends else None
            stream.configure(chosen, media)
            if self._started and stream.negotiated is not None:
                stream.start()
