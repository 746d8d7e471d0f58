"""The gateway store: idempotent windows, cumulative contiguous seq, dropped ranges, restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from callmeter.gateway.store import Store


def result(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    (value,) = out
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def test_duplicates_ignored_and_contiguous_is_cumulative() -> None:
    store = Store(":memory:")
    assert result(store.add_window("r", 2, {"seq": 2, "v": "a"}, None)) == 0
    assert result(store.add_window("r", 1, {"seq": 1}, None)) == 2
    assert result(store.add_window("r", 2, {"seq": 2, "v": "b"}, None)) == 2
    assert result(store.windows_after("r", 0))[1] == {"seq": 2, "v": "a"}  # first copy kept
    assert result(store.add_window("r", 4, {"seq": 4}, None)) == 2
    assert result(store.add_window("r", 3, {"seq": 3}, None)) == 4
    assert result(store.contiguous("other")) == 0


def test_dropped_range_counts_as_present() -> None:
    store = Store(":memory:")
    result(store.add_window("r", 1, {"seq": 1}, None))
    assert result(store.add_window("r", 5, {"seq": 5}, (2, 4))) == 5
    windows = result(store.windows_after("r", 0))
    assert windows[1:4] == [{"seq": n, "dropped": True} for n in (2, 3, 4)]


def test_finish_keeps_the_first_report_and_cancel_state() -> None:
    store = Store(":memory:")
    result(store.create_run("r", {"name": "p"}, None, 1.0))
    result(store.update_run("r", state="running", worker="w", cancel_requested=True))
    assert result(store.finish_run("r", {"passed": False}, 0, None)) == 0
    result(store.finish_run("r", {"passed": True}, 0, None))
    info = result(store.get_run("r"))
    assert info["state"] == "cancelled" and info["report"] == {"passed": False}


def test_state_survives_a_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "gw.sqlite3")
    store = Store(path)
    result(store.create_run("r", {"name": "p", "groups": []}, "w", 1.0))
    result(store.add_window("r", 1, {"seq": 1}, None))
    result(store.close())
    again = Store(path)
    assert result(again.get_run("r"))["windows"] == 1
    assert result(again.queued_runs()) == [("r", {"name": "p", "groups": []}, "w")]
