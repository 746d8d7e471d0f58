"""The parts of ``callmeter run`` that decide what the user is told: output paths checked
before the run, results kept when a write fails, stop signals, the console log, causes."""

from __future__ import annotations

import io
import signal
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel

from callmeter.console_log import BURST, PERIOD_S, ConsoleLogObserver
from callmeter.engine.causes import failure_cause, unfinished_cause
from callmeter.runner import ABORT_S, GRACEFUL_S, _save, _Stopper, check_output_path
from callmeter.sip.transport import Target

# -- output paths ---------------------------------------------------------------------------


def test_output_paths_are_checked_before_the_run(tmp_path: Path) -> None:
    assert check_output_path(str(tmp_path / "report.json")) is None
    assert check_output_path(str(tmp_path)) == "is a directory"
    missing = tmp_path / "no" / "such"
    assert check_output_path(str(missing / "r.json")) == f"directory {missing} does not exist"
    assert check_output_path("relative-in-cwd.json") is None


def test_a_write_that_fails_after_the_run_keeps_the_results_elsewhere(tmp_path: Path) -> None:
    err = io.StringIO()
    gone = tmp_path / "gone"  # checked before the run, removed during it
    _save(str(gone / "r.json"), "--report", err, lambda handle: handle.write('{"x": 1}\n'))
    message = err.getvalue()
    assert message.startswith(f"callmeter: cannot write --report {gone}/r.json: ")
    fallback = Path(message.rsplit("written to ", 1)[1].split(" instead")[0])
    try:
        assert fallback.read_text() == '{"x": 1}\n'
        assert fallback.suffix == ".json"
    finally:
        fallback.unlink()


# -- stop signals ---------------------------------------------------------------------------


class RecordingRun:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def cancel(self) -> defer.Deferred[dict[str, Any]]:
        self.calls.append("cancel")
        return defer.Deferred()

    def abort(self) -> defer.Deferred[dict[str, Any]]:
        self.calls.append("abort")
        return defer.Deferred()


class RecordingDisplay:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.console = self

    def stop(self) -> None:
        pass

    def print(self, text: str) -> None:
        self.lines.append(text)


def stopper() -> tuple[MemoryReactorClock, RecordingRun, RecordingDisplay, _Stopper]:
    reactor, run, display = MemoryReactorClock(), RecordingRun(), RecordingDisplay()
    return reactor, run, display, _Stopper(reactor, run, display)  # type: ignore[arg-type]


def test_first_signal_stops_cleanly_second_at_once() -> None:
    reactor, run, display, stop = stopper()
    stop.signal(signal.SIGINT)
    assert run.calls == ["cancel"]
    assert display.lines[0].startswith("interrupted (SIGINT): hanging up")
    stop.signal(signal.SIGINT)
    assert run.calls == ["cancel", "abort"]
    assert "stopping at once" in display.lines[1]


def test_a_clean_stop_that_takes_too_long_becomes_an_abort_then_gives_up() -> None:
    reactor, run, display, stop = stopper()
    gave_up: list[Any] = []
    stop.gave_up.addErrback(gave_up.append)
    stop.signal(signal.SIGTERM)
    reactor.advance(GRACEFUL_S - 0.1)
    assert run.calls == ["cancel"]
    reactor.advance(0.2)
    assert run.calls == ["cancel", "abort"]
    reactor.advance(ABORT_S)
    assert len(gave_up) == 1
    assert "did not stop within" in str(gave_up[0].value)


def test_a_run_that_finishes_cancels_the_deadlines() -> None:
    reactor, run, display, stop = stopper()
    stop.signal(signal.SIGTERM)
    stop.finished()
    reactor.advance(GRACEFUL_S + ABORT_S + 1)
    assert run.calls == ["cancel"]
    assert not stop.gave_up.called
    stop.signal(signal.SIGINT)  # a signal after the end changes nothing
    assert run.calls == ["cancel"]


# -- the console log ------------------------------------------------------------------------


def event(fmt: str, level: LogLevel = LogLevel.warn, **fields: Any) -> dict[str, Any]:
    return {"log_format": fmt, "log_level": level, "log_namespace": "test", **fields}


def test_console_log_shows_warnings_and_rate_limits_each_kind() -> None:
    now = [0.0]
    lines: list[str] = []
    observer = ConsoleLogObserver(lines.append, clock=lambda: now[0])
    observer(event("an info line", LogLevel.info))
    for user in range(10):
        observer(event("{user} did not register", user=user))
    observer(event("another kind"))
    assert lines == [
        "callmeter: warning: 0 did not register\n",
        "callmeter: warning: 1 did not register\n",
        "callmeter: warning: 2 did not register\n",
        "callmeter: warning: another kind\n",
    ]
    assert BURST == 3
    now[0] = PERIOD_S
    observer(event("{user} did not register", LogLevel.error, user=99))
    assert lines[4:] == [
        "callmeter: error: (7 more like this were left out, the last:) 9 did not register\n",
        "callmeter: error: 99 did not register\n",
    ]


def test_worker_lines_are_one_kind_whatever_their_numbers() -> None:
    lines: list[str] = []
    observer = ConsoleLogObserver(lines.append, clock=lambda: 0.0)
    for user in range(5):
        observer(
            {
                "log_format": "worker {index}: {message}",
                "log_level": LogLevel.warn,
                "log_namespace": "callmeter.engine.processes._ChildProtocol",
                "index": user % 2,
                "message": f"10{user} did not register: no answer from 127.0.0.1:5060 over UDP",
            }
        )
    assert len(lines) == BURST
    observer.flush()
    assert lines[-1] == (
        "callmeter: warning: (2 more like this were left out, the last:) "
        "worker 0: 104 did not register: no answer from 127.0.0.1:5060 over UDP\n"
    )


# -- causes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "target", "expected"),
    [
        (
            408,
            "timeout",
            Target("udp", "127.0.0.1", 5060),
            "no answer from 127.0.0.1:5060 over UDP",
        ),
        (
            503,
            "transport error",
            Target("tcp", "::1", 5070),
            "transport error to [::1]:5070 over TCP (refused or unreachable)",
        ),
        (403, "Forbidden", Target("tls", "pbx.test", 5061), "403 Forbidden from pbx.test:5061"),
        (486, "Busy Here", None, "486 Busy Here"),
    ],
)
def test_failure_causes_read_like_a_sip_engineers_note(
    code: int, reason: str, target: Target | None, expected: str
) -> None:
    assert failure_cause(code, reason, target) == expected


def test_unfinished_requests_say_the_run_ended() -> None:
    assert unfinished_cause("REGISTER", Target("udp", "10.0.0.1", 5060)) == (
        "no final answer from 10.0.0.1:5060 over UDP before the run ended (REGISTER)"
    )
