"""systemd integration (sd_notify(3)): READY=1, STATUS=, WATCHDOG=1 and STOPPING=1.

The notifications go through sdnotify to ``$NOTIFY_SOCKET`` (a no-op when systemd did not set
it).  The watchdog ping is a reactor timer at half of ``$WATCHDOG_USEC``: when the reactor is
blocked the pings stop, and systemd's ``WatchdogSec=`` kills and restarts the service, which is
the point of a watchdog.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import sdnotify
from twisted.application.service import Service
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from callmeter.status import WorkerStatus

__all__ = ["SystemdService", "watchdog_interval"]


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of WATCHDOG_USEC (sd_watchdog_enabled(3)).

    None when systemd asked for no watchdog, or asked another process (WATCHDOG_PID).
    """
    raw = environ.get("WATCHDOG_USEC")
    if not raw:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner and owner.isdigit() and int(owner) != pid:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


class SystemdService(Service):
    """Tells systemd how the worker is doing.  Add it last to the MultiService.

    Being last, its ``startService`` runs after every other service started, so READY=1 means
    the others are up; and it stops first, so STOPPING=1 is sent as soon as shutdown begins.
    """

    log = Logger()

    def __init__(
        self,
        status: WorkerStatus,
        reactor: IReactorTime,
        environ: Mapping[str, str] | None = None,
        process_started: float | None = None,
    ) -> None:
        self._status = status
        self._reactor = reactor
        self._environ = dict(os.environ if environ is None else environ)
        self._process_started = process_started
        self._notifier = sdnotify.SystemdNotifier()
        self._pinger: LoopingCall | None = None
        self.interval = watchdog_interval(self._environ, os.getpid())
        self.ready_after_s: float | None = None

    def startService(self) -> None:
        super().startService()
        self._status.subscribe(self._on_status)
        if IReactorCore.providedBy(self._reactor):
            self._reactor.callWhenRunning(self._ready)
        else:
            self._ready()

    def stopService(self) -> None:
        super().stopService()
        self._status.unsubscribe(self._on_status)
        self._send("STOPPING=1")
        if self._pinger is not None and self._pinger.running:
            self._pinger.stop()
        self._pinger = None

    def _ready(self) -> None:
        if not self.running:
            return
        self._send(f"READY=1\nSTATUS={self._status.summary()}\nMAINPID={os.getpid()}")
        if self._process_started is not None:
            self.ready_after_s = time.time() - self._process_started
            self.log.info("ready after {ready_ms:.0f} ms", ready_ms=self.ready_after_s * 1000)
        if self.interval is not None:
            self._pinger = LoopingCall(self._send, "WATCHDOG=1")
            self._pinger.clock = self._reactor
            self._pinger.start(self.interval, now=True)
            self.log.info("watchdog ping every {interval:.1f} s", interval=self.interval)

    def _on_status(self, status: WorkerStatus) -> None:
        self._send(f"STATUS={status.summary()}")

    def _send(self, message: str) -> None:
        self._notifier.notify(message)
