"""The worker's state, as SPEC.md names it, shared by health, systemd and the control plane.

States (SPEC.md "Control plane"): OFFLINE (not connected), CONNECTING, ONLINE (idle), BUSY
(running a test), DRAINING (stopping), ERROR (the last attempt failed, with the reason).  One
:class:`WorkerStatus` object holds the state and tells its observers of every change, so
``/health``, systemd's ``STATUS=`` and the gateway always report the same thing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

__all__ = ["WorkerState", "WorkerStatus"]


class WorkerState(enum.Enum):
    OFFLINE = "OFFLINE"
    CONNECTING = "CONNECTING"
    ONLINE = "ONLINE"
    BUSY = "BUSY"
    DRAINING = "DRAINING"
    ERROR = "ERROR"


Observer = Callable[["WorkerStatus"], None]


class WorkerStatus:
    """The current state, the last error's reason and the load, with change notification."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._started = clock.seconds()
        self._observers: list[Observer] = []
        self.state = WorkerState.OFFLINE
        self.reason: str | None = None
        self.connected = False
        self.active_endpoints = 0
        self.test_run: str | None = None

    @property
    def uptime_s(self) -> float:
        return self._clock.seconds() - self._started

    def subscribe(self, observer: Observer) -> None:
        self._observers.append(observer)

    def unsubscribe(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def set_state(self, state: WorkerState, reason: str | None = None) -> None:
        """Enter ``state``; ``reason`` explains an ERROR (and is cleared by any other state)."""
        if state is self.state and reason == self.reason:
            return
        self.state = state
        self.reason = reason
        self._notify()

    def set_load(self, active_endpoints: int, test_run: str | None) -> None:
        if (active_endpoints, test_run) == (self.active_endpoints, self.test_run):
            return
        self.active_endpoints = active_endpoints
        self.test_run = test_run
        self._notify()

    def set_connected(self, connected: bool) -> None:
        self.connected = connected

    def summary(self) -> str:
        """One human line, e.g. ``ONLINE`` or ``ERROR: gateway refused the token``."""
        line = self.state.value
        if self.reason:
            line += f": {self.reason}"
        if self.test_run is not None:
            line += f" (run {self.test_run}, {self.active_endpoints} endpoints)"
        return line

    def _notify(self) -> None:
        for observer in list(self._observers):
            observer(self)
