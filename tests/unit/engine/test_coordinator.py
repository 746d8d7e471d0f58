"""The multi-process coordinator (engine/processes.py) never waits for ever and names the
process that failed: fake worker processes on a fake clock, no real process started."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

import callmeter
from callmeter.config import Config, load_config
from callmeter.engine.processes import (
    KILL_AFTER_S,
    SETUP_S,
    STALL_S,
    RunFailed,
    ShardedRun,
    child_command,
)
from callmeter.plan import Plan, parse_plan


class FakeProcess:
    """The transport a ProcessProtocol gets: records what is written and signalled."""

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol
        self.written: list[dict[str, Any]] = []
        self.signals: list[str] = []
        self.stdin_closed = False

    def write(self, data: bytes) -> None:
        for line in data.splitlines():
            self.written.append(json.loads(line))

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)
        if name == "KILL":
            self.end(error.ProcessTerminated(signal=9))

    def end(self, reason: Exception) -> None:
        self.protocol.processEnded(Failure(reason))

    def say(self, message: dict[str, Any]) -> None:
        self.protocol.outReceived(json.dumps(message).encode() + b"\n")

    def types(self) -> list[str]:
        return [message["type"] for message in self.written]


class ProcessReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.processes: list[FakeProcess] = []
        self.argv: list[list[str]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], **kw: Any) -> Any:
        process = FakeProcess(protocol)
        protocol.makeConnection(process)
        self.processes.append(process)
        self.argv.append(list(args))
        return process


def plan() -> Plan:
    data = {
        "name": "shards",
        "duration_s": 10,
        "groups": [
            {"name": "callees", "role": "callee", "count": 2, "user": "in-{i}"},
            {
                "name": "callers",
                "role": "caller",
                "count": 2,
                "user": "out-{i}",
                "call": {"to": "callees", "duration_s": 2, "rate_per_s": 1},
            },
        ],
    }
    return parse_plan(data, max_endpoints=100)


def config() -> Config:
    env = {"SIP_IP": "127.0.0.1", "SIP_PORT": "5070", "RTP_PORT_MIN": "20000"}
    return load_config(env, require_token=False, local_address=lambda _: True)


def started(processes: int = 2) -> tuple[ProcessReactor, ShardedRun, list[Any]]:
    reactor = ProcessReactor()
    run = ShardedRun(plan(), config(), reactor, processes, environ={})
    outcome: list[Any] = []
    run.start().addBoth(outcome.append)
    return reactor, run, outcome


def test_children_run_the_coordinators_own_package_not_the_current_directory() -> None:
    """``python -m`` would put the current directory first on sys.path (a source tree with
    no compiled extension there shadowed the installed package): -P and an explicit root."""
    reactor, _, _ = started()
    for argv in reactor.argv:
        assert argv[:3] == [sys.executable, "-P", "-c"]
        assert "-m" not in argv
    assert child_command()[-1] == str(Path(callmeter.__file__).resolve().parents[1])


def test_port_in_use_in_one_child_fails_the_run_as_configuration_and_stops_the_others() -> None:
    reactor, run, outcome = started()
    first, second = reactor.processes
    second.say({"type": "ready", "port": 40000})
    reason = "cannot listen for SIP on 127.0.0.1:5070: in use"
    first.say({"type": "error", "message": reason, "config": True})
    assert "begin" not in second.types()  # never begun: the run cannot be whole
    assert second.types()[-1] == "cancel" and second.stdin_closed
    first.end(error.ProcessDone(0))
    assert outcome == []  # waits for the other child to exit
    second.say({"type": "error", "message": "cancelled before the plan was set up"})
    second.end(error.ProcessDone(0))
    [failure] = outcome
    assert isinstance(failure.value, RunFailed) and failure.value.config
    assert "worker 0: cannot listen for SIP on 127.0.0.1:5070" in str(failure.value)


def test_a_child_that_dies_is_named_with_its_exit_status_and_last_error_line() -> None:
    reactor, _, outcome = started()
    first, second = reactor.processes
    first.protocol.errReceived(b'Traceback (most recent call last):\n  File "x", line 1\n')
    first.protocol.errReceived(b"ModuleNotFoundError: No module named 'callmeter.rtp._fa")
    first.protocol.errReceived(b"stpath'\n")
    first.end(error.ProcessTerminated(exitCode=1))
    second.end(error.ProcessDone(0))
    [failure] = outcome
    assert str(failure.value) == (
        "worker 0 exited before its report (exit code 1): "
        "ModuleNotFoundError: No module named 'callmeter.rtp._fastpath'"
    )
    assert not failure.value.config


def test_a_child_that_is_never_ready_is_killed_after_the_setup_time() -> None:
    reactor, _, outcome = started()
    first, second = reactor.processes
    second.say({"type": "ready", "port": 40000})
    reactor.advance(SETUP_S - 1)
    assert first.signals == [] and outcome == []
    reactor.advance(2)
    assert first.signals == ["KILL"]
    reactor.advance(KILL_AFTER_S)
    assert second.signals == ["KILL"]  # it did not exit after the cancel either
    [failure] = outcome
    assert f"worker 0 was not ready after {SETUP_S:g} s" in str(failure.value)


def test_a_child_that_stops_talking_after_begin_is_killed_and_named() -> None:
    reactor, _, outcome = started()
    first, second = reactor.processes
    first.say({"type": "ready", "port": 40000})
    second.say({"type": "ready", "port": 40002})
    assert first.types()[-1] == "begin" and second.types()[-1] == "begin"
    for _ in range(int(STALL_S) + 2):  # the first keeps sending progress, the second is silent
        reactor.advance(1)
        first.say({"type": "progress", "elapsed_s": 1.0})
    assert second.signals == ["KILL"]
    assert first.types()[-1] == "cancel"
    first.say({"type": "done", "sets": {}, "calls": [], "elapsed": 3.0, "windows": 0})
    first.end(error.ProcessDone(0))
    [failure] = outcome
    assert "worker 1 stopped responding" in str(failure.value)


def test_abort_asks_for_an_immediate_report_then_kills_what_is_left() -> None:
    reactor, run, outcome = started()
    first, second = reactor.processes
    first.say({"type": "ready", "port": 40000})
    second.say({"type": "ready", "port": 40002})
    run.cancel()
    run.abort()
    assert first.types()[-2:] == ["cancel", "abort"]
    first.say({"type": "done", "sets": {}, "calls": [], "elapsed": 1.0, "windows": 0})
    first.end(error.ProcessDone(0))
    reactor.advance(KILL_AFTER_S + 0.1)
    assert second.signals == ["KILL"] and first.signals == []
    [failure] = outcome
    assert "worker 1 exited before its report (killed by SIGKILL)" in str(failure.value)


def test_a_cancelled_run_reports_interrupted_and_never_passes() -> None:
    reactor, run, outcome = started()
    for index, process in enumerate(reactor.processes):
        process.say({"type": "ready", "port": 40000 + index})
    run.cancel()
    for process in reactor.processes:
        process.say({"type": "done", "sets": {}, "calls": [], "elapsed": 2.5, "windows": 0})
        process.end(error.ProcessDone(0))
    [report] = outcome
    assert report["interrupted"] is True
    assert report["pass"]["passed"] is False
    assert report["pass"]["criteria"][-1]["criterion"] == "ran to the end (not interrupted)"


@pytest.mark.parametrize("level", ["warn", "error", "critical"])
def test_child_log_lines_are_re_emitted_with_their_level(level: str) -> None:
    from twisted.logger import LogLevel, globalLogPublisher

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        reactor, _, _ = started()
        line = {"level": level, "message": "out-1 did not register: 403", "traceback": "TB"}
        reactor.processes[1].protocol.errReceived(json.dumps(line).encode() + b"\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    [event] = [e for e in events if e.get("message") == "out-1 did not register: 403"]
    assert event["log_level"] == LogLevel.levelWithName(level)
    assert event["index"] == 1 and event["traceback"] == "TB"
