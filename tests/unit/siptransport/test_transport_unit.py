"""SipTransportLayer without sockets: Via stamping, 400s, framing limits, response routing."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport

from callmeter.sip.message import SipMessage, SipRequest, make_response
from callmeter.sip.transport import Origin, SipStream, SipTransportLayer, SipUdp, Target

INVITE = (
    b"OPTIONS sip:bob@192.0.2.4 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKabc;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@example.com>;tag=1\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"Call-ID: c1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class FakeUdpTransport:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


def make_layer() -> tuple[SipTransportLayer, list[tuple[SipMessage, Origin]], FakeUdpTransport]:
    received: list[tuple[SipMessage, Origin]] = []
    layer = SipTransportLayer(
        MemoryReactorClock(), "127.0.0.1", lambda m, o: received.append((m, o))
    )
    udp = SipUdp(layer)
    fake = FakeUdpTransport()
    udp.transport = fake  # type: ignore[assignment]
    layer._udp = udp
    return layer, received, fake


def test_received_request_gets_received_and_rport_stamped() -> None:
    layer, received, _ = make_layer()
    layer._udp.datagramReceived(INVITE, ("203.0.113.9", 40000))  # type: ignore[union-attr]
    ((message, origin),) = received
    assert isinstance(message, SipRequest)
    via = message.headers.top_via()
    assert via.received == "203.0.113.9" and via.rport == 40000
    assert origin == Origin("udp", "203.0.113.9", 40000)


def test_received_without_rport_only_when_the_address_differs() -> None:
    layer, received, _ = make_layer()
    plain = INVITE.replace(b";rport", b"")
    layer.received(plain, Origin("udp", "10.0.0.1", 5062))
    layer.received(plain, Origin("udp", "10.0.0.9", 5062))
    first, second = (m.headers.top_via() for m, _ in received)
    assert first.received is None and not first.has_rport
    assert second.received == "10.0.0.9" and not second.has_rport


def test_response_goes_to_received_and_rport_over_udp() -> None:
    layer, received, fake = make_layer()
    layer.received(INVITE, Origin("udp", "203.0.113.9", 40000))
    request, origin = received[0]
    assert isinstance(request, SipRequest)
    layer.reply(make_response(request, 200, to_tag="x"), origin)
    ((data, addr),) = fake.written
    assert addr == ("203.0.113.9", 40000) and data.startswith(b"SIP/2.0 200 OK\r\n")
    assert b";received=203.0.113.9" in data and b";rport=40000" in data


def test_response_without_rport_goes_to_the_via_port() -> None:
    layer, received, fake = make_layer()
    layer.received(INVITE.replace(b";rport", b""), Origin("udp", "203.0.113.9", 40000))
    request, origin = received[0]
    assert isinstance(request, SipRequest)
    layer.reply(make_response(request, 486), origin)
    assert fake.written[0][1] == ("203.0.113.9", 5062)


def test_malformed_request_gets_400_naming_the_problem_and_the_layer_survives() -> None:
    layer, received, fake = make_layer()
    broken = INVITE.replace(b"CSeq: 1 OPTIONS\r\n", b"CSeq: one OPTIONS\r\n")
    layer.received(broken, Origin("udp", "203.0.113.9", 40000))
    assert received == [] and layer.malformed == 1
    ((data, addr),) = fake.written
    assert data.startswith(b"SIP/2.0 400 ") and b"CSeq" in data.split(b"\r\n")[0]
    assert addr == ("203.0.113.9", 40000)
    layer.received(INVITE, Origin("udp", "203.0.113.9", 40000))
    assert len(received) == 1


def test_garbage_is_dropped_without_answer() -> None:
    layer, received, fake = make_layer()
    for junk in (b"\x00\xff\xfe", b"HELLO\r\n\r\n", b"SIP/2.0 999\r\n\r\n", b"x" * 70000):
        layer.received(junk, Origin("udp", "203.0.113.9", 1))
    assert received == [] and fake.written == [] and layer.malformed == 4


def test_a_crashing_handler_does_not_kill_the_transport() -> None:
    calls: list[int] = []

    def explode(message: SipMessage, origin: Origin) -> None:
        calls.append(1)
        raise RuntimeError("bug")

    layer = SipTransportLayer(MemoryReactorClock(), "127.0.0.1", explode)
    layer.received(INVITE, Origin("udp", "198.51.100.1", 5060))
    layer.received(INVITE, Origin("udp", "198.51.100.1", 5060))
    assert calls == [1, 1]


def stream(layer: SipTransportLayer) -> tuple[SipStream, StringTransport]:
    protocol = SipStream(layer, "tcp")
    transport = StringTransport(peerAddress=_Address("198.51.100.7", 33000))
    protocol.makeConnection(transport)
    return protocol, transport


class _Address:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


def test_stream_frames_messages_split_anywhere_and_answers_pings() -> None:
    layer, received, _ = make_layer()
    protocol, transport = stream(layer)
    data = INVITE.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP") * 2 + b"\r\n\r\n"
    for index in range(0, len(data), 7):
        protocol.dataReceived(data[index : index + 7])
    assert len(received) == 2
    assert all(origin.connection is protocol for _, origin in received)
    assert transport.value() == b"\r\n"  # the pong
    assert layer.open_streams == 1


def test_stream_replies_on_the_same_connection() -> None:
    layer, received, fake = make_layer()
    protocol, transport = stream(layer)
    protocol.dataReceived(INVITE.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    request, origin = received[0]
    assert isinstance(request, SipRequest)
    layer.reply(make_response(request, 200), origin)
    assert transport.value().startswith(b"SIP/2.0 200 OK")
    assert fake.written == []


def test_stream_flood_is_disconnected_not_buffered() -> None:
    layer, received, _ = make_layer()
    protocol, transport = stream(layer)
    protocol.dataReceived(b"INVITE sip:x SIP/2.0\r\nX: " + b"a" * 200_000)
    assert transport.disconnecting and protocol.closed
    protocol.dataReceived(INVITE)  # nothing more is read from a closed stream
    assert received == []


def test_stream_without_content_length_is_disconnected() -> None:
    layer, _, _ = make_layer()
    protocol, transport = stream(layer)
    protocol.dataReceived(INVITE.replace(b"Content-Length: 0\r\n", b""))
    assert transport.disconnecting


def test_send_over_tcp_connects_once_and_queues() -> None:
    reactor = MemoryReactorClock()
    layer = SipTransportLayer(reactor, "127.0.0.1", lambda m, o: None)
    request = _request()
    errors: list[str] = []
    target = Target("tcp", "127.0.0.1", 5070)
    layer.send(request, target, errors.append)
    layer.send(request, target, errors.append)
    assert len(reactor.tcpClients) == 1
    host, port, *_ = reactor.tcpClients[0]
    assert (host, port) == ("127.0.0.1", 5070)
    assert errors == []


def test_tcp_connect_failure_reports_to_every_queued_sender() -> None:
    reactor = MemoryReactorClock()
    layer = SipTransportLayer(reactor, "127.0.0.1", lambda m, o: None)
    errors: list[str] = []
    target = Target("tcp", "127.0.0.1", 5071)
    layer.send(_request(), target, errors.append)
    layer.send(_request(), target, errors.append)
    _, _, factory, *_ = reactor.tcpClients[0]
    from twisted.internet.error import ConnectionRefusedError
    from twisted.python.failure import Failure

    factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
    assert len(errors) == 2 and all("tcp connection to 127.0.0.1:5071 failed" in e for e in errors)


def _request() -> SipRequest:
    from callmeter.sip.message import parse_message

    message = parse_message(INVITE)
    assert isinstance(message, SipRequest)
    return message
