"""The engine: runs a test plan (registrations, calls, media) and reports its metrics.

:class:`Engine` is how ``callmeter run`` and the daemon's control plane both hold it
(:mod:`callmeter.control.engine_api`): validate, prepare, start, a :class:`Run` handle.
"""

from callmeter.engine.engine import Engine, Prepared, Run, media_reason
from callmeter.engine.processes import RunFailed

__all__ = ["Engine", "Prepared", "Run", "RunFailed", "media_reason"]
