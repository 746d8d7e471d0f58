"""``callmeter run PLAN``: one test on this machine, no gateway (SPEC.md "What the user does").

Exit codes: 0 when the plan's pass criteria hold, 1 when they do not (or the run could not
complete), 2 for a bad plan or configuration, named by field before anything is sent.  Ctrl-C
(SIGINT) or SIGTERM stops the test cleanly (BYE, un-REGISTER) and still writes the report.
"""

from __future__ import annotations

import csv
import json
import signal
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure

from callmeter.config import Config, ConfigError, load_config
from callmeter.display import Display
from callmeter.engine.processes import ShardedRun
from callmeter.engine.run import MediaFactory, TestRun
from callmeter.limits import raise_open_files_limit
from callmeter.plan import Plan, PlanError, parse_plan

__all__ = ["RunOptions", "load_plan", "run_command", "write_calls_csv"]

EXIT_PASSED, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


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
    ) -> None:
        self.plan = plan
        self.report = report
        self.json_output = json_output
        self.calls = calls
        self.overrides = dict(overrides or {})
        self.plain = plain
        self.processes = processes


def load_plan(path: str, max_endpoints: int) -> Plan:
    """Read and validate a plan file; PlanError (with every problem) or OSError."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PlanError(
            [f"plan: not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"]
        ) from None
    return parse_plan(data, max_endpoints=max_endpoints)


def run_command(
    options: RunOptions,
    environ: Mapping[str, str],
    out: IO[str],
    err: IO[str],
    media_factory: Callable[[Config, Plan, Any], MediaFactory] | None = None,
) -> int:
    """Validate, run the plan on a fresh reactor, print and write the results."""
    try:
        config = load_config(environ, options.overrides, require_token=False)
    except ConfigError as error:
        err.write(f"callmeter: {error}\n")
        return EXIT_BAD_INPUT
    try:
        plan = load_plan(options.plan, config.max_endpoints)
    except OSError as error:
        err.write(f"callmeter: cannot read plan {options.plan}: {error.strerror or error}\n")
        return EXIT_BAD_INPUT
    except PlanError as error:
        err.write(f"callmeter: invalid plan {options.plan}:\n")
        for problem in error.problems:
            err.write(f"  {problem}\n")
        return EXIT_BAD_INPUT

    display = Display(err if options.json_output else out, plain=options.plain)
    outcome: dict[str, Any] = {}
    raise_open_files_limit()  # three sockets per RTP stream in this process (one process)

    def main(reactor: Any) -> defer.Deferred[None]:
        from callmeter.engine.media import fetch_plan_media

        # Media files first: a URL that 404s is a clear error before any call is made.
        fetching: defer.Deferred[Any] = fetch_plan_media(config, plan, reactor)

        def media_failed(failure: Failure) -> None:
            failure.trap(ValueError)
            outcome["error"] = f"media: {failure.getErrorMessage()}"

        fetching.addCallbacks(lambda files: run_plan(reactor, files), media_failed)
        return fetching

    def run_plan(reactor: Any, files: dict[str, str]) -> defer.Deferred[None]:
        def on_window(window: dict[str, Any]) -> None:
            display.progress(run.progress(), window)

        run: Any
        if options.processes > 1:
            run = ShardedRun(
                plan, config, reactor, options.processes, environ=environ, on_window=on_window
            )
        else:
            try:
                factory = (
                    media_factory(config, plan, reactor)
                    if media_factory is not None
                    else _default_media_factory(config, plan, reactor, files)
                )
            except ValueError as error:
                outcome["error"] = f"media: {error}"
                return defer.succeed(None)
            run = TestRun(plan, config, reactor, factory, on_window=on_window)
        ticker = task.LoopingCall(lambda: display.progress(run.progress(), None))
        ticker.clock = reactor

        def stop_signal(signum: int, frame: Any) -> None:
            reactor.callFromThread(_interrupt, run, display)

        def install_handlers() -> None:
            signal.signal(signal.SIGINT, stop_signal)
            signal.signal(signal.SIGTERM, stop_signal)

        reactor.callWhenRunning(install_handlers)
        display.start(plan.name, plan.endpoints, plan.duration_s)
        try:
            finished: defer.Deferred[Any] = run.start()
        except CannotListenError as error:
            display.stop()
            reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
            outcome["error"] = (
                f"cannot listen for SIP on {config.sip_ip}:{config.sip_port}: "
                f"{reason} (set SIP_PORT, or SIP_PORT=0 for any)"
            )
            return defer.succeed(None)
        ticker.start(0.5, now=False)

        def done(report: dict[str, Any]) -> None:
            if ticker.running:
                ticker.stop()
            outcome["report"] = report
            outcome["calls"] = run.calls

        def failed(failure: Failure) -> None:
            if ticker.running:
                ticker.stop()
            display.stop()
            outcome["failed"] = failure.getErrorMessage()

        finished.addCallbacks(done, failed)
        return finished

    try:
        task.react(main, [])
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            err.write(f"callmeter: the run failed (exit {exit_.code})\n")
            return EXIT_FAILED
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
        Path(options.report).write_text(json.dumps(report, indent=2) + "\n")
    if options.calls:
        write_calls_csv(options.calls, outcome.get("calls", []))
    if options.json_output:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        display.summary(report)
    return EXIT_PASSED if report["pass"]["passed"] else EXIT_FAILED


def _interrupt(run: TestRun, display: Display) -> None:
    display.stop()
    display.console.print("interrupted: hanging up, unregistering, writing the report...")
    run.cancel()


def write_calls_csv(path: str, calls: list[Any]) -> None:
    """One row per call: the per-call trace SIPp users know from its statistics files.

    ``rtp_stray``: RTP packets (counted in ``rtp_received``) that came from another address
    than the peer's SDP said: a NAT or SBC that breaks symmetric RTP (RFC 4961).
    """
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
    ]
    with open(path, "w", newline="", encoding="utf-8") as handle:
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
                ]
            )


def _r(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _default_media_factory(
    config: Config, plan: Plan, reactor: Any, files: dict[str, str]
) -> MediaFactory:
    from callmeter.engine.media import media_factory

    return media_factory(config, plan, reactor, files)
