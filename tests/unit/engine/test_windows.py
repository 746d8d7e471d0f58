"""Metric windows sample the calls that are up in slices, so the reactor keeps running."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from callmeter.config import load_config
from callmeter.engine import run as run_module
from callmeter.engine.metrics import StreamResult
from callmeter.engine.run import SAMPLE_SLICE, TestRun
from callmeter.plan import parse_plan

EXAMPLE = Path(__file__).parents[3] / "examples" / "loopback.json"


class FakeMedia:
    """A call's media whose figures grow by 50 packets each way per sample."""

    def __init__(self, log: list[int], ident: int) -> None:
        self.log = log
        self.ident = ident
        self.packets = 0

    def results(self) -> list[StreamResult]:
        self.log.append(self.ident)
        self.packets += 50
        return [
            StreamResult(
                sent_packets=self.packets,
                sent_bytes=172 * self.packets,
                received_packets=self.packets,
                received_bytes=172 * self.packets,
                lost_packets=0,
                expected_packets=self.packets,
                jitter_ms=0.5,
                rtt_ms=None,
                mos=4.4,
            )
        ]


def make_run(calls: int) -> tuple[Clock, TestRun, list[int], list[dict[str, Any]]]:
    plan = parse_plan(json.loads(EXAMPLE.read_text()), max_endpoints=1000)
    config = load_config({"ALLOW_INSECURE_GATEWAY": "1"}, {}, require_token=False)
    clock = Clock()
    windows: list[dict[str, Any]] = []
    run = TestRun(plan, config, clock, None, on_window=windows.append)  # type: ignore[arg-type]
    sampled: list[int] = []
    for ident in range(calls):
        call = object()
        run.active.add(call)  # type: ignore[arg-type]
        run._media[call] = ("callers", FakeMedia(sampled, ident))  # type: ignore[index]
    return clock, run, sampled, windows


def test_a_window_samples_every_call_once_a_slice_per_reactor_turn() -> None:
    calls = 2 * SAMPLE_SLICE + 3
    clock, run, sampled, windows = make_run(calls)
    run._emit_window()
    assert len(sampled) == SAMPLE_SLICE and windows == []  # the rest waits for a turn
    (next_slice,) = [c for c in clock.getDelayedCalls() if c.getTime() == clock.seconds()]
    assert next_slice.args[1] == SAMPLE_SLICE  # resumes at the next call
    clock.advance(0)  # task.Clock runs the chained zero-delay slices in one advance
    assert sorted(sampled) == list(range(calls))  # each call once
    assert len(windows) == 1
    assert windows[0]["groups"]["callers"]["rtp"]["sent"]["packets"] == 50 * calls
    # The next window comes WINDOW_S later and counts only what is new.
    clock.advance(run.window_s)
    assert len(windows) == 2 and len(sampled) == 2 * calls
    assert windows[1]["groups"]["callers"]["rtp"]["sent"]["packets"] == 50 * calls


def test_stopping_cancels_the_slices_and_the_final_window_samples_all() -> None:
    clock, run, sampled, windows = make_run(SAMPLE_SLICE + 5)
    run._emit_window()
    run._stopping = True
    for timer in run._timers:
        timer.cancel()
    clock.advance(0)
    assert len(sampled) == SAMPLE_SLICE and windows == []
    run._window()  # the final window (TestRun._close): every call still in _media
    assert len(sampled) == 2 * SAMPLE_SLICE + 5


def test_slice_is_small() -> None:
    assert 1 <= run_module.SAMPLE_SLICE <= 50
