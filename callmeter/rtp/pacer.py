"""The process-wide RTP pacer: one timer drives every sender (ARCHITECTURE "Hot path rules").

Each sender (:class:`PacedSource`) knows the send time of its next packet from the clock,
``start + media_timestamp / clock_rate`` (RFC 3550 section 5.1: the timestamp reflects the
sampling instant), never from a count of ticks. The pacer keeps the sources in a timer
wheel of ``tick`` wide buckets (a hashed wheel: bucket ``c`` holds the sources due in
``((c - 1) * tick, c * tick]``; O(1) to file a source, O(due sources) per wake-up) and runs
ONE ``reactor.callLater`` that it re-arms itself:

* it wakes at the boundary of the earliest non-empty bucket, walks the buckets from the
  last one it finished up to ``now`` and calls ``source.pace(now)`` on every source filed
  there (with the clock read afresh per bucket); the source sends every packet due by
  ``now`` -- the backlog too, if the wake-up came late -- and returns its next due time;
* it files the source again under that time and sleeps until the next non-empty bucket
  (at load: every ``tick``), and not at all when no source is left.

The sleep is a ``callLater`` by default. With ``precise=True`` (the engine's choice) it is a
Linux timerfd (:class:`TimerFdWakeup`) watched by the reactor: the reactor's own timeout is
an epoll timeout, whole milliseconds rounded up, so a 0.5 ms sleep took 1 ms and packets
left up to a millisecond after their bucket; a timerfd wakes the reactor at the bucket's
boundary.

A source that finds itself more than ``max_late`` behind (the process stalled) skips
ahead instead of bursting the backlog into the network, and counts what it skipped.

Send lateness (actual clock minus due time, per packet) goes into :class:`Lateness`, a
linear array of 50 us bins updated with one index computation per packet; it converts to a
:class:`callmeter.quality.histogram.Histogram` for reports.

Nothing here allocates per packet, logs, or creates Deferreds; the reactor and clock are
injected (``twisted.internet.task.Clock`` in tests).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from math import ceil as _ceil
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from callmeter.quality.histogram import Histogram
from callmeter.rtp._fastpath import TimerFd

__all__ = [
    "DEFAULT_MAX_LATE",
    "DEFAULT_TICK",
    "CallLaterWakeup",
    "Lateness",
    "PacedSource",
    "Pacer",
    "TimerFdWakeup",
    "Wakeup",
]

#: Minimum time between two wake-ups of the pacer, seconds. bench/rtp_load.py at 1,000
#: streams, alternating runs: 1 ms on the timerfd, p99 lateness 0.97-1.27 ms; 0.5 ms, 0.52-0.62
#: ms for 0.06 of a core more; 1 ms on callLater (epoll's whole-ms timeout), 1.97 ms. A
#: stream's due times keep their phase in the bucket, so the tick moves the mean lateness,
#: hardly the jitter.
DEFAULT_TICK = 0.001
#: A source further behind than this skips ahead rather than bursting, seconds.
DEFAULT_MAX_LATE = 0.2


class PacedSource(Protocol):
    """What the pacer drives: an RTP sender that knows when its next packet is due."""

    def first_due(self) -> float:
        """Clock time at which the first packet is due (called once, by :meth:`Pacer.add`)."""

    def pace(self, now: float) -> float:
        """Send every packet due by ``now``; return the next packet's due time."""


class Wakeup(Protocol):
    """How the pacer sleeps: one pending wake-up, moved earlier when needed."""

    def at(self, when: float, now: float) -> None:
        """Call back at ``when`` (at once if past), unless already due no later than that."""

    def cancel(self) -> None:
        """Forget the pending wake-up."""


class CallLaterWakeup:
    """A :class:`Wakeup` made of ``reactor.callLater`` (any IReactorTime, ``Clock`` too)."""

    def __init__(self, reactor: IReactorTime, callback: Callable[[], None]) -> None:
        self._reactor = reactor
        self._callback = callback
        self._call: IDelayedCall | None = None

    def at(self, when: float, now: float) -> None:
        call = self._call
        if call is not None and call.active():
            if call.getTime() <= when:
                return
            call.cancel()
        self._call = self._reactor.callLater(max(when - now, 0.0), self._fire)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _fire(self) -> None:
        self._call = None
        self._callback()


class TimerFdWakeup:
    """A :class:`Wakeup` on a Linux timerfd, an IReadDescriptor of the reactor (IReactorFDSet).

    Exact to the timer's resolution, where the reactor's epoll timeout is whole
    milliseconds. The reactor watches the descriptor from the first :meth:`at` until
    :meth:`cancel` (the pacer cancels when its last source goes): an idle pacer leaves no
    reader behind.
    """

    def __init__(self, reactor: Any, callback: Callable[[], None]) -> None:
        self._reactor = reactor
        self._callback = callback
        self._timer = TimerFd()
        self._armed: float | None = None
        self._watching = False

    def at(self, when: float, now: float) -> None:
        if self._armed is not None and self._armed <= when:
            return
        if not self._watching:
            self._watching = True
            self._reactor.addReader(self)
        self._armed = when
        self._timer.arm(when)

    def cancel(self) -> None:
        if self._armed is not None:
            self._armed = None
            self._timer.disarm()
        if self._watching:
            self._watching = False
            self._reactor.removeReader(self)

    # IReadDescriptor
    def fileno(self) -> int:
        return self._timer.fileno()

    def doRead(self) -> None:
        self._timer.read()  # clears the readiness
        if self._armed is None:
            return  # cancelled after it had expired
        self._armed = None
        self._callback()

    def logPrefix(self) -> str:
        return "PacerTimer"

    def connectionLost(self, reason: object) -> None:
        return None


class Lateness:
    """Per-packet send lateness in fixed 50 us bins from 0 to ``limit`` seconds.

    ``counts[i]`` counts packets sent between ``i`` and ``i + 1`` bins late; the last bin
    holds everything later. Packets sent early (negative lateness) land in bin 0. One
    integer index and one store per packet: cheap enough for the hot path. ``counts`` is an
    ``array('q')``: the C send path (:class:`~callmeter.rtp._fastpath.SendState`) writes it.
    """

    __slots__ = ("bins", "counts", "inv_width", "last", "skipped", "width")

    def __init__(self, width: float = 50e-6, limit: float = DEFAULT_MAX_LATE) -> None:
        if width <= 0 or limit <= width:
            raise ValueError("need 0 < width < limit")
        self.width = width
        self.inv_width = 1.0 / width
        # Every lateness in [0, limit] has its own bin (the sender relies on it, no clamp).
        self.bins = int(limit * self.inv_width) + 2
        self.last = self.bins - 1
        self.counts = array("q", bytes(8 * self.bins))
        self.skipped = 0

    def record(self, late: float) -> None:
        """Count one packet sent ``late`` seconds after it was due (not the hot path's way)."""
        index = int(late * self.inv_width)
        self.counts[0 if index < 0 else min(index, self.last)] += 1

    @property
    def count(self) -> int:
        """Packets recorded."""
        return sum(self.counts)

    def histogram(self) -> Histogram:
        """The counts as a :class:`Histogram` of seconds, each bin at its midpoint."""
        out = Histogram()
        half = self.width / 2
        for index, n in enumerate(self.counts):
            if n:
                out.record(index * self.width + half, n)
        return out

    def reset(self) -> None:
        """Start counting afresh (for instance after a warm-up); senders keep the list."""
        for index in range(self.bins):
            self.counts[index] = 0
        self.skipped = 0


class Pacer:
    """One per process: a single re-armed ``callLater`` that sends for every source.

    ``tick`` is the width of a wheel bucket: the pacer wakes at bucket boundaries (at most
    once per ``tick``) and sends what is due by then, so a packet leaves at most one tick
    plus the reactor's wake-up latency after its due time; ``horizon`` the time the wheel
    covers (sources due later stay filed and are looked at
    once per turn of the wheel). ``precise`` sleeps on a :class:`TimerFdWakeup` (the
    reactor must also be an IReactorFDSet) instead of ``callLater``.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        tick: float = DEFAULT_TICK,
        horizon: float = 1.024,
        max_late: float = DEFAULT_MAX_LATE,
        precise: bool = False,
    ) -> None:
        if tick <= 0 or max_late <= 0:
            raise ValueError("tick and max_late must be positive")
        slot = tick
        size = 1
        while size * slot < horizon:
            size *= 2
        self._reactor = reactor
        self.tick = tick
        self.slot = slot
        self.max_late = max_late
        self._inv_slot = 1.0 / slot
        self._mask = size - 1
        self._wheel: list[list[PacedSource]] = [[] for _ in range(size)]
        self._where: dict[PacedSource, int] = {}  # source -> absolute bucket index
        self._next = -1  # first bucket not yet fully walked; -1: none since idle
        self._wakeup: Wakeup = (
            TimerFdWakeup(reactor, self._tick) if precise else CallLaterWakeup(reactor, self._tick)
        )
        self._running = False
        self._removals: list[PacedSource] = []
        #: Called after every tick, e.g. the process's receive mux: a loopback peer's
        #: packets are queued by the end of the tick, and reading them then saves the
        #: reactor a turn (and a wake-up) per tick.
        self.after_tick: list[Callable[[], None]] = []
        self.lateness = Lateness(limit=max_late)
        self.ticks = 0
        self.failures = 0

    # --- registration -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, source: object) -> bool:
        return source in self._where

    def add(self, source: PacedSource) -> None:
        """Start driving ``source`` from its :meth:`PacedSource.first_due` time."""
        if source in self._where:
            raise ValueError("source already paced")
        now = self._reactor.seconds()
        if self._next < 0:
            self._next = int(now * self._inv_slot)
        self._file(source, source.first_due())
        self._arm(now)

    def remove(self, source: PacedSource) -> None:
        """Stop driving ``source`` (no-op if it is not paced).

        Called from inside a tick (a source's ``pace`` stopping a stream), the removal
        happens when the tick ends; the source must not send from then on.
        """
        if self._running:
            self._removals.append(source)
            return
        index = self._where.pop(source, None)
        if index is None:
            return
        bucket = self._wheel[index & self._mask]
        bucket.remove(source)  # O(bucket): removal is rare, per call, not per packet
        if not self._where:
            self._wakeup.cancel()
            self._next = -1

    def _file(self, source: PacedSource, due: float) -> None:
        index = int(due * self._inv_slot)
        if index < due * self._inv_slot:
            index += 1  # bucket c holds due times in ((c-1) slot, c slot]: all due at c
        if index < self._next:
            index = self._next
        self._where[source] = index
        self._wheel[index & self._mask].append(source)

    # --- the timer ----------------------------------------------------------------------

    def _arm(self, now: float) -> None:
        if self._running:
            return
        if not self._where:
            self._wakeup.cancel()  # the last source failed or went inside the tick
            return
        # Past (overloaded): run again at once; the reactor polls I/O in between.
        self._wakeup.at(self._earliest() * self.slot, now)

    def _earliest(self) -> int:
        """The first non-empty bucket from ``_next`` on (at most one turn of the wheel)."""
        wheel = self._wheel
        where = self._where
        mask = self._mask
        first = self._next
        for index in range(first, first + mask + 1):
            bucket = wheel[index & mask]
            if bucket:
                # A source filed a whole turn (or more) ahead shares the bucket: skip it.
                for source in bucket:
                    if where[source] <= index:
                        return index
        return first + mask + 1

    def _tick(self) -> None:
        self._running = True
        try:
            self._run(self._reactor.seconds())
        finally:
            self._running = False
            removals, self._removals = self._removals, []
            for source in removals:
                self.remove(source)
        for hook in self.after_tick:
            hook()
        self._arm(self._reactor.seconds())

    def _run(self, now: float) -> None:
        """Walk the buckets up to ``now``: every source filed there sends what is due."""
        self.ticks += 1
        wheel = self._wheel
        mask = self._mask
        where = self._where
        inv_slot = self._inv_slot
        current = int(now * inv_slot)
        start = self._next
        if current - start > mask:
            start = current - mask  # stalled for more than a turn: each bucket once
        seconds = self._reactor.seconds
        for index in range(start, current + 1):
            slot_index = index & mask
            bucket = wheel[slot_index]
            if not bucket:
                continue
            wheel[slot_index] = []
            self._next = index
            # A fresh clock per bucket: lateness includes the time spent on earlier ones.
            later = seconds()
            if later > now:
                now = later
            for source in bucket:
                try:
                    due = source.pace(now)
                except Exception:
                    # A broken source must not stop every other stream: drop it, once.
                    self.failures += 1
                    self._log.failure("RTP source failed; it is no longer paced")
                    del where[source]
                    continue
                target = _ceil(due * inv_slot)  # bucket c: due in ((c-1) slot, c slot]
                if target <= current:
                    target = current + 1  # a source must move on: no busy loop
                where[source] = target
                wheel[target & mask].append(source)
        self._next = current
