"""``twistd -n callmeter-gateway``: options, the site (``/ws`` and ``/api``), the service.

SPEC.md "Reference gateway": ``--listen ENDPOINT`` (a Twisted server endpoint string:
``ssl:8443:privateKey=key.pem:certKey=cert.pem``, or ``tcp:8080:interface=127.0.0.1`` for plain
tests), ``--db PATH``, ``--worker-tokens FILE`` (one ``NAME TOKEN`` per line) and
``--admin-token-file FILE``. Secrets come from files, never from the command line.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from callmeter.gateway.api import ApiResource
from callmeter.gateway.options import GatewayOptions
from callmeter.gateway.server import (
    HEARTBEAT_INTERVAL_S,
    STALE_AFTER_S,
    Gateway,
    GatewayServerFactory,
)
from callmeter.gateway.store import Runner, Store, ThreadRunner

__all__ = ["GatewayService", "gateway_site", "make_gateway_service"]

log = Logger()


def gateway_site(gateway: Gateway, admin_token: str, reactor: Any = None) -> Site:
    """The one site: the worker WebSocket on ``/ws``, the JSON API on ``/api``."""
    factory = GatewayServerFactory(gateway, reactor=reactor)
    root = Resource()
    root.putChild(b"ws", WebSocketResource(factory))
    root.putChild(b"api", ApiResource(gateway, admin_token))
    site = Site(root) if reactor is None else Site(root, reactor=reactor)
    site.ws_factory = factory  # type: ignore[attr-defined]
    site.noisy = False
    site.displayTracebacks = False
    return site


class GatewayService(MultiService):
    """Opens the store, listens on ``listen``; ``listening`` fires with the port."""

    def __init__(
        self,
        listen: str,
        db: str,
        tokens: dict[str, str],
        admin_token: str,
        reactor: Any = None,
        *,
        runner: Runner | None = None,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor
        self._listen = listen
        self._db = db
        self._tokens = tokens
        self._admin_token = admin_token
        self._runner = runner
        self._heartbeat_interval_s = heartbeat_interval_s
        self._stale_after_s = stale_after_s
        self._threads: ThreadRunner | None = None
        self.gateway: Gateway | None = None
        self.site: Site | None = None
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] = Deferred()

    def startService(self) -> None:
        super().startService()
        runner = self._runner
        if runner is None:
            self._threads = ThreadRunner(self._reactor)
            self._threads.start()
            runner = self._threads
        store = Store(self._db, runner)
        self.gateway = Gateway(
            store,
            self._tokens,
            self._reactor,
            heartbeat_interval_s=self._heartbeat_interval_s,
            stale_after_s=self._stale_after_s,
        )
        self.site = gateway_site(self.gateway, self._admin_token, self._reactor)
        d = serverFromString(self._reactor, self._listen).listen(self.site)

        def listening(port: IListeningPort) -> IListeningPort:
            self.port = port
            log.info(
                "callmeter-gateway on {address}: /ws for workers, /api for the API "
                "({workers} workers known, db {db})",
                address=port.getHost(),
                workers=len(self._tokens),
                db=self._db,
            )
            self.listening.callback(port)
            return port

        def failed(failure: Any) -> None:
            log.failure("callmeter-gateway cannot listen on {listen}", failure, listen=self._listen)
            self.listening.errback(failure)

        d.addCallbacks(listening, failed)

    @inlineCallbacks
    def stopService(self) -> Any:
        yield super().stopService()
        if self.port is not None:
            yield self.port.stopListening()
            self.port = None
        if self.site is not None:
            self.site.ws_factory.abort_all()  # type: ignore[attr-defined]
        if self.gateway is not None:
            self.gateway.stop()
            yield self.gateway.store.close()
        if self._threads is not None:
            self._threads.stop()
            self._threads = None


def make_gateway_service(options: GatewayOptions) -> GatewayService:
    """The twistd plugin's service."""
    return GatewayService(
        options["listen"], options["db"], options["tokens"], options["admin-token"]
    )
