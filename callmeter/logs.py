"""Log output: LOG_LEVEL filtering and LOG_FORMAT text or JSON lines.

Text lines are Twisted's usual format.  JSON lines carry one object per line (journald and
log shippers take them as they are): ``time``, ``level``, ``namespace``, ``message`` and the
event's own scalar fields.  Log events never carry secrets: the token is a
:class:`~callmeter.config.Secret`, whose repr is masked even if it were formatted by mistake.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from zope.interface import implementer

__all__ = ["JsonLinesObserver", "make_observer"]

_LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}


@implementer(ILogObserver)
class JsonLinesObserver:
    """Writes each event as one JSON object on one line."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime(event.get("log_time", time.time()))
            )
            + "Z",
            "level": getattr(level, "name", "info"),
            "namespace": event.get("log_namespace", ""),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if key.startswith("log_") or key in record or key in ("format", "message"):
                continue
            if isinstance(value, str | int | float | bool) or value is None:
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self._out.write(json.dumps(record, default=str) + "\n")
        self._out.flush()


def make_observer(level: str, fmt: str, out: IO[str]) -> ILogObserver:
    """An observer printing events at ``level`` and above to ``out`` as ``fmt`` (text, json)."""
    writer: ILogObserver = JsonLinesObserver(out) if fmt == "json" else textFileLogObserver(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=_LEVELS[level])
    return FilteringLogObserver(writer, [predicate])
