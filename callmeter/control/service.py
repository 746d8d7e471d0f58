"""ControlService: the control plane as a Twisted service (SPEC.md "Control plane").

One outbound WebSocket to GATEWAY_URL kept up forever by ``twisted.application.internet.
ClientService`` with the reconnect policy of :mod:`callmeter.control.backoff` (5, 10, 20, 40, 60
... s, reset by the gateway's ``welcome``, not by a mere TCP connection). The endpoint comes from
:func:`callmeter.control.proxy.gateway_endpoint`: TCP, or an HTTP CONNECT tunnel through
HTTPS_PROXY unless NO_PROXY matches, with TLS inside (``optionsForClientTLS``: certificate chain
checked against TLS_CA_FILE when set, else the system store, and the host name checked by
service-identity, RFC 6125).

What ClientService cannot see: it knows a connection was *made*, not that the gateway accepted
the token, nor that a connection still carries anything. The first is the ``welcome`` (the
backoff resets there); the second is the heartbeat deadline of
:class:`~callmeter.control.heartbeat.HeartbeatMonitor` plus Autobahn's WebSocket pings.

Stopping drains (SPEC.md "systemd": SIGTERM drains): DRAINING, the run is cancelled cleanly
(the engine sends BYE and un-REGISTERs), its last windows and ``finished`` are flushed while
connected, then the WebSocket is closed.
"""

from __future__ import annotations

import re
import socket
from typing import Any
from urllib.parse import urlsplit

from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.ssl import (
    Certificate,
    optionsForClientTLS,
    platformTrust,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from callmeter import __version__
from callmeter.config import Config
from callmeter.control.backoff import ReconnectBackoff
from callmeter.control.client import (
    AUTO_PING_INTERVAL_S,
    ControlClient,
    ControlClientFactory,
    ObservedEndpoint,
)
from callmeter.control.engine_api import Engine
from callmeter.control.proxy import gateway_endpoint
from callmeter.status import WorkerStatus

__all__ = ["DRAIN_TIMEOUT_S", "ControlService", "gateway_address", "tls_options"]

DRAIN_TIMEOUT_S = 20.0
"""Longest wait for the cancelled run's report and its acknowledgement when stopping."""

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)

log = Logger()


def gateway_address(url: str) -> tuple[bool, str, int]:
    """(secure, host, port) of a GATEWAY_URL (``wss://host[:port][/path]``)."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    return secure, host, parts.port or (443 if secure else 80)


def tls_options(host: str, ca_file: str | None) -> IOpenSSLClientConnectionCreator:
    """TLS client options for ``host``: TLS_CA_FILE's certificates as the trust root when
    given (all of the PEM bundle), else the platform's store; the host name is verified."""
    if ca_file is None:
        trust = platformTrust()
    else:
        with open(ca_file, "rb") as pem:
            blocks = _PEM_CERT.findall(pem.read())
        if not blocks:
            raise ValueError(f"TLS_CA_FILE {ca_file!r} holds no PEM certificate")
        trust = trustRootFromCertificates([Certificate.loadPEM(b) for b in blocks])
    options: IOpenSSLClientConnectionCreator = optionsForClientTLS(host, trustRoot=trust)
    return options


class ControlService(Service):
    """The control plane; add it to the worker's MultiService before SystemdService.

    ``endpoint`` replaces the gateway endpoint built from ``config`` (tests: an in-memory or
    recording endpoint); ``retry_policy`` replaces the :class:`ReconnectBackoff` (its
    ``reset`` is called on ``welcome`` when it has one).
    """

    name = "control"

    def __init__(
        self,
        config: Config,
        status: WorkerStatus,
        engine: Engine,
        reactor: Any,
        *,
        worker_name: str | None = None,
        endpoint: IStreamClientEndpoint | None = None,
        retry_policy: Any = None,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
        auto_ping_interval_s: float = AUTO_PING_INTERVAL_S,
    ) -> None:
        if config.worker_token is None:
            raise ValueError("the control plane needs WORKER_TOKEN")
        self._config = config
        self._reactor = reactor
        self._drain_timeout_s = drain_timeout_s
        self._stop_waiters = []
        self.backoff = retry_policy if retry_policy is not None else ReconnectBackoff()
        secure, host, port = gateway_address(config.gateway_url)
        self.client = ControlClient(
            worker_name=worker_name or socket.gethostname() or "worker",
            version=__version__,
            max_endpoints=min(config.max_endpoints, _capacity(engine, config.max_endpoints)),
            engine=engine,
            status=status,
            clock=reactor,
            on_authenticated=self._authenticated,
        )
        if endpoint is None:
            endpoint = gateway_endpoint(
                reactor,
                host,
                port,
                tls_options(host, config.tls_ca_file) if secure else None,
                config.https_proxy,
                config.no_proxy,
            )
        target = f"the gateway {host}:{port}"
        self.factory = ControlClientFactory(
            config.gateway_url,
            config.worker_token.reveal(),
            self.client,
            reactor,
            version=__version__,
            auto_ping_interval_s=auto_ping_interval_s,
        )
        self._connector = ClientService(
            ObservedEndpoint(endpoint, self.client, target),
            self.factory,
            retryPolicy=self.backoff,
            clock=reactor,
        )

    _stop_waiters: list[Deferred[None]] | None

    def _authenticated(self) -> None:
        reset = getattr(self.backoff, "reset", None)
        if reset is not None:
            reset()

    def startService(self) -> None:
        super().startService()
        log.info("Control plane: connecting to {url}", url=self._config.gateway_url)
        self._connector.startService()

    def stopService(self) -> Deferred[None]:
        """Drain, close, stop reconnecting; a second call waits for the first to finish."""
        waiter: Deferred[None] = Deferred()
        if self._stop_waiters is None:
            return succeed(None)  # stopped already
        self._stop_waiters.append(waiter)
        if len(self._stop_waiters) == 1:
            super().stopService()
            self._stop().addBoth(self._stopped)
        return waiter

    @inlineCallbacks
    def _stop(self) -> Any:
        yield self.client.drain(self._drain_timeout_s)
        self.client.close()
        stopped: Deferred[None] = self._connector.stopService()
        yield stopped

    def _stopped(self, result: object) -> None:
        waiters, self._stop_waiters = self._stop_waiters or [], None
        if isinstance(result, Failure):
            log.failure("Stopping the control plane failed", result)
        for waiter in waiters:
            waiter.callback(None)


def _capacity(engine: Engine, default: int) -> int:
    try:
        return int(engine.capacity)
    except Exception:
        return default
