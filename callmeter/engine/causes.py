"""Why a registration or a call failed, in one line a SIP engineer can act on.

The summary of ``callmeter run`` and the report (``sip.register.causes``, ``sip.calls.causes``)
count failures by these lines, so that "4 failed" comes with "4 x no answer from
127.0.0.1:5060 over UDP" instead of a bare code.  The codes follow RFC 3261: 408 when a client
transaction timed out (17.1.1.2 Timer B, 17.1.2.2 Timer F), 503 when the transport failed
(8.1.3.1), otherwise the final response the peer sent.
"""

from __future__ import annotations

from callmeter.sip.transaction import Failure
from callmeter.sip.transport import Target

__all__ = ["failure_cause", "unfinished_cause"]


def _where(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{host}:{target.port}"


def failure_cause(code: int, reason: str, target: Target | None) -> str:
    """One line for a failed request to ``target``: the answer, or why none came."""
    where = _where(target) if target is not None else None
    transport = target.transport.upper() if target is not None else ""
    if reason == Failure.TIMEOUT.value:
        return f"no answer from {where} over {transport}" if where else "no answer (timeout)"
    if reason == Failure.TRANSPORT_ERROR.value:
        if where:
            return f"transport error to {where} over {transport} (refused or unreachable)"
        return "transport error (refused or unreachable)"
    text = f"{code} {reason}".strip()
    return f"{text} from {where}" if where else text


def unfinished_cause(what: str, target: Target | None) -> str:
    """A request still waiting for its final answer when the run ended (counted as 408)."""
    where = f" from {_where(target)} over {target.transport.upper()}" if target else ""
    return f"no final answer{where} before the run ended ({what})"
