"""Reconnect delays of the control plane: 5 s, 10 s, 20 s, 40 s, 60 s, 60 s ... plus jitter.

SPEC.md "Control plane" (the seed's "Connection Lifecycle"): reconnect forever, first retry after
5 s, doubling up to 60 s, small random jitter allowed, reset after a connection that
authenticated.

Jitter: upward only, up to :data:`JITTER_FRACTION` (10 %) of the nominal delay, so a delay is
always in ``[nominal, 1.1 * nominal]``: never below 5 s, never above 66 s. Upward only, because
the seed promises the first retry *after* 5 s and a cap of 60 s "plus jitter" is the documented
exception; 10 % spreads a thousand workers reconnecting after a gateway restart over half a
second at the first step and six seconds at the cap.

Plugging into Twisted: a :class:`ReconnectBackoff` is the ``retryPolicy`` of
``twisted.application.internet.ClientService``. Both Twisted 22.4 (Debian 12) and current
Twisted call the policy exactly once per scheduled retry, with the number of failed attempts in
a row, counting from 1 (``_doWait`` / ``waitForRetry``: ``failedAttempts += 1`` then
``retryPolicy(failedAttempts)``), and both reset that number to 0 when a connection is *made*,
i.e. when TCP (and TLS, and a proxy's CONNECT) succeeded. That reset is too early for us: a
gateway that accepts TCP and then refuses the token (HTTP 401 on the WebSocket upgrade) would
make the worker retry every 5 s forever. So the policy counts failures itself and ignores the
argument ClientService passes; the control client calls :meth:`ReconnectBackoff.reset` when the
gateway's ``welcome`` arrives, the moment the session is authenticated. (Twisted's own
``backoffPolicy`` would not do either: it waits ``initialDelay * factor`` at attempt 1, 10 s for
5 s, and adds its jitter after the cap.)
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = [
    "FACTOR",
    "INITIAL_DELAY_S",
    "JITTER_FRACTION",
    "MAX_DELAY_S",
    "MAX_JITTERED_DELAY_S",
    "ReconnectBackoff",
    "reconnect_delay",
]

INITIAL_DELAY_S = 5.0
MAX_DELAY_S = 60.0
FACTOR = 2.0
JITTER_FRACTION = 0.1
MAX_JITTERED_DELAY_S = MAX_DELAY_S * (1 + JITTER_FRACTION)
"""The longest wait between two attempts: 66 s."""


def reconnect_delay(failures: int, jitter: float = 0.0) -> float:
    """The wait after ``failures`` failed attempts in a row (1, 2, ...): 5, 10, 20, 40, 60, 60 ...

    ``jitter`` in [0, 1] (clamped) adds up to :data:`JITTER_FRACTION` of the nominal delay.
    """
    if failures < 1:
        raise ValueError(f"failures counts from 1, not {failures}")
    nominal = min(INITIAL_DELAY_S * FACTOR ** min(failures - 1, 16), MAX_DELAY_S)
    return nominal * (1.0 + JITTER_FRACTION * min(max(jitter, 0.0), 1.0))


class ReconnectBackoff:
    """A ``ClientService`` retry policy that is reset on authentication, not on connection.

    Call it (as ClientService does) once per failed attempt or lost connection to get the wait;
    call :meth:`reset` when the gateway's ``welcome`` arrives. ``jitter`` returns a number in
    [0, 1] (default ``random.random``); tests pass a constant.
    """

    def __init__(self, jitter: Callable[[], float] = random.random) -> None:
        self._jitter = jitter
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failed attempts (and sessions lost before authenticating) since the last reset."""
        return self._failures

    def __call__(self, attempt: int) -> float:
        """The delay before the next attempt. ``attempt`` (ClientService's count, reset on every
        TCP connection) is ignored: our own count only resets on :meth:`reset`, so it is always
        at least ClientService's."""
        self._failures += 1
        return reconnect_delay(self._failures, self._jitter())

    def reset(self) -> None:
        """The session authenticated: the next failure waits the initial 5 s again."""
        self._failures = 0
