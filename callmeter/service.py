"""makeService(): the worker's MultiService (ARCHITECTURE.md "One process, two planes").

It holds the health endpoint, the control plane (the WebSocket client to the gateway, whose
assignments the engine runs in worker processes) and the systemd notifier.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, Any

from prometheus_client import CollectorRegistry
from twisted.application.service import MultiService
from twisted.logger import ILogObserver, Logger

from callmeter import __version__
from callmeter.config import Config
from callmeter.control.service import ControlService
from callmeter.engine.service import PlanEngine
from callmeter.health import HealthService, StatusCollector, health_site
from callmeter.logs import make_observer
from callmeter.status import WorkerStatus
from callmeter.systemd import SystemdService

__all__ = ["WorkerService", "makeService"]


class WorkerService(MultiService):
    """The worker: its status, its metrics registry and its child services."""

    log = Logger()

    def __init__(
        self, config: Config, status: WorkerStatus, registry: CollectorRegistry, log_out: IO[str]
    ) -> None:
        super().__init__()
        self.config = config
        self.status = status
        self.registry = registry
        self._log_observer = make_observer(config.log_level, config.log_format, log_out)

    def setServiceParent(self, parent: Any) -> None:
        """Also give twistd's Application our log observer (LOG_LEVEL, LOG_FORMAT).

        twistd asks the application for an ILogObserver component before falling back to its
        own; an explicit ``twistd --logger`` still wins.
        """
        super().setServiceParent(parent)
        if hasattr(parent, "setComponent") and parent.getComponent(ILogObserver) is None:
            parent.setComponent(ILogObserver, self._log_observer)

    def startService(self) -> None:
        self.log.info(
            "callmeter-worker {version} starting: SIP {sip_ip}:{sip_port}, "
            "RTP {rtp_min}-{rtp_max}, gateway {gateway}",
            version=__version__,
            sip_ip=self.config.sip_ip,
            sip_port=self.config.sip_port,
            rtp_min=self.config.rtp_port_min,
            rtp_max=self.config.rtp_port_max,
            gateway=self.config.gateway_url,
        )
        super().startService()

    def stopService(self) -> object:
        self.log.info("callmeter-worker stopping")
        return super().stopService()


def makeService(
    config: Config,
    reactor: Any = None,
    environ: Mapping[str, str] | None = None,
    log_out: IO[str] | None = None,
) -> WorkerService:
    """Build the worker's services from ``config``.  ``reactor`` defaults to the global one."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    status = WorkerStatus(reactor)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatusCollector(status))  # type: ignore[arg-type]

    worker = WorkerService(config, status, registry, log_out or sys.stdout)
    HealthService(
        health_site(status, registry), config.health_port, config.health_bind, reactor
    ).setServiceParent(worker)
    # The control plane: assignments from the gateway run through the engine, in worker
    # processes; it stops before the health endpoint (services stop in reverse order).
    ControlService(config, status, PlanEngine(config, reactor), reactor).setServiceParent(worker)
    # Last, so that READY=1 follows every other service's start and STOPPING=1 comes first.
    SystemdService(
        status, reactor, environ if environ is not None else os.environ, _process_start_time()
    ).setServiceParent(worker)
    return worker


def _process_start_time() -> float | None:
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:
        return None
