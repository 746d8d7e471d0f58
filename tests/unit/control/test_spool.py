"""The window spool: numbering, cumulative acks, resend after reconnect, the bound, persistence."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.control.protocol import Ack, Finished, Metrics, parse_message
from callmeter.control.spool import WindowSpool


def window(spool: WindowSpool, run: str = "r1", n: int = 0) -> Metrics:
    start = 1000.0 + 5 * n
    return spool.append(run, start, start + 5, {"callers": {"n": n}}, {"n": n})


def seqs(items: list[Metrics | Finished]) -> list[tuple[str, int | str]]:
    return [(m.run, m.seq if isinstance(m, Metrics) else "finished") for m in items]


class FakeGateway:
    """Stores windows by (run, seq) idempotently, records dropped ranges, acks cumulatively
    the highest seq with nothing missing below it (docs/protocol.md)."""

    def __init__(self) -> None:
        self.windows: dict[str, dict[int, Metrics | None]] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.received = 0

    def receive(self, message: Metrics | Finished) -> Ack:
        self.received += 1
        message = parse_message(message.to_json())  # type: ignore[assignment]
        stored = self.windows.setdefault(message.run, {})
        if message.dropped is not None:
            for seq in range(message.dropped[0], message.dropped[1] + 1):
                stored.setdefault(seq, None)  # a placeholder only where nothing arrived
        if isinstance(message, Metrics):
            stored[message.seq] = message
        upto = 0
        while upto + 1 in stored:
            upto += 1
        done = False
        if isinstance(message, Finished) and upto == message.windows:
            self.reports[message.run] = message.report
            done = True
        return Ack(message.run, upto, finished=done)


def test_windows_are_numbered_per_run_from_1() -> None:
    spool = WindowSpool(10)
    assert [window(spool, "a", i).seq for i in range(3)] == [1, 2, 3]
    assert window(spool, "b").seq == 1
    assert spool.last_seq("a") == 3 and spool.last_seq("b") == 1 and spool.last_seq("z") == 0
    assert seqs(spool.pending()) == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]


def test_cumulative_ack_forgets_everything_up_to_seq() -> None:
    spool = WindowSpool(10)
    for i in range(5):
        window(spool, n=i)
    spool.ack(Ack("r1", 3))
    assert seqs(spool.pending()) == [("r1", 4), ("r1", 5)]
    assert len(spool) == 2
    spool.ack(Ack("r1", 2))  # an older ack arriving late changes nothing
    assert seqs(spool.pending()) == [("r1", 4), ("r1", 5)]
    spool.ack(Ack("r1", 99))  # beyond the last: everything
    assert spool.pending() == [] and len(spool) == 0
    assert window(spool).seq == 6  # numbering goes on
    spool.ack(Ack("unknown-run", 5))


def test_connection_drops_reconnect_resend() -> None:
    """Windows 1-2 acked, 3 sent but its ack lost with the connection, 4-6 made while
    disconnected: after reconnect 3-6 are resent, the gateway ends with 1-6, no gap, no
    duplicate, and the spool is empty."""
    spool = WindowSpool(100)
    gateway = FakeGateway()
    for i in range(3):
        ack = gateway.receive(window(spool, n=i))
        if i < 2:
            spool.ack(ack)  # the third ack is lost when the connection drops
    for i in range(3, 6):
        window(spool, n=i)  # disconnected: kept, not sent
    resend = spool.pending()
    assert seqs(resend) == [("r1", 3), ("r1", 4), ("r1", 5), ("r1", 6)]
    for message in resend:
        spool.ack(gateway.receive(message))
    assert sorted(gateway.windows["r1"]) == [1, 2, 3, 4, 5, 6]
    assert all(w is not None for w in gateway.windows["r1"].values())
    assert spool.pending() == []
    finished = spool.finish("r1", {"total": {}})
    assert finished.windows == 6
    spool.ack(gateway.receive(finished))
    assert gateway.reports["r1"] == {"total": {}}
    assert list(spool.runs()) == []


def test_finished_is_kept_until_acknowledged_and_comes_after_the_windows() -> None:
    spool = WindowSpool(10)
    window(spool)
    window(spool, n=1)
    spool.finish("r1", {"ok": True})
    assert seqs(spool.pending()) == [("r1", 1), ("r1", 2), ("r1", "finished")]
    spool.ack(Ack("r1", 2))  # windows stored, finished not yet
    assert seqs(spool.pending()) == [("r1", "finished")]
    spool.ack(Ack("r1", 2, finished=True))
    assert spool.pending() == []
    assert list(spool.runs()) == []


def test_no_window_after_finished_and_no_second_finished() -> None:
    spool = WindowSpool(3)
    spool.finish("r", {})
    with pytest.raises(ValueError, match="finished"):
        window(spool, "r")
    with pytest.raises(ValueError, match="already finished"):
        spool.finish("r", {})


def test_finished_ack_before_all_windows_keeps_the_run() -> None:
    spool = WindowSpool(10)
    window(spool)
    window(spool, n=1)
    spool.finish("r1", {})
    spool.ack(Ack("r1", 1, finished=True))  # not all windows: the run stays
    assert seqs(spool.pending()) == [("r1", 2), ("r1", "finished")]
    spool.ack(Ack("r1", 0, finished=True))  # a finished ack with no finished message yet
    assert spool.last_seq("r1") == 2


def test_the_bound_drops_the_oldest_and_reports_the_range() -> None:
    spool = WindowSpool(3)
    for i in range(7):
        window(spool, n=i)
    assert len(spool) == 3
    pending = spool.pending()
    assert seqs(pending) == [("r1", 5), ("r1", 6), ("r1", 7)]
    assert isinstance(pending[0], Metrics)
    assert pending[0].dropped == (1, 4)
    assert [m.dropped for m in pending[1:]] == [None, None]
    assert spool.dropped_count("r1") == 4
    assert json.loads(pending[0].to_json())["dropped"] == [1, 4]


def test_drop_range_starts_after_what_the_gateway_acknowledged() -> None:
    spool = WindowSpool(3)
    for i in range(3):
        window(spool, n=i)
    spool.ack(Ack("r1", 1))
    for i in range(3, 6):
        window(spool, n=i)  # 6 windows numbered, 1 acked, bound 3: 2 and 3 dropped
    pending = spool.pending()
    assert seqs(pending) == [("r1", 4), ("r1", 5), ("r1", 6)]
    assert isinstance(pending[0], Metrics) and pending[0].dropped == (2, 3)
    # The gateway stored 2 before the connection dropped and acks it: the range shrinks.
    spool.ack(Ack("r1", 2))
    assert spool.pending()[0].dropped == (3, 3)
    spool.ack(Ack("r1", 4))
    assert [m.dropped for m in spool.pending()] == [None, None]


def test_a_new_gap_after_an_acknowledged_one_starts_afresh() -> None:
    spool = WindowSpool(2)
    for i in range(4):
        window(spool, n=i)  # 1, 2 dropped
    spool.ack(Ack("r1", 4))
    for i in range(4, 8):
        window(spool, n=i)  # 5, 6 dropped
    assert spool.pending()[0].dropped == (5, 6)
    assert spool.dropped_count("r1") == 4


def test_the_returned_window_carries_the_gap_when_it_is_the_only_one_kept() -> None:
    spool = WindowSpool(1)
    window(spool)
    assert window(spool, n=1).dropped == (1, 1)
    assert window(spool, n=2).dropped == (1, 2)


def test_a_gap_with_no_later_window_rides_on_finished() -> None:
    spool = WindowSpool(2)
    window(spool, "a")
    window(spool, "a", 1)
    spool.finish("a", {})
    window(spool, "b")
    window(spool, "b", 1)  # the bound is shared: a's windows go first
    pending = spool.pending()
    assert seqs(pending) == [("a", "finished"), ("b", 1), ("b", 2)]
    assert isinstance(pending[0], Finished) and pending[0].dropped == (1, 2)
    gateway = FakeGateway()
    spool.ack(gateway.receive(pending[0]))
    assert gateway.windows["a"] == {1: None, 2: None}
    assert gateway.reports["a"] == {}
    assert seqs(spool.pending()) == [("b", 1), ("b", 2)]


@given(
    st.integers(1, 8),
    st.lists(
        st.one_of(
            st.just(("window",)),
            st.tuples(st.just("deliver"), st.integers(0, 5)),
            st.just(("drop",)),
        ),
        max_size=40,
    ),
)
def test_gateway_ends_with_every_window_once_real_or_marked_dropped(
    bound: int, steps: list[tuple[Any, ...]]
) -> None:
    """Random appends, connection drops and partial deliveries: at the end, after a final
    resend, the gateway has windows 1..N with no gap, the ones missing are exactly what the
    spool counted as dropped at most, and the spool is empty."""
    spool = WindowSpool(bound)
    gateway = FakeGateway()
    connected: list[Metrics | Finished] = []  # in flight on the current connection
    n = 0
    for step in steps:
        if step[0] == "window":
            connected.append(window(spool, n=n))
            n += 1
        elif step[0] == "deliver":
            for message in connected[: step[1]]:
                spool.ack(gateway.receive(message))
            del connected[: step[1]]
        else:  # the connection drops, then reconnects: in-flight frames are lost
            connected = list(spool.pending())
    for message in spool.pending():
        spool.ack(gateway.receive(message))
    assert spool.pending() == []
    stored = gateway.windows.get("r1", {})
    assert sorted(stored) == list(range(1, n + 1))
    placeholders = sum(1 for w in stored.values() if w is None)
    assert placeholders <= spool.dropped_count("r1")
    for seq, w in stored.items():
        assert w is None or w.seq == seq


def test_on_change_and_restore_after_a_restart() -> None:
    saved: list[str] = []
    spool = WindowSpool(3, on_change=lambda s: saved.append(json.dumps(s.to_dict())))
    for i in range(5):
        window(spool, n=i)
    spool.ack(Ack("r1", 3))
    spool.finish("r1", {"mos": 4.2})
    spool.ack(Ack("r1", 0))  # changes nothing: no save
    assert len(saved) == 7  # 5 appends, 1 useful ack, 1 finish
    restored = WindowSpool.from_dict(json.loads(saved[-1]), max_windows=3)
    assert restored.pending() == spool.pending()
    assert restored.dropped_count("r1") == 2
    assert restored.last_seq("r1") == 5
    with pytest.raises(ValueError, match="finished"):
        window(restored)


def test_restore_into_a_smaller_bound_drops_the_oldest() -> None:
    spool = WindowSpool(10)
    for i in range(6):
        window(spool, n=i)
    restored = WindowSpool.from_dict(spool.to_dict(), max_windows=2)
    assert seqs(restored.pending()) == [("r1", 5), ("r1", 6)]
    assert restored.pending()[0].dropped == (1, 4)
    assert window(restored, n=6).seq == 7


@pytest.mark.parametrize(
    "state",
    [{}, {"version": 9, "runs": []}, {"version": 1}, {"version": 1, "runs": [{"run": "r"}]}],
)
def test_restore_refuses_a_bad_state(state: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="spool state"):
        WindowSpool.from_dict(state, max_windows=3)


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WindowSpool(0)
