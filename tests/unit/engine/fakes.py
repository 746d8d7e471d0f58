"""Recording dummies for a :class:`TestRun` built alone on a Clock (no sockets).

:class:`FakeSipStack` stands where the run's SipStack would: the real Registration and
OutgoingCall run on top of it, and it records what they ask of it (``add_endpoint``,
``send_request``, ``send_ack``, ``contact``, ``shutdown``) as ``(time, what, detail)`` events.
A request is answered by ``answer(request)``: a list of ``(delay, status)`` responses, built
with :func:`make_response` and handed to ``on_response`` on the clock; ``None`` never answers;
:data:`TRANSPORT_ERROR` calls ``on_failure`` as a socket error would.
:class:`FakeMediaFactory` makes :class:`FakeMedia` objects that record their offer/answer and
start/stop, and report one stream of fixed figures once started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.task import Clock

from callmeter.config import Config
from callmeter.engine.metrics import StreamResult
from callmeter.engine.run import SipBinding
from callmeter.plan import Group
from callmeter.sip.message import SipRequest, SipResponse, make_response
from callmeter.sip.stack import SipStack
from callmeter.sip.transaction import Failure
from callmeter.sip.transport import Origin, Target

__all__ = [
    "TRANSPORT_ERROR",
    "Answer",
    "Event",
    "FakeMedia",
    "FakeMediaFactory",
    "FakeSipFactory",
    "FakeSipStack",
    "FakeTransport",
    "answer_all",
]

Event = tuple[float, str, str]
Answer = list[tuple[float, int]] | None | str
TRANSPORT_ERROR = "transport error"

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def answer_all(request: SipRequest) -> Answer:
    """A registrar and callee that say yes: REGISTER 200, INVITE 180 then 200, BYE 200."""
    if request.method == "INVITE":
        return [(0.05, 180), (0.1, 200)]
    return [(0.01, 200)]


class FakeTransport:
    """The run's sockets: records that they were closed."""

    def __init__(self, events: list[Event], clock: Clock) -> None:
        self.events = events
        self.clock = clock

    def close(self) -> defer.Deferred[Any]:
        self.events.append((self.clock.seconds(), "close", ""))
        return defer.succeed(None)


class FakeSipStack:
    """The part of SipStack that the run, Registration and OutgoingCall use, recording."""

    def __init__(
        self,
        clock: Clock,
        events: list[Event],
        answer: Callable[[SipRequest], Answer] = answer_all,
    ) -> None:
        self.clock = clock
        self.events = events
        self.answer = answer
        self.endpoints: dict[str, Any] = {}
        self.dialogs: dict[tuple[str, str], Any] = {}
        self.requests: list[tuple[float, SipRequest, Target]] = []

    def _record(self, what: str, detail: str) -> None:
        self.events.append((self.clock.seconds(), what, detail))

    def contact(self, user: str, transport: str) -> str:
        return f"<sip:{user}@127.0.0.1:5060;transport={transport}>"

    def add_endpoint(self, user: str, on_invite: Any) -> None:
        self._record("add_endpoint", user)
        self.endpoints[user] = on_invite

    def remove_endpoint(self, user: str) -> None:
        self.endpoints.pop(user, None)

    def add_dialog(self, call_id: str, local_tag: str, user: Any) -> None:
        self.dialogs[call_id, local_tag] = user

    def remove_dialog(self, call_id: str, local_tag: str) -> None:
        self.dialogs.pop((call_id, local_tag), None)

    def on_cancel(self, transaction: Any, cancelled: Callable[[], None]) -> None:
        pass

    def forget_cancel(self, transaction: Any) -> None:
        pass

    def send_request(
        self,
        request: SipRequest,
        target: Target,
        on_response: Callable[[SipResponse], None],
        on_failure: Callable[[Failure], None],
        *,
        via: str | None = None,
    ) -> None:
        request.headers.prepend("Via", via or "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfake")
        self.requests.append((self.clock.seconds(), request, target))
        self._record(
            "send_request",
            f"{request.method} {request.uri} -> {target.transport}:{target.host}:{target.port}",
        )
        answer = self.answer(request)
        if answer is None:
            return
        if answer == TRANSPORT_ERROR:
            self.clock.callLater(0, on_failure, Failure.TRANSPORT_ERROR)
            return
        assert isinstance(answer, list)
        for delay, status in answer:
            self.clock.callLater(delay, on_response, self._response(request, status))

    def _response(self, request: SipRequest, status: int) -> SipResponse:
        response = make_response(request, status, to_tag="fake-tag")
        if request.method == "REGISTER" and status == 200:
            for contact in request.headers.get_all("Contact"):
                response.headers.add("Contact", contact)
        if request.method == "INVITE" and status == 200:
            response.headers.add("Contact", "<sip:callee@127.0.0.1:5070>")
            response.headers.add("Content-Type", "application/sdp")
            response.body = SDP
        return response

    def send_ack(self, ack: SipRequest, target: Target) -> None:
        self._record("send_ack", f"ACK {ack.uri}")

    def on_message(self, message: Any, origin: Origin) -> None:
        self._record("on_message", str(message))

    def shutdown(self) -> None:
        self._record("shutdown", "")


class FakeSipFactory:
    """A SipFactory binding nothing: records its arguments, returns the fake stack."""

    def __init__(self, stack: FakeSipStack, port: int = 5060) -> None:
        self.stack = stack
        self.port = port
        self.calls: list[tuple[set[str], bool]] = []

    def __call__(
        self,
        reactor: Any,
        config: Config,
        transports: set[str],
        front: bool,
        on_message: Callable[[Any, Origin], None],
    ) -> SipBinding:
        self.calls.append((transports, front))
        transport = FakeTransport(self.stack.events, self.stack.clock)
        return SipBinding(transport, cast(SipStack, self.stack), self.port)


class FakeMedia:
    """A call's media: records offer/answer/start/stop; one stream of 50 packets once up."""

    def __init__(self, events: list[Event], clock: Clock, group: str) -> None:
        self.events = events
        self.clock = clock
        self.group = group
        self.started = False

    def _record(self, what: str) -> None:
        self.events.append((self.clock.seconds(), what, self.group))

    def local_offer(self) -> bytes:
        self._record("media.offer")
        return SDP

    def apply_answer(self, answer: bytes) -> None:
        self._record("media.apply_answer")

    def answer_offer(self, offer: bytes) -> bytes:
        self._record("media.answer_offer")
        return SDP

    def start(self) -> None:
        self.started = True
        self._record("media.start")

    def stop(self) -> None:
        self._record("media.stop")

    def results(self) -> list[StreamResult]:
        if not self.started:
            return []
        return [one_second_of_audio()]


def one_second_of_audio() -> StreamResult:
    """What a perfect stream of 50 G.711 packets reports: the figures fakes give a call."""
    return StreamResult(
        sent_packets=50,
        sent_bytes=8600,
        received_packets=50,
        received_bytes=8600,
        lost_packets=0,
        expected_packets=50,
        jitter_ms=0.2,
        rtt_ms=0.1,
        mos=4.41,
    )


class FakeMediaFactory:
    """A MediaFactory: records which group each media was made for."""

    def __init__(self, events: list[Event], clock: Clock) -> None:
        self.events = events
        self.clock = clock
        self.made: list[FakeMedia] = []

    def __call__(self, group: Group) -> FakeMedia:
        media = FakeMedia(self.events, self.clock, group.name)
        self.made.append(media)
        return media
