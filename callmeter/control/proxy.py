"""An HTTP CONNECT tunnel as a Twisted client endpoint, and the gateway endpoint built on it.

Why not Autobahn's own ``proxy=`` option (read in Autobahn 22.7 and 26.10): it sends no
Proxy-Authorization, takes no TLS options (so no TLS_CA_FILE) for the TLS it starts in the tunnel,
and on a 403/407 aborts the connection with the status only in a debug log: no error to report.

:class:`HTTPConnectEndpoint` implements RFC 9110 section 9.3.6 (CONNECT): it connects to the
proxy through another endpoint, sends ``CONNECT host:port HTTP/1.1`` (the authority-form of
RFC 9112 section 3.2.3) with ``Host`` and, given credentials, ``Proxy-Authorization: Basic``
(RFC 9110 section 11.7.2, the Basic scheme of RFC 7617 with its UTF-8 charset), reads the
response head (RFC 9112 sections 2 and 4: at most 16 KiB, within a timeout on the injected
reactor, interim 1xx heads skipped as RFC 9110 section 15.2 asks) and on a 2xx hands the raw
connection to the caller's protocol, bytes that followed the head included.  Content-Length and
Transfer-Encoding of the 2xx are ignored, as section 9.3.6 requires.  Anything else fails the
connection attempt with a :class:`ProxyError` whose message names the proxy and target, never
the credentials.

The handshake itself is the sans-IO :class:`ConnectHandshake`; the endpoint is a thin shell.

:func:`gateway_endpoint` shows where TLS goes: *inside* the tunnel, so the proxy sees only
``CONNECT gateway:443`` and the certificate and host name are checked end to end::

    wrapClientTLS(optionsForClientTLS(host, trustRoot),
                  HTTPConnectEndpoint(reactor, HostnameEndpoint(proxy), host, port, ...))
"""

from __future__ import annotations

import base64
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import NoProtocol
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from callmeter.control.noproxy import proxy_for

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_HEAD_BYTES",
    "ConnectHandshake",
    "HTTPConnectEndpoint",
    "ProxyAuthRequired",
    "ProxyError",
    "ProxyRefused",
    "ProxyTimeout",
    "ProxyUnreachable",
    "connect_request",
    "gateway_endpoint",
]

MAX_HEAD_BYTES = 16 * 1024
"""The longest response head accepted from a proxy, status line and headers together."""

DEFAULT_TIMEOUT = 30.0
"""Seconds from connect() to the proxy's final answer, when the caller gives no other figure."""

_log = Logger()

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([\x09\x20-\x7e\x80-\xff]*))?")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


# -- errors ----------------------------------------------------------------------------------


class ProxyError(Exception):
    """The tunnel through the proxy could not be opened; ``str()`` is the one-line reason.

    ``code`` and ``reason`` are the proxy's status code and (sanitised) reason phrase when it
    answered, else None and "".
    """

    def __init__(
        self, message: str, *, proxy: str, target: str, code: int | None = None, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.target = target
        self.code = code
        self.reason = reason


class ProxyAuthRequired(ProxyError):
    """407 (or 401): the proxy wants credentials, or did not accept the ones sent."""


class ProxyRefused(ProxyError):
    """403: the proxy does not allow a tunnel to this target (port or host policy)."""


class ProxyTimeout(ProxyError):
    """No complete answer from the proxy within the timeout."""


class ProxyUnreachable(ProxyError):
    """The TCP connection to the proxy itself failed."""


# -- the sans-IO handshake ---------------------------------------------------------------------


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(host: str, port: int, credentials: tuple[str, str] | None = None) -> bytes:
    """The CONNECT request for ``host:port`` (RFC 9110 section 9.3.6, RFC 9112 section 3.2.3).

    Credentials become ``Proxy-Authorization: Basic base64(user ":" password)``, UTF-8 encoded
    (RFC 7617 sections 2 and 2.1).  Raises ValueError for a host that could inject header lines
    or a user id containing a colon (RFC 7617 section 2); the message never shows a credential.
    """
    if not host or not host.isascii() or not host.isprintable() or any(c in host for c in " /@"):
        raise ValueError(f"not an ASCII host name or address (IDNA-encode it): {host!r}")
    if not 0 < port < 65536:
        raise ValueError(f"not a port number: {port!r}")
    authority = _authority(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if credentials is not None:
        user, password = credentials
        if ":" in user:
            raise ValueError("a proxy user name cannot contain ':' (RFC 7617 section 2)")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


class HandshakeState(enum.Enum):
    """Where a :class:`ConnectHandshake` is."""

    WAITING = "waiting for the proxy's answer"
    ESTABLISHED = "tunnel established"
    FAILED = "failed"


@dataclass(frozen=True)
class Established:
    """The proxy answered 2xx: the tunnel is open; ``data`` arrived after the head."""

    code: int
    reason: str
    data: bytes


class ConnectHandshake:
    """The client side of one CONNECT exchange, fed the proxy's bytes (sans-IO).

    ``request()`` gives the bytes to send; ``receive_data()`` returns None while the head is
    incomplete, an :class:`Established` on a 2xx, and raises a :class:`ProxyError` for anything
    else.  ``connection_lost()`` gives the error for a connection closed before the answer.
    """

    def __init__(
        self,
        proxy: str,
        target_host: str,
        target_port: int,
        credentials: tuple[str, str] | None = None,
        max_head: int = MAX_HEAD_BYTES,
    ) -> None:
        self.proxy = proxy
        self.target = _authority(target_host, target_port)
        self._request = connect_request(target_host, target_port, credentials)
        self._sent_credentials = credentials is not None
        self._secrets = _secrets(credentials)
        self._max_head = max_head
        self._buffer = b""
        self._head_bytes = 0  # bytes of interim (1xx) heads already consumed
        self.state = HandshakeState.WAITING

    def request(self) -> bytes:
        return self._request

    def receive_data(self, data: bytes) -> Established | None:
        if self.state is not HandshakeState.WAITING:
            raise RuntimeError(f"receive_data() when {self.state.value}")
        self._buffer += data
        while True:
            end = _HEAD_END.search(self._buffer)
            limit = self._max_head - self._head_bytes
            if end is None or end.end() > limit:
                if len(self._buffer) > limit or (end is not None and end.end() > limit):
                    raise self._fail(
                        ProxyError,
                        f"proxy {self.proxy} sent a response head over {self._max_head} bytes",
                    )
                return None
            head, self._buffer = self._buffer[: end.start()], self._buffer[end.end() :]
            self._head_bytes += end.end()
            code, reason = self._status(head)
            if 100 <= code < 200 and code != 101:
                continue  # RFC 9110 section 15.2: interim responses precede the final one
            if 200 <= code < 300:
                self.state = HandshakeState.ESTABLISHED
                rest, self._buffer = self._buffer, b""
                return Established(code, reason, rest)
            raise self._refusal(code, reason)

    def connection_lost(self) -> ProxyError:
        return self._fail(
            ProxyError,
            f"proxy {self.proxy} closed the connection before answering CONNECT to {self.target}",
        )

    def timed_out(self, timeout: float) -> ProxyTimeout:
        error = self._fail(
            ProxyTimeout,
            f"proxy {self.proxy} did not answer CONNECT to {self.target} within {timeout:g} s",
        )
        assert isinstance(error, ProxyTimeout)
        return error

    def _status(self, head: bytes) -> tuple[int, str]:
        line = head.split(b"\n", 1)[0].rstrip(b"\r")
        match = _STATUS_LINE.fullmatch(line)
        if match is None:
            shown = _printable(line.decode("latin-1"))
            raise self._fail(
                ProxyError,
                f"proxy {self.proxy} sent a malformed response to CONNECT: {shown!r}",
            )
        reason = _printable((match.group(3) or b"").decode("latin-1"))
        for secret in self._secrets:  # a proxy echoing them must not make us show them
            reason = reason.replace(secret, "***")
        return int(match.group(2)), reason

    def _refusal(self, code: int, reason: str) -> ProxyError:
        status = f"{code} {reason}".rstrip()
        if code in (407, 401):
            # 401 is what tinyproxy 1.11 answers to wrong credentials (407 when none are sent);
            # an answer to CONNECT comes from the proxy itself, so it means the same here.
            what = (
                "rejected the credentials" if self._sent_credentials else "requires authentication"
            )
            return self._fail(
                ProxyAuthRequired, f"proxy {self.proxy} {what} ({code})", code=code, reason=reason
            )
        if code == 403:
            extra = f': "{reason}"' if reason and reason.lower() != "forbidden" else ""
            return self._fail(
                ProxyRefused,
                f"proxy {self.proxy} refused CONNECT to {self.target} (403 Forbidden){extra}",
                code=code,
                reason=reason,
            )
        return self._fail(
            ProxyError,
            f"proxy {self.proxy} answered CONNECT to {self.target} with {status}",
            code=code,
            reason=reason,
        )

    def _fail(
        self, kind: type[ProxyError], message: str, code: int | None = None, reason: str = ""
    ) -> ProxyError:
        self.state = HandshakeState.FAILED
        self._buffer = b""
        return kind(message, proxy=self.proxy, target=self.target, code=code, reason=reason)


def _secrets(credentials: tuple[str, str] | None) -> list[str]:
    """The strings that must never appear in a message: password, Basic token, user name."""
    if credentials is None:
        return []
    user, password = credentials
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    found = [token, password] + ([user] if len(user) >= 3 else [])
    return [secret for secret in found if secret]


def _printable(text: str, limit: int = 80) -> str:
    """Text from the network made safe for one log line: printable, bounded."""
    cleaned = "".join(c if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


# -- the Twisted shell -----------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class HTTPConnectEndpoint:
    """Connects through an HTTP CONNECT proxy to ``target_host:target_port``.

    ``proxy_endpoint`` reaches the proxy (a HostnameEndpoint in production).  ``timeout``
    bounds everything from ``connect()`` to the proxy's final answer, on ``reactor``.
    ``proxy_name`` (``host:port``) names the proxy in errors and logs; without it the peer
    address of the connection is used.  The Deferred from ``connect()`` fires with the caller's
    protocol once the tunnel is open, fails with a :class:`ProxyError`, and can be cancelled
    (ClientService does so when it stops).
    """

    def __init__(
        self,
        reactor: IReactorTime,
        proxy_endpoint: IStreamClientEndpoint,
        target_host: str,
        target_port: int,
        credentials: tuple[str, str] | None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        proxy_name: str | None = None,
    ) -> None:
        connect_request(target_host, target_port, credentials)  # validate now, fail early
        self._reactor = reactor
        self._proxy_endpoint = proxy_endpoint
        self._target_host = target_host
        self._target_port = target_port
        self._credentials = credentials
        self._timeout = timeout
        self._proxy_name = proxy_name

    def __repr__(self) -> str:
        proxy = self._proxy_name or "proxy"
        return (
            f"<HTTPConnectEndpoint {_authority(self._target_host, self._target_port)} via {proxy}>"
        )

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt = _ConnectAttempt(
            self._reactor,
            protocolFactory,
            self._target_host,
            self._target_port,
            self._credentials,
            self._timeout,
            self._proxy_name,
        )
        return attempt.start(self._proxy_endpoint)


class _ConnectAttempt:
    """One connect(): the proxy connection, the timer, and the Deferred given to the caller."""

    def __init__(
        self,
        reactor: IReactorTime,
        factory: IProtocolFactory,
        target_host: str,
        target_port: int,
        credentials: tuple[str, str] | None,
        timeout: float,
        proxy_name: str | None,
    ) -> None:
        self._reactor = reactor
        self._factory = factory
        self._target_host = target_host
        self._target_port = target_port
        self._credentials = credentials
        self._timeout = timeout
        self._proxy_name = proxy_name
        self._handshake: ConnectHandshake | None = None
        self._tunnel: _TunnelProtocol | None = None
        self._connecting: Deferred[IProtocol] | None = None
        self._timer: IDelayedCall | None = None
        self._done = False
        self.result: Deferred[IProtocol] = Deferred(self._cancel)

    @property
    def _target(self) -> str:
        return _authority(self._target_host, self._target_port)

    def start(self, proxy_endpoint: IStreamClientEndpoint) -> Deferred[IProtocol]:
        self._timer = self._reactor.callLater(self._timeout, self._timed_out)
        connecting = proxy_endpoint.connect(_TunnelFactory(self))
        self._connecting = connecting
        connecting.addCallbacks(self._proxy_connected, self._proxy_connect_failed)
        return self.result

    # called by the tunnel protocol

    def tunnel_made(self, tunnel: _TunnelProtocol, transport: ITransport) -> bytes | None:
        """The TCP connection to the proxy is up: the request to send (None: close it)."""
        if self._done:
            return None
        self._tunnel = tunnel
        proxy = self._proxy_name or _peer_name(transport)
        self._handshake = ConnectHandshake(
            proxy, self._target_host, self._target_port, self._credentials
        )
        return self._handshake.request()

    def data_received(self, data: bytes) -> None:
        if self._done or self._handshake is None or self._tunnel is None:
            return
        try:
            established = self._handshake.receive_data(data)
        except ProxyError as error:
            self._tunnel.close(abort=False)
            self._finish_failed(error)
            return
        if established is None:
            return
        self._established(self._tunnel, established)

    def tunnel_lost(self) -> None:
        if not self._done and self._handshake is not None:
            self._finish_failed(self._handshake.connection_lost())

    # internals

    def _established(self, tunnel: _TunnelProtocol, established: Established) -> None:
        assert self._handshake is not None
        transport = tunnel.transport
        assert transport is not None
        protocol = self._factory.buildProtocol(transport.getPeer())
        if protocol is None:
            tunnel.close(abort=True)
            self._finish_failed(NoProtocol())
            return
        self._stop_timer()
        self._done = True
        _log.info(
            "Tunnel to {target} through proxy {proxy} open ({code})",
            target=self._handshake.target,
            proxy=self._handshake.proxy,
            code=established.code,
        )
        tunnel.attach(protocol)
        self.result.callback(protocol)
        if established.data and tunnel.attached is protocol:
            tunnel.dataReceived(established.data)

    def _proxy_connected(self, protocol: IProtocol) -> None:
        self._connecting = None

    def _proxy_connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self._done:
            return None  # our own cancellation (timeout or caller): already reported
        proxy = self._proxy_name or "(proxy)"
        error = ProxyUnreachable(
            f"cannot connect to proxy {proxy}: {failure.getErrorMessage()}",
            proxy=proxy,
            target=self._target,
        )
        error.__cause__ = failure.value
        self._finish_failed(error)
        return None

    def _timed_out(self) -> None:
        self._timer = None
        if self._done:
            return
        handshake = self._handshake or ConnectHandshake(
            self._proxy_name or "(proxy)", self._target_host, self._target_port
        )
        error = handshake.timed_out(self._timeout)
        self._done = True
        self._abandon()
        self.result.errback(error)

    def _cancel(self, result: Deferred[IProtocol]) -> None:
        """The caller cancelled: stop everything; Deferred then fails with CancelledError."""
        if self._done:
            return
        self._done = True
        self._stop_timer()
        self._abandon()

    def _abandon(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.addErrback(lambda failure: failure.trap(CancelledError))
            connecting.cancel()
        if self._tunnel is not None:
            self._tunnel.close(abort=True)

    def _finish_failed(self, error: BaseException) -> None:
        self._stop_timer()
        self._done = True
        self.result.errback(Failure(error))

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class _TunnelProtocol(Protocol):
    """The connection to the proxy: the handshake first, then a pipe to the caller's protocol."""

    def __init__(self, attempt: _ConnectAttempt) -> None:
        self._attempt = attempt
        self.attached: IProtocol | None = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        request = self._attempt.tunnel_made(self, self.transport)
        if request is None:
            self.close(abort=True)
        else:
            self.transport.write(request)

    def dataReceived(self, data: bytes) -> None:
        if self.attached is not None:
            self.attached.dataReceived(data)
        else:
            self._attempt.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        attached, self.attached = self.attached, None
        if attached is not None:
            attached.connectionLost(reason)
        else:
            self._attempt.tunnel_lost()

    def attach(self, protocol: IProtocol) -> None:
        """From now on the raw connection belongs to ``protocol``."""
        assert self.transport is not None
        self.attached = protocol
        protocol.makeConnection(self.transport)

    def close(self, *, abort: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        abort_connection = getattr(transport, "abortConnection", None)
        if abort and abort_connection is not None:
            abort_connection()
        else:
            transport.loseConnection()


class _TunnelFactory(Factory):
    noisy = False  # no "Starting factory" log line on every reconnect attempt

    def __init__(self, attempt: _ConnectAttempt) -> None:
        self._attempt = attempt

    def buildProtocol(self, addr: IAddress | None) -> _TunnelProtocol:
        return _TunnelProtocol(self._attempt)


def _peer_name(transport: ITransport) -> str:
    peer = transport.getPeer()
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return _authority(host, port)
    return "(proxy)"


# -- the gateway endpoint --------------------------------------------------------------------


def gateway_endpoint(
    reactor: IReactorTime,
    host: str,
    port: int,
    tls_options: IOpenSSLClientConnectionCreator | None,
    https_proxy: str | None,
    no_proxy: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    tcp_endpoint: Callable[[str, int], IStreamClientEndpoint] | None = None,
) -> IStreamClientEndpoint:
    """The endpoint for the control connection to ``host:port``.

    ``reactor`` must provide IReactorTCP and IReactorTime (and a resolver), as HostnameEndpoint
    needs.  ``tls_options`` come from ``optionsForClientTLS(host, trustRoot)`` for a ``wss://``
    gateway (certificate and host name checked by service-identity) and are None for ``ws://``
    (tests only).  With a proxy that applies (HTTPS_PROXY set, host not in NO_PROXY), TLS runs
    inside the CONNECT tunnel; otherwise straight over TCP.  ``tcp_endpoint(host, port)`` makes
    the TCP endpoint to the proxy or the gateway (default: a HostnameEndpoint with ``timeout``).
    """

    def hostname_endpoint(name: str, number: int) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, name, number, timeout=timeout)
        return endpoint

    tcp = tcp_endpoint or hostname_endpoint
    proxy = proxy_for(https_proxy, no_proxy, host, port)
    inner: IStreamClientEndpoint
    if proxy is None:
        inner = tcp(host, port)
    else:
        inner = HTTPConnectEndpoint(
            reactor,
            tcp(proxy.host, proxy.port),
            host,
            port,
            proxy.credentials,
            timeout,
            proxy_name=proxy.authority,
        )
    if tls_options is None:
        return inner
    endpoint: IStreamClientEndpoint = wrapClientTLS(tls_options, inner)
    return endpoint
