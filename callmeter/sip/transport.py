"""SIP transports over UDP, TCP and TLS: RFC 3261 section 18, with RFC 3581 (rport).

:class:`SipTransportLayer` owns the sockets of one SIP user agent process: a UDP socket, TCP and
TLS listeners, and the stream connections, outgoing and incoming, which it reuses for every
message to the same peer.  It turns bytes into parsed messages (through the sans-IO parser and
stream framer) and messages into bytes; the transaction layer above never sees a socket.

- Receiving a request (18.2.1, RFC 3581 section 4): the top Via gets ``received`` when the
  source address differs from its sent-by, and ``rport`` gets the source port when the Via asked
  for it, so that responses find their way back through a NAT.
- Sending a response (18.2.2): over the stream the request came on while it is open; over UDP
  to the ``received`` address (else the sent-by host) and the ``rport`` port (else the sent-by
  port, else 5060).
- Bad input never kills a transport: a malformed request that can be answered gets a 400 (or
  the parser's 505/513) naming the problem, anything else is dropped with a log line, and a
  stream that cannot be framed any more (no Content-Length, a flood of bytes past the buffer
  limit) is disconnected, not buffered.

Left out, deliberately: DNS SRV/NAPTR (RFC 3263; targets are host:port with A records), the
switch from UDP to TCP for requests over 1300 bytes (18.1.1), and SCTP/WebSocket transports.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IAddress, IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol, connectionDone
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from callmeter.sip.framing import DEFAULT_MAX_BUFFER, KeepAlive, StreamFramer, is_keepalive
from callmeter.sip.headers import Headers
from callmeter.sip.message import (
    DEFAULT_LIMITS,
    ParseLimits,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    make_error_response,
    parse_message,
)

__all__ = [
    "TRANSPORTS",
    "Origin",
    "SipTransportLayer",
    "Target",
    "TlsSettings",
]

TRANSPORTS = ("udp", "tcp", "tls")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
ErrorCallback = Callable[[str], None]
_PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Target:
    """Where a request goes: a transport and a host (name or address) and port."""

    transport: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ValueError(f"unknown SIP transport {self.transport!r}")

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from: the transport, the source address, and its connection."""

    transport: str
    host: str
    port: int
    connection: SipStream | None = None

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


@dataclass(frozen=True)
class TlsSettings:
    """TLS for SIP: verification on by default (service-identity), optional client and server
    certificates.  ``ca_file`` may hold several PEM certificates; without one the system store
    is used.  ``verify=False`` exists for lab peers with throw-away certificates."""

    ca_file: str | None = None
    verify: bool = True
    client_cert: str | None = None
    server_cert: str | None = None
    #: The listener's certificate and key as PEM bytes (a self-signed one made at start).
    server_pem: bytes | None = None

    def client_options(self, host: str) -> Any:
        """The TLS client options for a connection to ``host`` (name or IP: its SAN is checked)."""
        client_cert = (
            PrivateCertificate.loadPEM(_read(self.client_cert)) if self.client_cert else None
        )
        if not self.verify:
            if client_cert is None:
                return CertificateOptions(verify=False)
            return CertificateOptions(
                privateKey=client_cert.privateKey.original,
                certificate=client_cert.original,
                verify=False,
            )
        if self.ca_file:
            certificates = [
                Certificate.loadPEM(block) for block in _PEM_CERT_RE.findall(_read(self.ca_file))
            ]
            if not certificates:
                raise ValueError(f"{self.ca_file}: no PEM certificate found")
            trust = trustRootFromCertificates(certificates)
        else:
            trust = platformTrust()
        return optionsForClientTLS(host, trustRoot=trust, clientCertificate=client_cert)

    def server_options(self) -> Any:
        if self.server_pem is not None:
            return PrivateCertificate.loadPEM(self.server_pem).options()
        if not self.server_cert:
            raise ValueError("a TLS listener needs a server certificate (PEM with its key)")
        return PrivateCertificate.loadPEM(_read(self.server_cert)).options()


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


class SipUdp(DatagramProtocol):
    """The UDP socket: every datagram is one message (18.3)."""

    def __init__(self, layer: SipTransportLayer) -> None:
        self._layer = layer

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if is_keepalive(datagram):
            return  # RFC 5626 CRLF keep-alives over UDP carry no message
        self._layer.received(datagram, Origin("udp", addr[0], addr[1]))


class SipStream(Protocol):
    """One TCP or TLS connection, framed by Content-Length (18.3)."""

    def __init__(self, layer: SipTransportLayer, transport_name: str) -> None:
        self._layer = layer
        self.transport_name = transport_name
        self.framer = StreamFramer(max_buffer=layer.max_stream_buffer, limits=layer.limits)
        self.peer: tuple[str, int] = ("", 0)
        self.closed = False
        self._lost: list[defer.Deferred[None]] = []

    def connectionMade(self) -> None:
        address = self.transport.getPeer()  # type: ignore[union-attr]
        self.peer = (getattr(address, "host", ""), getattr(address, "port", 0))
        self._layer.stream_opened(self)

    def dataReceived(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            frames = self.framer.feed(data)
        except SipParseError as error:
            self._layer.log.warn(
                "closing {transport} connection from {host}:{port}: {reason}",
                transport=self.transport_name,
                host=self.peer[0],
                port=self.peer[1],
                reason=error.reason,
            )
            self.close()
            return
        origin = Origin(self.transport_name, self.peer[0], self.peer[1], self)
        for frame in frames:
            if frame is KeepAlive.PING:
                self.write(KeepAlive.PONG.value)
            elif isinstance(frame, bytes):
                self._layer.received(frame, origin)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        self._layer.stream_closed(self)
        lost, self._lost = self._lost, []
        for waiter in lost:
            waiter.callback(None)

    def when_lost(self) -> defer.Deferred[None]:
        """Fires once the connection is really gone (after :meth:`close`)."""
        waiter: defer.Deferred[None] = defer.Deferred()
        if self.transport is None or self not in self._layer.streams():
            waiter.callback(None)
        else:
            self._lost.append(waiter)
        return waiter


class _StreamFactory(Factory):
    def __init__(self, layer: SipTransportLayer, transport_name: str) -> None:
        self._layer = layer
        self._transport_name = transport_name

    def buildProtocol(self, addr: IAddress | None) -> SipStream:
        return SipStream(self._layer, self._transport_name)


class SipTransportLayer:
    """Sockets for SIP: listen on UDP/TCP/TLS, send requests, route responses.

    ``on_message(message, origin)`` receives every well-formed message.  ``reactor`` provides
    IReactorUDP, IReactorTCP, IReactorSSL and IReactorTime (a ``MemoryReactor`` in unit tests).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        bind_ip: str,
        on_message: Callable[[SipMessage, Origin], None],
        *,
        tls: TlsSettings | None = None,
        limits: ParseLimits = DEFAULT_LIMITS,
        max_stream_buffer: int = DEFAULT_MAX_BUFFER,
        connect_timeout: float = 10.0,
    ) -> None:
        self.reactor = reactor
        self.bind_ip = bind_ip
        self.on_message = on_message
        self.tls = tls or TlsSettings()
        self.limits = limits
        self.max_stream_buffer = max_stream_buffer
        self.connect_timeout = connect_timeout
        self.ports: dict[str, int] = {}
        self._listening: list[IListeningPort] = []
        self._udp: SipUdp | None = None
        self._streams: dict[tuple[str, str, int], SipStream] = {}
        self._all_streams: set[SipStream] = set()
        self._connecting: dict[tuple[str, str, int], list[tuple[bytes, ErrorCallback | None]]] = {}
        self.malformed = 0

    # -- listening ----------------------------------------------------------------------

    def listen(self, transport: str, port: int) -> int:
        """Listen for ``transport`` on SIP_IP:``port`` (0 = any); return the port bound."""
        if transport == "udp":
            self._udp = SipUdp(self)
            listening = self.reactor.listenUDP(port, self._udp, interface=self.bind_ip)
        elif transport == "tcp":
            listening = self.reactor.listenTCP(
                port, _StreamFactory(self, "tcp"), interface=self.bind_ip
            )
        elif transport == "tls":
            listening = self.reactor.listenSSL(
                port,
                _StreamFactory(self, "tls"),
                self.tls.server_options(),
                interface=self.bind_ip,
            )
        else:
            raise ValueError(f"unknown SIP transport {transport!r}")
        self._listening.append(listening)
        bound = int(getattr(listening.getHost(), "port", port))
        self.ports[transport] = bound
        return bound

    def close(self) -> defer.Deferred[Any]:
        """Stop listening and close every connection."""
        waits: list[defer.Deferred[Any]] = []
        for stream in self.streams():
            waits.append(stream.when_lost())
            stream.close()
        waits += [defer.maybeDeferred(port.stopListening) for port in self._listening]
        self._listening.clear()
        return defer.gatherResults(waits)

    # -- receiving ----------------------------------------------------------------------

    def received(self, data: bytes, origin: Origin) -> None:
        """One framed message from ``origin``: parse it, stamp its Via, deliver it."""
        try:
            message = parse_message(data, self.limits)
        except SipParseError as error:
            self.malformed += 1
            self.log.warn(
                "malformed SIP from {transport}:{host}:{port}: {reason}",
                transport=origin.transport,
                host=origin.host,
                port=origin.port,
                reason=error.reason,
            )
            if error.can_respond:
                try:
                    answer = make_error_response(error)
                    _stamp_via(answer.headers, origin)
                    self.reply(answer, origin)
                except (SipParseError, ValueError):
                    pass  # the partial Via could not route an answer: dropped, as logged
            return
        if isinstance(message, SipRequest):
            try:
                _stamp_via(message.headers, origin)
            except SipParseError as error:
                self.malformed += 1
                self.log.warn(
                    "unusable Via from {host}: {reason}", host=origin.host, reason=error.reason
                )
                return
        try:
            self.on_message(message, origin)
        except Exception:
            # A bug above must not take the transport down with it.
            self.log.failure("error handling a SIP message from {host}", host=origin.host)

    # -- sending ------------------------------------------------------------------------

    def send(
        self, message: SipMessage, target: Target, on_error: ErrorCallback | None = None
    ) -> None:
        """Send ``message`` to ``target``, reusing an open stream connection when there is one."""
        data = message.to_bytes()
        if target.transport == "udp":
            self._send_datagram(data, target.host, target.port, on_error)
            return
        key = (target.transport, target.host, target.port)
        stream = self._streams.get(key)
        if stream is not None and not stream.closed:
            stream.write(data)
            return
        waiting = self._connecting.get(key)
        if waiting is not None:
            waiting.append((data, on_error))
            return
        self._connecting[key] = [(data, on_error)]
        self._connect(key)

    def reply(
        self, response: SipResponse, origin: Origin, on_error: ErrorCallback | None = None
    ) -> None:
        """Send ``response`` back per RFC 3261 18.2.2 and RFC 3581 section 4."""
        if origin.connection is not None and not origin.connection.closed:
            origin.connection.write(response.to_bytes())
            return
        via = response.headers.top_via()
        host = via.received or via.host
        port = via.rport or via.port or DEFAULT_PORTS.get(origin.transport, 5060)
        if origin.transport == "udp":
            port = via.rport or (origin.port if via.has_rport else port)
        self.send(response, Target(origin.transport, host, port), on_error)

    def _send_datagram(
        self, data: bytes, host: str, port: int, on_error: ErrorCallback | None
    ) -> None:
        if self._udp is None or self._udp.transport is None:
            _report(on_error, "no UDP socket (listen('udp', ...) first)")
            return
        if len(data) > self.limits.max_message_size:
            _report(on_error, f"message of {len(data)} bytes is too large for UDP")
            return
        if _is_ip(host):
            self._write_datagram(data, host, port, on_error)
            return
        resolving = self.reactor.resolve(host)
        resolving.addCallbacks(
            lambda address: self._write_datagram(data, address, port, on_error),
            lambda failure: _report(on_error, f"cannot resolve {host}: {failure.value}"),
        )

    def _write_datagram(
        self, data: bytes, host: str, port: int, on_error: ErrorCallback | None
    ) -> None:
        assert self._udp is not None and self._udp.transport is not None
        try:
            self._udp.transport.write(data, (host, port))
        except OSError as error:
            _report(on_error, f"UDP send to {host}:{port} failed: {error.strerror or error}")

    def _connect(self, key: tuple[str, str, int]) -> None:
        transport, host, port = key
        if _is_ip(host):
            kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
            endpoint: Any = kind(self.reactor, host, port, timeout=self.connect_timeout)
        else:
            endpoint = HostnameEndpoint(self.reactor, host, port, timeout=self.connect_timeout)
        if transport == "tls":
            endpoint = wrapClientTLS(self.tls.client_options(host), endpoint)
        connecting = endpoint.connect(_StreamFactory(self, transport))

        def connected(stream: SipStream) -> None:
            self._streams[key] = stream
            for data, _ in self._connecting.pop(key, []):
                stream.write(data)

        def failed(failure: Failure) -> None:
            reason = f"{transport} connection to {host}:{port} failed: " + (
                getattr(failure.value, "strerror", None) or failure.getErrorMessage()
            )
            self.log.warn("{reason}", reason=reason)
            for _, on_error in self._connecting.pop(key, []):
                _report(on_error, reason)

        connecting.addCallbacks(connected, failed)

    # -- connection bookkeeping ---------------------------------------------------------

    def stream_opened(self, stream: SipStream) -> None:
        """Remember a connection so later messages to that peer reuse it."""
        self._all_streams.add(stream)
        self._streams.setdefault((stream.transport_name, *stream.peer), stream)

    def stream_closed(self, stream: SipStream) -> None:
        self._all_streams.discard(stream)
        key = (stream.transport_name, *stream.peer)
        if self._streams.get(key) is stream:
            del self._streams[key]
        for other_key, other in list(self._streams.items()):
            if other is stream:
                del self._streams[other_key]

    def streams(self) -> list[SipStream]:
        """Every open connection, once each."""
        return list(self._all_streams)

    @property
    def open_streams(self) -> int:
        return len(self.streams())


def _stamp_via(headers: Headers, origin: Origin) -> None:
    """RFC 3261 18.2.1 ``received`` and RFC 3581 section 4 ``rport`` on the top Via."""
    vias = headers.get_all("Via")
    top = headers.top_via()
    stamped = top
    if top.has_rport:
        stamped = stamped.with_param("received", origin.host).with_param("rport", str(origin.port))
    elif top.host != origin.host:
        stamped = stamped.with_param("received", origin.host)
    if stamped is not top:
        headers.set("Via", ", ".join([str(stamped), *vias[1:]]))


@functools.lru_cache(maxsize=4096)  # called for every message sent
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _report(on_error: ErrorCallback | None, reason: str) -> None:
    if on_error is not None:
        on_error(reason)
    else:
        SipTransportLayer.log.warn("{reason}", reason=reason)
