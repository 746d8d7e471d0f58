"""Heartbeats, and the deadline that finds a dead (half-open) control connection.

SPEC.md "Control plane" (the seed's "Connection Lifecycle"): the worker sends a heartbeat every
30 s; the gateway marks a worker stale (ERROR) after 60 s without one.

Why a deadline at all: behind a NAT or a stateful firewall, a connection whose mapping expired
(or whose gateway host vanished) is half-open: the worker's writes go into the kernel's send
buffer and TCP retransmits them for many minutes (``tcp_retries2``, about 15 min on Linux) before
the socket reports an error, and until then nothing comes back. Only an application-level reply
proves the path works, so each heartbeat expects the gateway's ``heartbeat_ack`` -- or any other
message, which proves the same -- within ``timeout_s``; otherwise ``on_dead`` is called and the
client drops the connection and reconnects.

Why 15 s (:data:`DEFAULT_TIMEOUT_S`) and not two intervals: the gateway turns a worker ERROR
60 s after the last heartbeat it received. If that heartbeat left at T and the path died just
after, the next heartbeat goes at T+30 s, the deadline fires at T+45 s, the first reconnect
(backoff reset by the authenticated session) starts at T+50 s, and the new session's immediate
heartbeat (:meth:`HeartbeatMonitor.start` sends one at once) reaches the gateway before T+60 s
when connecting takes under 10 s. A 60 s deadline would leave the worker believing it is ONLINE
for up to 90 s while the gateway already shows it ERROR. 15 s still allows a round trip through
a congested link plus TCP's first retransmissions (1 + 2 + 4 + 8 s).

Sans-IO apart from time: it takes an ``IReactorTime`` (``task.Clock`` in tests) and callables.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["DEFAULT_INTERVAL_S", "DEFAULT_TIMEOUT_S", "HeartbeatMonitor"]

DEFAULT_INTERVAL_S = 30.0
DEFAULT_TIMEOUT_S = 15.0


class HeartbeatMonitor:
    """Sends heartbeat ``seq`` 1, 2, 3 ... every ``interval_s`` and watches for replies.

    ``send(seq)`` writes one heartbeat (the caller fills in state and load). After a heartbeat
    is sent with no reply outstanding, a deadline of ``timeout_s`` starts; any message from the
    gateway (:meth:`received`, or :meth:`acknowledged` for ``heartbeat_ack``) clears it. If it
    expires, the monitor stops and calls ``on_dead()`` once.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[int], None],
        on_dead: Callable[[], None],
        interval_s: float = DEFAULT_INTERVAL_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s}")
        self._clock = clock
        self._send = send
        self._on_dead = on_dead
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.seq = 0
        self.last_rtt_s: float | None = None
        self._next_due = 0.0
        self._tick: IDelayedCall | None = None
        self._deadline: IDelayedCall | None = None
        self._sent_at: dict[int, float] = {}

    @property
    def running(self) -> bool:
        return self._tick is not None

    def start(self) -> None:
        """Session authenticated: send the first heartbeat now, then every ``interval_s``."""
        if self._tick is not None:
            return
        self._next_due = self._clock.seconds()
        self._beat()

    def stop(self) -> None:
        """Connection gone (or closing): cancel the timers; ``on_dead`` will not be called."""
        for call in (self._tick, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._tick = self._deadline = None
        self._sent_at.clear()

    def received(self) -> None:
        """Any message from the gateway arrived: the connection is alive."""
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def acknowledged(self, seq: int) -> None:
        """``heartbeat_ack`` ``seq`` arrived: records the round-trip time, then :meth:`received`."""
        sent = self._sent_at.pop(seq, None)
        if sent is not None:
            self.last_rtt_s = self._clock.seconds() - sent
        self.received()

    def _beat(self) -> None:
        self.seq += 1
        now = self._clock.seconds()
        self._sent_at[self.seq] = now
        self._sent_at.pop(self.seq - 4, None)  # a gateway that never acks: keep a few only
        if self._deadline is None:
            self._deadline = self._clock.callLater(self.timeout_s, self._expired)
        # Scheduled from the due time, not from now, so a late tick does not shift the rest.
        self._next_due += self.interval_s
        self._tick = self._clock.callLater(max(0.0, self._next_due - now), self._beat)
        self._send(self.seq)

    def _expired(self) -> None:
        self._deadline = None
        self.stop()
        self._on_dead()
