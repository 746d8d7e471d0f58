"""A MediaSession for signalling tests: real SDP offer/answer, no RTP."""

from __future__ import annotations

import itertools

from callmeter.sip.sdp import MediaOffer, build_answer, build_offer, negotiated, parse_sdp

_ids = itertools.count(1000)


class SdpOnlyMedia:
    """Offers/answers G.711 with real SDP and records what happened."""

    def __init__(self, port: int = 40000, codecs: tuple[str, ...] = ("PCMU", "PCMA")) -> None:
        self.port = port
        self.codecs = codecs
        self.events: list[str] = []
        self.negotiated_codec: str | None = None
        self._offer = b""

    def local_offer(self) -> bytes:
        self._offer = build_offer(
            next(_ids), "127.0.0.1", MediaOffer(self.port, self.codecs)
        ).to_bytes()
        return self._offer

    def apply_answer(self, answer: bytes) -> None:
        streams = negotiated(parse_sdp(self._offer), parse_sdp(answer), role="offerer")
        if not streams:
            raise ValueError("no stream in the answer")
        self.negotiated_codec = streams[0].codec
        self.events.append("answer")

    def answer_offer(self, offer: bytes) -> bytes:
        parsed = parse_sdp(offer)
        answer = build_answer(parsed, next(_ids), "127.0.0.1", MediaOffer(self.port, self.codecs))
        streams = negotiated(parsed, answer, role="answerer")
        if not streams:
            raise ValueError("no common codec")
        self.negotiated_codec = streams[0].codec
        self.events.append("offer")
        return answer.to_bytes()

    def start(self) -> None:
        self.events.append("start")

    def stop(self) -> None:
        self.events.append("stop")
