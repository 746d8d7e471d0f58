"""The log of ``callmeter run`` on the terminal: warnings and errors, each kind rate-limited.

A run of 2,000 endpoints against a dead registrar logs 2,000 alike warnings; the terminal gets
the first :data:`BURST` of each kind per :data:`PERIOD_S` seconds and then one line saying how
many were left out.  A kind is the event's format string, or, for lines re-emitted from a worker
process, the message with its numbers blanked ("1003 did not register: ..." and "1004 did not
register: ..." are one kind).  The whole log, every level, goes to ``--log FILE`` instead
(:func:`callmeter.logs.make_observer`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from twisted.logger import ILogObserver, LogLevel, formatEvent
from zope.interface import implementer

__all__ = ["BURST", "PERIOD_S", "ConsoleLogObserver"]

BURST = 3
PERIOD_S = 10.0
_NUMBERS = re.compile(r"\d+")


@implementer(ILogObserver)
class ConsoleLogObserver:
    """Writes ``callmeter: warning: MESSAGE`` lines for events at ``level`` and above.

    ``write`` takes one line (with its newline): a file's write, or a live display's printer
    that keeps its progress line below the log.
    """

    def __init__(
        self,
        write: Callable[[str], Any],
        level: LogLevel = LogLevel.warn,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write_line = write
        self._level = level
        self._clock = clock
        # kind -> (period start, lines shown, lines left out, the last one left out)
        self._seen: dict[str, tuple[float, int, int, str]] = {}

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        if level < self._level:
            return
        message = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            message = f"{message}: {failure.getErrorMessage()}"
        kind = self._kind(event, message)
        now = self._clock()
        start, shown, left, last = self._seen.get(kind, (now, 0, 0, ""))
        if now - start >= PERIOD_S:
            self._left_out(level, left, last)
            start, shown, left = now, 0, 0
        if shown >= BURST:
            self._seen[kind] = (start, shown, left + 1, message)
            return
        self._seen[kind] = (start, shown + 1, left, "")
        self._write(level, message)

    def flush(self) -> None:
        """Say how many lines of each kind were left out (at the end of the run)."""
        for _, _, left, last in self._seen.values():
            self._left_out(LogLevel.warn, left, last)
        self._seen.clear()

    def _left_out(self, level: LogLevel, left: int, last: str) -> None:
        if left:
            self._write(level, f"({left} more like this were left out, the last:) {last}")

    def _kind(self, event: dict[str, Any], message: str) -> str:
        if (
            "index" in event
            and "message" in event
            and event.get("log_namespace", "").startswith("callmeter.engine.processes")
        ):
            return _NUMBERS.sub("#", str(event["message"]))[:120]
        return str(event.get("log_format") or _NUMBERS.sub("#", message)[:120])

    def _write(self, level: LogLevel, message: str) -> None:
        label = "warning" if level == LogLevel.warn else level.name
        self._write_line(f"callmeter: {label}: {message}\n")
