"""The health endpoint: ``/health`` (JSON, SPEC.md "Health endpoint") and ``/metrics``.

``GET /health`` answers 200 with ``{"status", "connected", "version", "uptime_s",
"active_endpoints", "test_run"}`` and 503 while the worker is in ERROR (it cannot do its job).
``GET /metrics`` is the Prometheus text exposition format, produced by prometheus_client from a
collector that reads the live :class:`~callmeter.status.WorkerStatus` at scrape time.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorTCP
from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from callmeter import __version__
from callmeter.status import WorkerState, WorkerStatus

__all__ = ["HealthResource", "HealthService", "MetricsResource", "StatusCollector", "health_site"]


class HealthResource(Resource):
    """``/health``: the worker's state as JSON; 503 in ERROR."""

    isLeaf = True

    def __init__(self, status: WorkerStatus) -> None:
        super().__init__()
        self._status = status

    def render_GET(self, request: Request) -> bytes:
        status = self._status
        body = {
            "status": status.state.value,
            "connected": status.connected,
            "version": __version__,
            "uptime_s": round(status.uptime_s, 3),
            "active_endpoints": status.active_endpoints,
            "test_run": status.test_run,
        }
        if status.reason:
            body["reason"] = status.reason
        if status.state is WorkerState.ERROR:
            request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body).encode() + b"\n"

    render_HEAD = render_GET


class StatusCollector:
    """Prometheus collector for the worker's own state, read at scrape time."""

    def __init__(self, status: WorkerStatus) -> None:
        self._status = status

    def collect(self) -> Iterator[object]:
        status = self._status
        info = InfoMetricFamily("callmeter_worker", "callmeter-worker build information")
        info.add_metric([], {"version": __version__})
        yield info
        state = GaugeMetricFamily(
            "callmeter_worker_state", "1 for the worker's current state", labels=["state"]
        )
        for candidate in WorkerState:
            state.add_metric([candidate.value], 1.0 if candidate is status.state else 0.0)
        yield state
        yield GaugeMetricFamily(
            "callmeter_worker_connected",
            "1 while the control plane connection is up",
            value=1.0 if status.connected else 0.0,
        )
        yield GaugeMetricFamily(
            "callmeter_worker_uptime_seconds",
            "seconds since the service started",
            value=status.uptime_s,
        )
        yield GaugeMetricFamily(
            "callmeter_worker_active_endpoints",
            "SIP endpoints of the running test",
            value=float(status.active_endpoints),
        )


class MetricsResource(Resource):
    """``/metrics``: everything in ``registry`` in the Prometheus text format."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return bytes(generate_latest(self._registry))


class _QuietSite(Site):
    """A Site that writes no access log: a health probe every few seconds is not news."""

    def log(self, request: http.Request) -> None:
        pass

    def logPrefix(self) -> str:
        return "health"


def health_site(status: WorkerStatus, registry: CollectorRegistry) -> Site:
    root = Resource()
    root.putChild(b"health", HealthResource(status))
    root.putChild(b"metrics", MetricsResource(registry))
    site = _QuietSite(root)
    site.displayTracebacks = False
    site.noisy = False
    return site


class HealthService(Service):
    """Listens with the health site on HEALTH_BIND:HEALTH_PORT while running."""

    log = Logger()

    def __init__(self, site: Site, port: int, interface: str, reactor: IReactorTCP) -> None:
        self._site = site
        self._port = port
        self._interface = interface
        self._reactor = reactor
        self.listening: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        try:
            self.listening = self._reactor.listenTCP(
                self._port,
                self._site,  # type: ignore[arg-type]  # a Site is a ServerFactory
                interface=self._interface,
            )
        except CannotListenError as error:
            # A start-up error the user must fix: one clear line, and a non-zero exit.
            address = f"{_url_host(self._interface)}:{self._port}"
            reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
            self.log.critical(
                "cannot serve health on {address}: {reason} (set HEALTH_BIND / HEALTH_PORT)",
                address=address,
                reason=reason,
            )
            raise SystemExit(1) from None
        bound = self.listening.getHost()
        self.log.info(
            "health endpoint on http://{host}:{port}/health",
            host=_url_host(self._interface),
            port=getattr(bound, "port", self._port),
        )

    def startService(self) -> None:
        if self.listening is None:
            self.privilegedStartService()
        super().startService()

    def stopService(self) -> object:
        super().stopService()
        listening, self.listening = self.listening, None
        if listening is not None:
            return listening.stopListening()
        return None


def _url_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address
