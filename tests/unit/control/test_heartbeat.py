"""Heartbeat every 30 s and the 15 s reply deadline, on a task.Clock with exact times."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from callmeter.control.heartbeat import DEFAULT_INTERVAL_S, DEFAULT_TIMEOUT_S, HeartbeatMonitor


class Recorder:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, int]] = []
        self.dead: list[float] = []

    def send(self, seq: int) -> None:
        self.sent.append((self.clock.seconds(), seq))

    def on_dead(self) -> None:
        self.dead.append(self.clock.seconds())


def make(**kwargs: float) -> tuple[Clock, Recorder, HeartbeatMonitor]:
    clock = Clock()
    clock.advance(1000.0)
    rec = Recorder(clock)
    monitor = HeartbeatMonitor(clock, rec.send, rec.on_dead, **kwargs)
    return clock, rec, monitor


def advance_to(clock: Clock, t: float, step: float = 1.0) -> None:
    while clock.seconds() < t:
        clock.advance(min(step, t - clock.seconds()))


def test_defaults() -> None:
    assert (DEFAULT_INTERVAL_S, DEFAULT_TIMEOUT_S) == (30.0, 15.0)


def test_heartbeat_now_and_every_30_s_while_acked() -> None:
    clock, rec, monitor = make()
    monitor.start()
    for _ in range(4):
        advance_to(clock, clock.seconds() + 2.0)
        monitor.acknowledged(monitor.seq)  # the ack comes 2 s later
        advance_to(clock, rec.sent[-1][0] + 30.0)
    assert rec.sent == [(1000.0, 1), (1030.0, 2), (1060.0, 3), (1090.0, 4), (1120.0, 5)]
    assert rec.dead == []
    assert monitor.last_rtt_s == 2.0


def test_no_reply_within_15_s_is_a_dead_connection() -> None:
    clock, rec, monitor = make()
    monitor.start()
    clock.advance(1.0)
    monitor.acknowledged(1)
    advance_to(clock, 1030.0)  # heartbeat 2 goes out at 1030 ...
    advance_to(clock, 1044.9, 0.1)
    assert rec.dead == []
    advance_to(clock, 1046.0, 0.1)  # ... and nothing answers it by 1045
    assert rec.dead == [pytest.approx(1045.0)]
    assert not monitor.running
    advance_to(clock, 1200.0)
    assert [seq for _, seq in rec.sent] == [1, 2]  # stopped: no more heartbeats, dead once
    assert rec.dead == [pytest.approx(1045.0)]


def test_any_message_from_the_gateway_proves_the_connection() -> None:
    clock, rec, monitor = make()
    monitor.start()
    clock.advance(14.0)
    monitor.received()  # e.g. an ack for a metric window
    advance_to(clock, 1100.0)
    # heartbeat 2 at 1030 got no answer: dead at 1045
    assert rec.dead == [1045.0]


def test_a_message_before_the_heartbeat_does_not_count() -> None:
    clock, rec, monitor = make()
    monitor.start()
    monitor.acknowledged(1)
    advance_to(clock, 1029.0)
    monitor.received()  # before heartbeat 2 is sent
    advance_to(clock, 1046.0)
    assert rec.dead == [1045.0]


def test_late_ack_after_the_deadline_does_nothing() -> None:
    clock, rec, monitor = make()
    monitor.start()
    advance_to(clock, 1016.0)
    assert rec.dead == [1015.0]
    monitor.acknowledged(1)
    assert rec.dead == [1015.0] and not monitor.running


def test_stop_cancels_everything() -> None:
    clock, rec, monitor = make()
    monitor.start()
    monitor.stop()
    assert clock.getDelayedCalls() == []
    advance_to(clock, 1100.0)
    assert rec.sent == [(1000.0, 1)] and rec.dead == []


def test_start_twice_is_one_schedule() -> None:
    clock, rec, monitor = make()
    monitor.start()
    monitor.start()
    assert rec.sent == [(1000.0, 1)]
    assert len(clock.getDelayedCalls()) == 2  # next heartbeat, deadline


def test_ticks_do_not_drift_when_the_reactor_is_late() -> None:
    clock, rec, monitor = make(timeout_s=100.0)
    monitor.start()
    clock.advance(37.0)  # the reactor was busy: heartbeat 2 goes out 7 s late ...
    monitor.received()
    clock.advance(23.0)  # ... but heartbeat 3 is still at 1060
    assert rec.sent == [(1000.0, 1), (1037.0, 2), (1060.0, 3)]


def test_deadline_longer_than_interval_keeps_the_first_outstanding() -> None:
    clock, rec, monitor = make(interval_s=10.0, timeout_s=25.0)
    monitor.start()
    advance_to(clock, 1030.0)
    assert [seq for _, seq in rec.sent] == [1, 2, 3]
    assert rec.dead == [1025.0]


def test_interval_from_welcome() -> None:
    clock, rec, monitor = make(interval_s=5.0)
    monitor.start()
    for _ in range(3):
        clock.advance(5.0)
        monitor.acknowledged(monitor.seq)
    assert [t for t, _ in rec.sent] == [1000.0, 1005.0, 1010.0, 1015.0]


def test_stop_from_inside_send_is_safe() -> None:
    clock = Clock()
    monitor: HeartbeatMonitor

    def send(seq: int) -> None:
        monitor.stop()  # the transport was already closed

    monitor = HeartbeatMonitor(clock, send, lambda: None)
    monitor.start()
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize(("interval", "timeout"), [(0.0, 15.0), (30.0, 0.0), (-1.0, 15.0)])
def test_bad_times(interval: float, timeout: float) -> None:
    with pytest.raises(ValueError):
        HeartbeatMonitor(Clock(), lambda seq: None, lambda: None, interval, timeout)
