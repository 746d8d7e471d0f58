"""The process-wide pacer on a task.Clock: exact send times, backlog, skip-ahead, removal."""

from __future__ import annotations

import select
from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.rtp.pacer import Lateness, Pacer


class Source:
    """A sender of one packet every ``interval`` from ``start``, due times from the clock."""

    def __init__(self, start: float, interval: float = 0.02) -> None:
        self.start = start
        self.interval = interval
        self.n = 0
        self.sent: list[tuple[float, float]] = []  # (due, actual)

    def due(self) -> float:
        return self.start + self.n * self.interval

    def first_due(self) -> float:
        return self.due()

    def pace(self, now: float) -> float:
        while self.due() <= now:
            self.sent.append((self.due(), now))
            self.n += 1
        return self.due()


def make(tick: float = 0.001, **kw: float) -> tuple[Clock, Pacer]:
    clock = Clock()
    clock.advance(100.0)
    return clock, Pacer(clock, tick=tick, **kw)


def run(clock: Clock, seconds: float, step: float = 0.0005) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)


def test_sends_each_packet_at_its_due_time() -> None:
    clock, pacer = make()
    source = Source(100.005)
    pacer.add(source)
    run(clock, 0.1)
    dues = [d for d, _ in source.sent]
    assert dues == pytest.approx([100.005 + 0.02 * k for k in range(5)])
    # The timer fires at bucket boundaries: each packet leaves within one tick of its due time.
    assert all(0 <= actual - due < 0.001 + 1e-9 for due, actual in source.sent)


def test_one_timer_for_all_sources() -> None:
    clock, pacer = make()
    sources = [Source(100.0 + k * 0.0003) for k in range(50)]
    for source in sources:
        pacer.add(source)
    assert len(clock.getDelayedCalls()) == 1
    run(clock, 0.199)
    assert len(clock.getDelayedCalls()) == 1
    assert [len(s.sent) for s in sources] == [10] * 50


def test_idle_pacer_sleeps_until_the_next_packet() -> None:
    clock, pacer = make()
    pacer.add(Source(100.0, interval=0.02))
    run(clock, 0.0005)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() == pytest.approx(100.02)  # not every tick with one 50 pps source


def test_late_tick_sends_the_backlog_by_the_clock() -> None:
    clock, pacer = make()
    source = Source(100.0)
    pacer.add(source)
    clock.advance(0.0)
    assert len(source.sent) == 1
    clock.advance(0.065)  # one late wake-up: 20, 40 and 60 ms are due
    assert [round(d - 100.0, 3) for d, _ in source.sent] == [0.0, 0.02, 0.04, 0.06]
    assert all(actual == pytest.approx(100.065) for _, actual in source.sent[1:])


def test_rate_is_kept_however_the_ticks_fall() -> None:
    """A LoopingCall skips missed ticks; the clock-driven pacer keeps 50 packets/s."""
    clock, pacer = make(tick=0.001)
    source = Source(100.0)
    pacer.add(source)
    for k in range(1000):
        clock.advance(0.0007 if k % 3 else 0.0031)  # irregular, some ticks 3 ms late
    elapsed = clock.seconds() - 100.0
    assert len(source.sent) == int(elapsed / 0.02) + 1


def test_remove_stops_sending_and_the_timer() -> None:
    clock, pacer = make()
    source = Source(100.0)
    pacer.add(source)
    run(clock, 0.05)
    pacer.remove(source)
    sent = len(source.sent)
    run(clock, 0.1)
    assert len(source.sent) == sent
    assert clock.getDelayedCalls() == []
    assert source not in pacer
    pacer.remove(source)  # idempotent


def test_add_twice_is_refused() -> None:
    clock, pacer = make()
    source = Source(100.0)
    pacer.add(source)
    with pytest.raises(ValueError):
        pacer.add(source)


def test_far_future_source_waits_for_a_turn_of_the_wheel() -> None:
    clock, pacer = make(horizon=0.064)
    source = Source(100.5)  # beyond the 64 ms wheel
    pacer.add(source)
    run(clock, 0.499)
    assert source.sent == []
    run(clock, 0.002)
    assert len(source.sent) == 1


def test_a_failing_source_is_dropped_and_others_continue() -> None:
    clock, pacer = make()

    class Broken(Source):
        def pace(self, now: float) -> float:
            raise RuntimeError("boom")

    good, bad = Source(100.0), Broken(100.0)
    pacer.add(bad)
    pacer.add(good)
    run(clock, 0.05)
    assert pacer.failures == 1
    assert bad not in pacer
    assert len(good.sent) == 3


def test_removal_from_inside_a_tick_is_deferred_to_its_end() -> None:
    clock, pacer = make()

    class StopsItself(Source):
        def pace(self, now: float) -> float:
            due = super().pace(now)
            pacer.remove(self)
            return due

    source = StopsItself(100.0)
    pacer.add(source)
    run(clock, 0.1)
    assert len(source.sent) == 1
    assert len(pacer) == 0


def test_lateness_bins_and_histogram() -> None:
    late = Lateness(width=0.001, limit=0.01)
    for value in (0.0, 0.0004, 0.0025, 0.5):
        late.record(value)
    assert late.count == 4
    assert late.counts[0] == 2 and late.counts[2] == 1 and late.counts[-1] == 1
    hist = late.histogram()
    assert hist.count == 4
    assert hist.percentile(50) == pytest.approx(0.0005, rel=0.01)
    late.reset()
    assert late.count == 0


class FdClock(Clock):
    """A Clock that is also enough of an IReactorFDSet for the timerfd wake-up."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: list[Any] = []

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)


def test_precise_pacer_wakes_on_its_timerfd_only_while_it_has_sources() -> None:
    clock = FdClock()
    clock.advance(100.0)  # wall-clock times of 1970: the timerfd is always expired
    pacer = Pacer(clock, tick=0.001, precise=True)
    assert clock.readers == [] and clock.getDelayedCalls() == []
    source = Source(100.0)
    pacer.add(source)
    [timer] = clock.readers
    assert clock.getDelayedCalls() == []  # no callLater: the timerfd is the only timer
    assert select.select([timer.fileno()], [], [], 0)[0]  # armed for 100.0: readable
    timer.doRead()
    assert source.sent == [(100.0, 100.0)]
    clock.advance(0.02)
    timer.doRead()
    assert source.sent[1] == (100.02, 100.02)
    timer.doRead()  # re-armed for 100.04 (past for the timerfd), but nothing due at 100.02
    assert len(source.sent) == 2
    pacer.remove(source)
    assert clock.readers == []  # an idle pacer leaves no reader behind


def test_precise_pacer_lets_go_of_its_reader_when_the_last_source_fails() -> None:
    clock = FdClock()
    clock.advance(100.0)
    pacer = Pacer(clock, precise=True)

    class Broken(Source):
        def pace(self, now: float) -> float:
            raise RuntimeError("boom")

    pacer.add(Broken(100.0))
    clock.readers[0].doRead()
    assert pacer.failures == 1 and len(pacer) == 0 and clock.readers == []


def test_after_tick_hooks_run_once_per_tick_after_the_sends() -> None:
    clock, pacer = make()
    source = Source(100.0)
    seen: list[int] = []
    pacer.after_tick.append(lambda: seen.append(len(source.sent)))
    pacer.add(source)
    run(clock, 0.03)
    assert pacer.ticks == 2
    assert seen == [1, 2]  # once per tick, each time with that tick's packet already sent
