"""``callmeter run PLAN``: one test on this machine, no gateway (SPEC.md "What the user does").

Exit codes: 0 when the plan's pass criteria hold, 1 when they do not (or the run could not
complete, or was interrupted), 2 for a bad plan or configuration (a field, a variable, a SIP
port in use, an output path that cannot be written), named before anything is sent.

Ctrl-C (SIGINT) or SIGTERM stops the test cleanly (BYE, un-REGISTER) and still writes the
report, marked interrupted (never a pass).  A second one, or a clean stop that takes longer than
:data:`GRACEFUL_S`, stops at once; if even that does not end the run within :data:`ABORT_S`, the
command gives up with exit 1.  Warnings and errors of every process reach stderr, each kind
rate-limited (:mod:`callmeter.console_log`); ``--log FILE`` keeps every level.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, task
from twisted.logger import ILogObserver, globalLogBeginner, globalLogPublisher
from twisted.python.failure import Failure

from callmeter.config import Config, ConfigError, load_config
from callmeter.console_log import ConsoleLogObserver
from callmeter.control.engine_api import Engine, MetricWindow, PreparedPlan, PrepareError, RunHandle
from callmeter.display import Display
from callmeter.engine import Engine as CallmeterEngine
from callmeter.engine import RunFailed
from callmeter.engine.run import MediaFactory
from callmeter.limits import raise_open_files_limit
from callmeter.logs import make_observer
from callmeter.plan import Plan, PlanError, parse_plan

__all__ = [
    "RunOptions",
    "check_output_path",
    "load_plan",
    "read_plan",
    "run_command",
    "window_for_display",
    "write_calls_csv",
]

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
#: Seconds a clean stop (BYE, un-REGISTER, the report) may take before it becomes an abort.
GRACEFUL_S = 15.0
#: Seconds an abort may take before the command gives up waiting for the run.
ABORT_S = 8.0


class RunOptions:
    def __init__(
        self,
        plan: str,
        report: str | None = None,
        json_output: bool = False,
        calls: str | None = None,
        overrides: Mapping[str, str | None] | None = None,
        plain: bool | None = None,
        processes: int = 1,
        log: str | None = None,
    ) -> None:
        self.plan = plan
        self.report = report
        self.json_output = json_output
        self.calls = calls
        self.overrides = dict(overrides or {})
        self.plain = plain
        self.processes = processes
        self.log = log


def check_output_path(path: str) -> str | None:
    """Why ``path`` cannot be written, checked before the run starts (None when it can)."""
    target = Path(path)
    if target.is_dir():
        return "is a directory"
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        return f"directory {parent} does not exist"
    if target.exists():
        if not os.access(target, os.W_OK):
            return "not writable"
    elif not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable"
    return None


def read_plan(path: str) -> Any:
    """A plan file's JSON (not yet validated); PlanError for a file that is not JSON, OSError."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PlanError(
            [f"plan: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"]
        ) from None


def load_plan(path: str, max_endpoints: int) -> Plan:
    """Read and validate a plan file; PlanError (with every problem) or OSError."""
    return parse_plan(read_plan(path), max_endpoints=max_endpoints)


def window_for_display(window: MetricWindow) -> dict[str, Any]:
    """A MetricWindow as the display reads it (``window["total"]["rtp"]``...)."""
    return {
        "start": window.start,
        "end": window.end,
        "groups": window.groups,
        "total": window.total,
    }


def run_command(
    options: RunOptions,
    environ: Mapping[str, str],
    out: IO[str],
    err: IO[str],
    media_factory: Callable[[Config, Plan, Any], MediaFactory] | None = None,
) -> int:
    """Validate, prepare and run the plan through the engine (callmeter.engine.Engine, as the
    daemon holds it) on a fresh reactor; print and write the results."""
    try:
        config = load_config(environ, options.overrides, require_token=False)
    except ConfigError as error:
        err.write(f"callmeter: {error}\n")
        return EXIT_BAD_INPUT
    from twisted.internet import reactor as default_reactor

    factory = None if media_factory is None else _files_ignored(media_factory)
    engine: Engine = CallmeterEngine(
        config,
        default_reactor,
        processes=options.processes,
        environ=environ,
        in_process=options.processes == 1,
        media_factory=factory,
    )
    try:
        data = read_plan(options.plan)
        problems = engine.validate(data)
    except OSError as error:
        err.write(f"callmeter: cannot read plan {options.plan}: {error.strerror or error}\n")
        return EXIT_BAD_INPUT
    except PlanError as error:
        problems = error.problems
    if problems:
        err.write(f"callmeter: invalid plan {options.plan}:\n")
        for problem in problems:
            err.write(f"  {problem}\n")
        return EXIT_BAD_INPUT

    outputs = (("--report", options.report), ("--calls", options.calls), ("--log", options.log))
    for flag, output in outputs:
        why = check_output_path(output) if output else None
        if why:
            err.write(f"callmeter: {flag} {output}: {why}\n")
            return EXIT_BAD_INPUT

    display = Display(err if options.json_output else out, plain=options.plain)
    outcome: dict[str, Any] = {}
    raise_open_files_limit()  # three sockets per RTP stream in this process (one process)
    observers = _start_logging(options, config, display, err)

    def main(reactor: Any) -> defer.Deferred[None]:
        # Media files first, once: a URL that 404s is a clear error before any call is made.
        preparing: defer.Deferred[Any] = engine.prepare(data)

        def refused(failure: Failure) -> None:
            failure.trap(PrepareError)
            outcome["error"] = failure.getErrorMessage()

        preparing.addCallbacks(lambda prepared: run_plan(reactor, prepared), refused)
        return preparing

    def run_plan(reactor: Any, prepared: PreparedPlan) -> defer.Deferred[Any]:
        def on_window(window: MetricWindow) -> None:
            display.progress(handle.progress(), window_for_display(window))

        display.start(prepared.name, prepared.endpoints, prepared.duration_s)
        handle = engine.start("local", prepared, on_window)
        ticker = task.LoopingCall(lambda: display.progress(handle.progress(), None))
        ticker.clock = reactor
        stopper = _Stopper(reactor, handle, display)

        def stop_signal(signum: int, frame: Any) -> None:
            reactor.callFromThread(stopper.signal, signum)

        def install_handlers() -> None:
            signal.signal(signal.SIGINT, stop_signal)
            signal.signal(signal.SIGTERM, stop_signal)

        def done(report: dict[str, Any]) -> None:
            if ticker.running:
                ticker.stop()
            stopper.finished()
            outcome["report"] = report
            outcome["calls"] = handle.calls

        def failed(failure: Failure) -> None:
            if ticker.running:
                ticker.stop()
            stopper.finished()
            display.stop()
            if isinstance(failure.value, RunFailed) and failure.value.config:
                outcome["error"] = failure.getErrorMessage()
            else:
                outcome["failed"] = failure.getErrorMessage()

        finished = handle.finished
        if not finished.called:
            reactor.callWhenRunning(install_handlers)
            ticker.start(1.0, now=False)
        finished.addCallbacks(done, failed)
        # Given up on (the run did not stop): end the reactor anyway.
        return defer.DeferredList([finished, stopper.gave_up], fireOnOneCallback=True)

    try:
        task.react(main, [])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            outcome.setdefault("failed", f"exit {exit_.code}")
    finally:
        _stop_logging(observers)
    if "error" in outcome:
        err.write(f"callmeter: {outcome['error']}\n")
        return EXIT_BAD_INPUT
    if "failed" in outcome:
        err.write(f"callmeter: the run failed: {outcome['failed']}\n")
        return EXIT_FAILED
    report = outcome.get("report")
    if report is None:
        err.write("callmeter: the run ended without a report\n")
        return EXIT_FAILED
    if options.report:
        text = json.dumps(report, indent=2) + "\n"
        _save(options.report, "--report", err, lambda handle: handle.write(text))
    if options.calls:
        calls = outcome.get("calls", [])
        _save(options.calls, "--calls", err, lambda handle: _write_calls(handle, calls))
    if options.json_output:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        display.summary(report)
    return EXIT_PASSED if report["pass"]["passed"] else EXIT_FAILED


class _Stopper:
    """What the stop signals do: the first stops cleanly, the second (or a clean stop that
    outlasts :data:`GRACEFUL_S`) stops at once, and an abort that outlasts :data:`ABORT_S`
    gives up on the run."""

    def __init__(self, reactor: Any, run: RunHandle, display: Display) -> None:
        self.reactor = reactor
        self.run = run
        self.display = display
        self.signals = 0
        self.gave_up: defer.Deferred[None] = defer.Deferred()
        self._timer: Any = None
        self._done = False

    def signal(self, signum: int) -> None:
        if self._done:
            return
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            self._say(
                f"interrupted ({name}): hanging up, unregistering, writing the report... "
                "(again to stop at once)"
            )
            self._timer = self.reactor.callLater(GRACEFUL_S, self.abort)
            self.run.cancel()
        else:
            self.abort()

    def abort(self) -> None:
        if self._done:
            return
        self._cancel_timer()
        self._say("stopping at once: calls still up get no BYE, registrations stay")
        self._timer = self.reactor.callLater(ABORT_S, self.give_up)
        self.run.abort()

    def give_up(self) -> None:
        self._timer = None
        if not self._done:
            self._done = True
            self._say(f"the run did not stop within {ABORT_S:g} s: giving up")
            self.gave_up.errback(RunFailed(f"the run did not stop within {ABORT_S:g} s"))

    def finished(self) -> None:
        self._done = True
        self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _say(self, text: str) -> None:
        self.display.stop()
        self.display.console.print(text)


def _start_logging(
    options: RunOptions, config: Config, display: Display, err: IO[str]
) -> list[tuple[ILogObserver, IO[str] | None]]:
    """Warnings and errors on stderr (rate-limited), every level in ``--log FILE``."""
    if display.plain or options.json_output:
        write: Callable[[str], Any] = err.write
    else:  # above the live progress line, on the same terminal

        def write(text: str) -> None:
            display.console.print(text, end="", markup=False, highlight=False)

    observers: list[tuple[ILogObserver, IO[str] | None]] = [(ConsoleLogObserver(write), None)]
    if options.log:
        handle = open(options.log, "a", encoding="utf-8")  # noqa: SIM115 (closed at the end)
        observers.append((make_observer("debug", config.log_format, handle), handle))
    for observer, _ in observers:
        globalLogPublisher.addObserver(observer)
    # Until logging "begins", Twisted prints critical events (a traceback) raw on stderr:
    # begin it once, with nothing more than the observers above.
    if not _logging_begun:
        globalLogBeginner.beginLoggingTo([], discardBuffer=True, redirectStandardIO=False)
        _logging_begun.append(True)
    return observers


_logging_begun: list[bool] = []


def _stop_logging(observers: list[tuple[ILogObserver, IO[str] | None]]) -> None:
    for observer, handle in observers:
        globalLogPublisher.removeObserver(observer)
        if isinstance(observer, ConsoleLogObserver):
            observer.flush()
        if handle is not None:
            handle.close()


def _save(path: str, flag: str, err: IO[str], write: Callable[[IO[str]], Any]) -> None:
    """Write a result file; if that fails after all, keep the results in a file that can be
    written and say where (a finished run's results are never thrown away)."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            write(handle)
        return
    except OSError as error:
        reason = error.strerror or str(error)
    suffix = Path(path).suffix or ".out"
    fd, fallback = tempfile.mkstemp(prefix="callmeter-", suffix=suffix)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        write(handle)
    err.write(f"callmeter: cannot write {flag} {path}: {reason}; written to {fallback} instead\n")


def write_calls_csv(path: str, calls: list[Any]) -> None:
    """One row per call: the per-call trace SIPp users know from its statistics files.

    ``rtp_stray``: RTP packets (counted in ``rtp_received``) that came from another address
    than the peer's SDP said: a NAT or SBC that breaks symmetric RTP (RFC 4961).
    ``media``: each stream's media state joined by ``/`` (ok, no_media, one_way, stopped,
    waiting, not_expected), ``media_stopped_s`` when the first stopped stream got its last
    packet; ``rtp_events``, ``rtp_cn`` and ``rtp_other_ssrc``: RFC 4733 events, RFC 3389
    comfort noise and packets of another SSRC (in ``rtp_received``, never lost audio).
    """
    with open(path, "w", newline="", encoding="utf-8") as handle:
        _write_calls(handle, calls)


def _write_calls(handle: IO[str], calls: list[Any]) -> None:
    columns = [
        "group",
        "direction",
        "local",
        "remote",
        "start_s",
        "pdd_ms",
        "setup_ms",
        "end_s",
        "final_code",
        "end",
        "rtp_sent",
        "rtp_received",
        "rtp_lost",
        "loss_pct",
        "jitter_ms",
        "rtt_ms",
        "mos",
        "rtp_stray",
        "media",
        "media_stopped_s",
        "rtp_events",
        "rtp_cn",
        "rtp_other_ssrc",
    ]
    writer = csv.writer(handle)
    writer.writerow(columns)
    for call in calls:
        streams = call.streams
        sent = sum(s.sent_packets for s in streams)
        received = sum(s.received_packets for s in streams)
        lost = sum(max(0, s.lost_packets) for s in streams)
        expected = sum(s.expected_packets for s in streams)
        first = streams[0] if streams else None
        writer.writerow(
            [
                call.group,
                call.direction,
                call.local,
                call.remote,
                _r(call.started),
                _r(call.pdd_ms),
                _r(call.setup_ms),
                _r(call.ended),
                call.final_code or "",
                call.end or "",
                sent,
                received,
                lost,
                _r(100.0 * lost / expected) if expected else "",
                _r(first.jitter_ms) if first else "",
                _r(first.rtt_ms) if first else "",
                _r(first.mos) if first else "",
                sum(s.stray_packets for s in streams),
                "/".join(s.media_state for s in streams),
                _r(next((s.stopped_at_s for s in streams if s.stopped_at_s is not None), None)),
                sum(s.events_received for s in streams),
                sum(s.cn_received for s in streams),
                sum(s.other_ssrc_packets for s in streams),
            ]
        )


def _r(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _files_ignored(
    make: Callable[[Config, Plan, Any], MediaFactory],
) -> Callable[[Config, Plan, Any, Mapping[str, str]], MediaFactory]:
    """A test's media factory (config, plan, reactor) as the engine calls it (with files)."""

    def factory(config: Config, plan: Plan, reactor: Any, files: Mapping[str, str]) -> MediaFactory:
        return make(config, plan, reactor)

    return factory
