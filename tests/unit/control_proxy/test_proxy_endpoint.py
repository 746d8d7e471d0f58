"""HTTPConnectEndpoint against a fake proxy connection (StringTransport) on a Clock.

RFC 9110 section 9.3.6 (CONNECT), RFC 9112 section 3.2.3 (authority-form), RFC 7617 (Basic).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from callmeter.control.proxy import (
    MAX_HEAD_BYTES,
    ConnectHandshake,
    HTTPConnectEndpoint,
    ProxyAuthRequired,
    ProxyError,
    ProxyRefused,
    ProxyTimeout,
    ProxyUnreachable,
    connect_request,
    gateway_endpoint,
)

TARGET = ("gw.example.com", 443)
PROXY = "proxy.corp:3128"
USER, PASSWORD = "svc-worker", "pa55:w0rd£"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class Recorder(Protocol):
    """The caller's protocol: records what reaches it."""

    def __init__(self) -> None:
        self.received = b""
        self.made = 0
        self.lost: Failure | None = None

    def connectionMade(self) -> None:
        self.made += 1

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        self.lost = reason


@implementer(IStreamClientEndpoint)
class FakeProxyEndpoint:
    """Stands for the TCP endpoint to the proxy: connect() waits until accept() or refuse()."""

    def __init__(self) -> None:
        self.pending: Deferred[IProtocol] | None = None
        self.factory: IProtocolFactory | None = None
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.8", 3128))
        self.protocol: IProtocol | None = None
        self.cancelled = False

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        def cancel(d: Deferred[IProtocol]) -> None:
            self.cancelled = True

        self.factory = protocolFactory
        self.pending = Deferred(cancel)
        return self.pending

    def accept(self) -> None:
        assert self.factory is not None and self.pending is not None
        self.protocol = self.factory.buildProtocol(self.transport.getPeer())
        assert self.protocol is not None
        self.protocol.makeConnection(self.transport)
        self.pending.callback(self.protocol)

    def answer(self, data: bytes) -> None:
        assert self.protocol is not None
        self.protocol.dataReceived(data)

    def close(self) -> None:
        assert self.protocol is not None
        self.protocol.connectionLost(Failure(ConnectionRefusedError()))


class Harness:
    def __init__(self, credentials: tuple[str, str] | None = None, timeout: float = 10.0) -> None:
        self.clock = Clock()
        self.proxy = FakeProxyEndpoint()
        self.endpoint = HTTPConnectEndpoint(
            self.clock, self.proxy, *TARGET, credentials, timeout, proxy_name=PROXY
        )
        self.recorders: list[Recorder] = []
        self.results: list[object] = []
        self.deferred = self.endpoint.connect(Factory.forProtocol(self._recorder))
        self.deferred.addBoth(self.results.append)

    def _recorder(self) -> Recorder:
        recorder = Recorder()
        self.recorders.append(recorder)
        return recorder

    def open(self) -> Harness:
        self.proxy.accept()
        return self

    @property
    def sent(self) -> bytes:
        value: bytes = self.proxy.transport.value()
        return value

    def error(self) -> BaseException:
        assert len(self.results) == 1, self.results
        result = self.results[0]
        assert isinstance(result, Failure), result
        assert result.value is not None
        return result.value

    def protocol(self) -> Recorder:
        assert len(self.results) == 1, self.results
        result = self.results[0]
        assert isinstance(result, Recorder), result
        return result


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every log event, formatted, emitted during the test."""
    from twisted.logger import formatEvent

    lines: list[str] = []

    @implementer(ILogObserver)
    def observer(event: LogEvent) -> None:
        lines.append(formatEvent(event) + repr(event))

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


def test_the_endpoint_provides_istreamclientendpoint() -> None:
    assert verifyObject(IStreamClientEndpoint, Harness().endpoint)


# -- the request -------------------------------------------------------------------------------


def test_the_exact_connect_request() -> None:
    harness = Harness().open()
    assert harness.sent == (
        b"CONNECT gw.example.com:443 HTTP/1.1\r\nHost: gw.example.com:443\r\n\r\n"
    )


def test_basic_credentials_rfc7617_example() -> None:
    """RFC 7617 section 2: Aladdin / open sesame."""
    request = connect_request("gw.example.com", 443, ("Aladdin", "open sesame"))
    assert request == (
        b"CONNECT gw.example.com:443 HTTP/1.1\r\n"
        b"Host: gw.example.com:443\r\n"
        b"Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"
    )


def test_basic_credentials_are_utf8_rfc7617_section_2_1() -> None:
    """RFC 7617 section 2.1: test / 123£ with charset UTF-8 is dGVzdDoxMjPCow==."""
    assert b"Basic dGVzdDoxMjPCow==\r\n" in connect_request("h", 1, ("test", "123\u00a3"))


def test_the_endpoint_sends_the_credentials() -> None:
    harness = Harness(credentials=(USER, PASSWORD)).open()
    assert f"Proxy-Authorization: Basic {TOKEN}\r\n".encode() in harness.sent


def test_an_ipv6_target_is_bracketed() -> None:
    assert connect_request("2001:db8::1", 443).startswith(
        b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\n"
    )


@pytest.mark.parametrize("host", ["gw\r\nX-Evil: 1", "gw example", "", "gw/x", "gw\u00e9.com"])
def test_a_host_that_could_inject_headers_is_refused(host: str) -> None:
    with pytest.raises(ValueError):
        connect_request(host, 443)


def test_a_user_name_with_a_colon_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as info:
        connect_request("gw", 443, ("us:er", "secret"))
    assert "secret" not in str(info.value) and "us:er" not in str(info.value)


# -- success -----------------------------------------------------------------------------------


def test_200_hands_the_connection_over_with_the_bytes_after_the_head() -> None:
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03early")
    protocol = harness.protocol()
    assert protocol.made == 1
    assert protocol.received == b"\x16\x03\x03early"
    assert protocol.transport is harness.proxy.transport
    harness.proxy.answer(b" and later")
    assert protocol.received == b"\x16\x03\x03early and later"
    harness.proxy.transport.clear()
    assert protocol.transport is not None
    protocol.transport.write(b"to the gateway")
    assert harness.sent == b"to the gateway"
    assert harness.clock.getDelayedCalls() == []


def test_the_tunnel_closing_reaches_the_protocol() -> None:
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.0 200 OK\r\n\r\n")
    protocol = harness.protocol()
    harness.proxy.close()
    assert protocol.lost is not None


def test_headers_and_lf_line_ends_of_the_2xx_are_accepted() -> None:
    """RFC 9112 section 2.2: a recipient MAY accept a bare LF; Content-Length is ignored."""
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 200 OK\nContent-Length: 10\nVia: 1.1 proxy\n\nrest")
    assert harness.protocol().received == b"rest"


def test_interim_1xx_responses_are_skipped() -> None:
    """RFC 9110 section 15.2: a client must parse 1xx responses before the final one."""
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nx")
    assert harness.protocol().received == b"x"


@given(cut=st.lists(st.integers(1, 60), max_size=40))
def test_any_fragmentation_of_the_answer_gives_the_same_result(cut: list[int]) -> None:
    answer = b"HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n\r\npayload"
    harness = Harness().open()
    position = 0
    for size in [*cut, len(answer)]:
        if position >= len(answer):
            break
        harness.proxy.answer(answer[position : position + size])
        position += size
    assert harness.protocol().received == b"payload"


def test_a_head_of_exactly_16_kib_is_accepted() -> None:
    start, end = b"HTTP/1.1 200 OK\r\nX-Pad: ", b"\r\n\r\n"
    head = start + b"a" * (MAX_HEAD_BYTES - len(start) - len(end)) + end
    assert len(head) == MAX_HEAD_BYTES
    harness = Harness().open()
    harness.proxy.answer(head + b"tls")
    assert harness.protocol().received == b"tls"


# -- failures ----------------------------------------------------------------------------------


def test_407_without_credentials() -> None:
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
    error = harness.error()
    assert isinstance(error, ProxyAuthRequired)
    assert str(error) == "proxy proxy.corp:3128 requires authentication (407)"
    assert error.code == 407
    assert harness.proxy.transport.disconnecting


def test_407_with_credentials_says_they_were_rejected() -> None:
    harness = Harness(credentials=(USER, PASSWORD)).open()
    harness.proxy.answer(
        b'HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"'
        b"\r\n\r\n<html>"
    )
    error = harness.error()
    assert isinstance(error, ProxyAuthRequired)
    assert str(error) == "proxy proxy.corp:3128 rejected the credentials (407)"


def test_401_to_connect_is_an_authentication_failure() -> None:
    """tinyproxy 1.11 answers wrong Basic credentials with 401 Unauthorized (seen in interop)."""
    harness = Harness(credentials=(USER, PASSWORD)).open()
    harness.proxy.answer(b"HTTP/1.0 401 Unauthorized\r\n\r\n")
    error = harness.error()
    assert isinstance(error, ProxyAuthRequired)
    assert str(error) == "proxy proxy.corp:3128 rejected the credentials (401)"


def test_403_is_a_refusal() -> None:
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 403 Forbidden\r\n\r\n")
    error = harness.error()
    assert isinstance(error, ProxyRefused)
    assert (
        str(error) == "proxy proxy.corp:3128 refused CONNECT to gw.example.com:443 (403 Forbidden)"
    )


def test_403_keeps_the_proxys_own_reason() -> None:
    """tinyproxy 1.11 answers a CONNECT to a port it does not allow with "403 Access violation"."""
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 403 Access violation\r\n\r\n")
    error = harness.error()
    assert isinstance(error, ProxyRefused)
    assert str(error).endswith('(403 Forbidden): "Access violation"')
    assert error.reason == "Access violation"


def test_502_is_a_proxy_error_with_code_and_reason() -> None:
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
    error = harness.error()
    assert type(error) is ProxyError
    assert (error.code, error.reason) == (502, "Bad Gateway")
    assert str(error) == (
        "proxy proxy.corp:3128 answered CONNECT to gw.example.com:443 with 502 Bad Gateway"
    )


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.2\r\n\r\n", b"HTTP/2 200\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n"],
)
def test_a_malformed_answer_is_a_proxy_error(answer: bytes) -> None:
    harness = Harness().open()
    harness.proxy.answer(answer)
    error = harness.error()
    assert type(error) is ProxyError
    assert "malformed response to CONNECT" in str(error)
    assert harness.recorders == []


def test_a_head_over_16_kib_fails_without_waiting_for_its_end() -> None:
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 200 OK\r\nX-Pad: ")
    harness.proxy.answer(b"a" * (MAX_HEAD_BYTES - 40))
    assert harness.results == []
    harness.proxy.answer(b"a" * 100)
    error = harness.error()
    assert type(error) is ProxyError
    assert str(error) == "proxy proxy.corp:3128 sent a response head over 16384 bytes"
    assert harness.proxy.transport.disconnecting
    assert harness.recorders == []


def test_a_complete_head_one_byte_over_16_kib_fails() -> None:
    start, end = b"HTTP/1.1 200 OK\r\nX-Pad: ", b"\r\n\r\n"
    head = start + b"a" * (MAX_HEAD_BYTES + 1 - len(start) - len(end)) + end
    harness = Harness().open()
    harness.proxy.answer(head)
    assert "over 16384 bytes" in str(harness.error())


def test_no_answer_within_the_timeout() -> None:
    harness = Harness(timeout=10.0).open()
    harness.clock.advance(9.999)
    assert harness.results == []
    harness.clock.advance(0.001)
    error = harness.error()
    assert isinstance(error, ProxyTimeout)
    assert str(error) == (
        "proxy proxy.corp:3128 did not answer CONNECT to gw.example.com:443 within 10 s"
    )
    assert harness.proxy.transport.disconnecting  # aborted
    harness.proxy.answer(b"HTTP/1.1 200 OK\r\n\r\n")  # too late: ignored
    assert harness.recorders == []


def test_the_timeout_also_covers_the_tcp_connection_to_the_proxy() -> None:
    harness = Harness(timeout=5.0)
    harness.clock.advance(5.0)
    assert isinstance(harness.error(), ProxyTimeout)
    assert harness.proxy.cancelled


def test_connection_lost_before_the_head() -> None:
    harness = Harness().open()
    harness.proxy.answer(b"HTTP/1.1 200 Conn")
    harness.proxy.close()
    error = harness.error()
    assert type(error) is ProxyError
    assert str(error) == (
        "proxy proxy.corp:3128 closed the connection before answering CONNECT to gw.example.com:443"
    )
    assert harness.clock.getDelayedCalls() == []


def test_the_proxy_unreachable() -> None:
    harness = Harness()
    assert harness.proxy.pending is not None
    harness.proxy.pending.errback(Failure(ConnectionRefusedError("Connection refused")))
    error = harness.error()
    assert isinstance(error, ProxyUnreachable)
    assert str(error).startswith("cannot connect to proxy proxy.corp:3128: ")
    assert "Connection refused" in str(error)
    assert harness.clock.getDelayedCalls() == []


def test_cancel_during_the_handshake_aborts_the_connection() -> None:
    """ClientService cancels the attempt in progress when it stops."""
    harness = Harness().open()
    harness.deferred.cancel()
    assert isinstance(harness.error(), CancelledError)
    assert harness.proxy.transport.disconnecting
    assert harness.clock.getDelayedCalls() == []


def test_cancel_while_connecting_to_the_proxy() -> None:
    harness = Harness()
    harness.deferred.cancel()
    assert isinstance(harness.error(), CancelledError)
    assert harness.proxy.cancelled
    assert harness.clock.getDelayedCalls() == []


FAILURES = [
    b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\n\r\n",
    f"HTTP/1.1 502 {USER} {PASSWORD} {TOKEN}\r\n\r\n".encode(),  # a proxy echoing them
    b"garbage\r\n\r\n",
    b"",  # closes
    None,  # times out
]


@pytest.mark.parametrize("answer", FAILURES)
def test_credentials_never_appear_in_errors_or_logs(
    answer: bytes | None, logged: list[str]
) -> None:
    harness = Harness(credentials=(USER, PASSWORD)).open()
    if answer is None:
        harness.clock.advance(10)
    elif answer:
        harness.proxy.answer(answer)
    else:
        harness.proxy.close()
    error = harness.error()
    shown = str(error) + repr(error) + "".join(logged) + repr(harness.endpoint)
    assert PASSWORD not in shown
    assert TOKEN not in shown
    assert USER not in shown


def test_success_is_logged_without_credentials(logged: list[str]) -> None:
    harness = Harness(credentials=(USER, PASSWORD)).open()
    harness.proxy.answer(b"HTTP/1.1 200 OK\r\n\r\n")
    harness.protocol()
    text = "".join(logged)
    assert "gw.example.com:443" in text and PROXY in text
    assert PASSWORD not in text and TOKEN not in text and USER not in text


def test_the_sans_io_handshake_refuses_data_after_the_result() -> None:
    handshake = ConnectHandshake(PROXY, *TARGET)
    assert handshake.receive_data(b"HTTP/1.1 200 OK\r\n\r\n") is not None
    with pytest.raises(RuntimeError):
        handshake.receive_data(b"more")


# -- gateway_endpoint: where TLS goes ----------------------------------------------------------


class RecordingTCP:
    """tcp_endpoint for gateway_endpoint: records where it connects, in memory."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.transport = StringTransport()
        self.protocol: IProtocol | None = None

    def __call__(self, host: str, port: int) -> IStreamClientEndpoint:
        self.calls.append((host, port))
        return self.endpoint()

    def endpoint(self) -> IStreamClientEndpoint:
        outer = self

        @implementer(IStreamClientEndpoint)
        class Connected:
            def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
                protocol = protocolFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
                assert protocol is not None
                outer.protocol = protocol
                protocol.makeConnection(outer.transport)
                return succeed(protocol)

        return Connected()


def _connect(endpoint: IStreamClientEndpoint) -> list[object]:
    results: list[object] = []
    endpoint.connect(Factory.forProtocol(Protocol)).addBoth(results.append)
    return results


def test_tls_runs_inside_the_tunnel() -> None:
    tcp, clock = RecordingTCP(), Clock()
    endpoint = gateway_endpoint(
        clock,
        "gw.example.com",
        443,
        optionsForClientTLS("gw.example.com"),
        "http://alice:secret@proxy.corp:3128",
        (".internal",),
        tcp_endpoint=tcp,
    )
    results = _connect(endpoint)
    assert tcp.calls == [("proxy.corp", 3128)]
    first = tcp.transport.value()
    assert first.startswith(b"CONNECT gw.example.com:443 HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n" in first
    tcp.transport.clear()
    assert tcp.protocol is not None
    tcp.protocol.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\n")
    hello = tcp.transport.value()
    assert hello[:1] == b"\x16"  # a TLS handshake record: the ClientHello, in the tunnel
    assert b"gw.example.com" in hello  # with the gateway's name as SNI
    assert len(results) == 1 and not isinstance(results[0], Failure)


def test_no_proxy_connects_directly_with_tls() -> None:
    tcp = RecordingTCP()
    endpoint = gateway_endpoint(
        Clock(),
        "gw.internal",
        443,
        optionsForClientTLS("gw.internal"),
        "http://proxy.corp:3128",
        (".internal",),
        tcp_endpoint=tcp,
    )
    _connect(endpoint)
    assert tcp.calls == [("gw.internal", 443)]
    assert tcp.transport.value()[:1] == b"\x16"


def test_plain_ws_through_the_proxy_has_no_tls() -> None:
    tcp = RecordingTCP()
    endpoint = gateway_endpoint(
        Clock(), "127.0.0.1", 8080, None, "http://127.0.0.1:3128", (), tcp_endpoint=tcp
    )
    assert isinstance(endpoint, HTTPConnectEndpoint)
    _connect(endpoint)
    assert tcp.calls == [("127.0.0.1", 3128)]
    assert tcp.protocol is not None
    tcp.transport.clear()
    tcp.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n\r\n")
    assert tcp.transport.value() == b""  # the caller speaks first, in clear


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Twisted 22.4's MemoryReactorClock
def test_without_a_proxy_the_default_is_a_hostname_endpoint() -> None:
    from twisted.internet.endpoints import HostnameEndpoint
    from twisted.internet.testing import MemoryReactorClock

    endpoint = gateway_endpoint(MemoryReactorClock(), "gw.example.com", 443, None, None, ())
    assert isinstance(endpoint, HostnameEndpoint)
