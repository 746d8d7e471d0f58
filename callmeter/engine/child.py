"""One worker process of a multi-process run: ``python -m callmeter.engine.child``.

The coordinator (engine/processes.py) writes JSON lines on our stdin and reads JSON lines from
our stdout; stderr is our log.  The conversation:

    coordinator -> child   {"type": "setup", "plan": PLAN, "shard": k, "shards": n,
                            "window_s": 5.0, "run_id": "...", "media": {URL: PATH}}
                                                  (media: the files the coordinator fetched;
                                                  absent: the child fetches them itself)
    child -> coordinator   {"type": "ready", "port": SIP_PORT}       (sockets bound)
    coordinator -> child   {"type": "begin", "ports": [P0, P1, ...]}  (every shard's SIP port)
    child -> coordinator   {"type": "progress", ...}                 (every second)
    child -> coordinator   {"type": "window", "seq", "start", "end", "sets": {GROUP: WIRE}}
    coordinator -> child   {"type": "cancel"}     (optional: hang up, unregister, report)
    coordinator -> child   {"type": "abort"}      (optional: report now, no waiting for BYEs)
    child -> coordinator   {"type": "done", "sets": {...}, "calls": [...], "elapsed": S,
                            "interrupted": bool}
    child -> coordinator   {"type": "error", "message": "...", "config": bool}
                                                  (instead, on failure; config: exit 2)

Configuration comes from the environment the coordinator passes (its own, with this shard's
RTP port range).  Our log (warnings and up) goes to stderr as JSON lines, which the
coordinator re-emits with their level and traceback.  SIGINT is ignored (a Ctrl-C at the
terminal reaches the whole process group: the coordinator decides); SIGTERM (``systemctl
stop`` signals every process of the unit) stops cleanly and still reports, like "cancel".
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from dataclasses import asdict
from typing import Any

from twisted.internet import defer, stdio, task
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, globalLogBeginner
from twisted.protocols.basic import LineReceiver

from callmeter.config import ConfigError, load_config
from callmeter.engine.metrics import MetricSet
from callmeter.engine.run import Shard, TestRun, cannot_listen
from callmeter.limits import raise_open_files_limit
from callmeter.logs import make_observer
from callmeter.plan import PlanError, parse_plan

__all__ = ["ORPHAN_DEADLINE_S", "main"]

#: Seconds a worker told to stop (SIGTERM, or its coordinator gone) may take before it exits
#: anyway, whatever the clean stop still waits for.
ORPHAN_DEADLINE_S = 15.0
PR_SET_PDEATHSIG = 1


class _Child(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 64 * 1024 * 1024
    log = Logger()

    def __init__(self, reactor: Any, finished: defer.Deferred[None]) -> None:
        self.reactor = reactor
        self.finished = finished
        self.run: TestRun | None = None
        self.ticker: task.LoopingCall | None = None
        self.completed = False

    def send(self, message: dict[str, Any]) -> None:
        self.transport.write(json.dumps(message).encode() + b"\n")  # type: ignore[union-attr]

    def lineReceived(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        kind = message.get("type")
        try:
            if kind == "setup":
                self.setup(message)
            elif kind == "begin" and self.run is not None:
                self.begin(tuple(message["ports"]))
            elif kind == "cancel":
                self.cancel()
            elif kind == "abort":
                self.abort()
        except Exception as error:
            self.log.failure("worker process failed on {kind!r}", kind=kind)
            self.fail(f"{type(error).__name__}: {error}")

    def cancel(self) -> None:
        """Hang up and unregister, then report (also before "begin": report at once)."""
        if self.completed:
            return
        if self.run is None:
            self.fail("cancelled before the plan was set up")
            return
        self.run.cancel().addCallback(self.done)

    def abort(self) -> None:
        if self.completed:
            return
        if self.run is None:
            self.fail("aborted before the plan was set up")
            return
        self.run.abort().addCallback(self.done)

    def setup(self, message: dict[str, Any]) -> None:
        from callmeter.engine.media import fetch_plan_media

        try:
            config = load_config(os.environ, require_token=False)
            plan = parse_plan(message["plan"], max_endpoints=10**9)
        except (ConfigError, PlanError) as error:
            self.fail(str(error), config=True)
            return
        media = message.get("media")
        if isinstance(media, dict):  # fetched once by the coordinator: local paths
            self.prepare(config, plan, {str(k): str(v) for k, v in media.items()}, message)
            return
        # An older coordinator sent no paths: fetch (its download is in the cache).
        fetching = fetch_plan_media(config, plan, self.reactor)
        fetching.addCallbacks(
            lambda files: self.prepare(config, plan, files, message),
            lambda failure: self.fail(f"media: {failure.getErrorMessage()}"),
        )

    def prepare(
        self, config: Any, plan: Any, files: dict[str, str], message: dict[str, Any]
    ) -> None:
        from callmeter.engine.media import media_factory

        try:
            factory = media_factory(config, plan, self.reactor, files)
        except ValueError as error:
            self.fail(f"media: {error}")
            return
        shard = Shard(int(message["shard"]), int(message["shards"]))
        self.run = TestRun(
            plan,
            config,
            self.reactor,
            factory,
            window_s=message["window_s"],
            run_id=message["run_id"],
            shard=shard,
            on_window_sets=self.window,
        )
        try:
            port = self.run.open()
        except CannotListenError as error:
            self.fail(cannot_listen(config.sip_ip, error), config=True)
            return
        self.send({"type": "ready", "port": port})

    def begin(self, ports: tuple[int, ...]) -> None:
        assert self.run is not None
        run = self.run
        self.ticker = task.LoopingCall(lambda: self.send({"type": "progress", **run.progress()}))
        self.ticker.clock = self.reactor
        self.ticker.start(1.0, now=False)
        run.begin(ports).addCallback(self.done)

    def window(self, seq: int, start: float, end: float, sets: dict[str, MetricSet]) -> None:
        self.send(
            {
                "type": "window",
                "seq": seq,
                "start": start,
                "end": end,
                "sets": {name: s.to_wire() for name, s in sets.items()},
            }
        )

    def done(self, report: dict[str, Any]) -> None:
        assert self.run is not None
        if self.completed:
            return
        if self.ticker is not None and self.ticker.running:
            self.ticker.stop()
        self.send(
            {
                "type": "done",
                "elapsed": self.run.elapsed,
                "windows": self.run.window_seq,
                "sets": {name: s.to_wire() for name, s in self.run.run_sets().items()},
                "calls": [asdict(call) for call in self.run.calls],
                "interrupted": self.run.interrupted,
            }
        )
        self.close()

    def fail(self, reason: str, config: bool = False) -> None:
        if self.completed:
            return
        self.send({"type": "error", "message": reason, "config": config})
        self.close()

    def close(self) -> None:
        """Flush what we wrote, then exit (connectionLost ends the reactor)."""
        self.completed = True
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        if not self.completed and self.run is not None:
            # The coordinator went away: stop cleanly (BYE, un-REGISTER), then exit; an
            # orphan never outlives ORPHAN_DEADLINE_S, whatever the clean stop waits for.
            self.completed = True
            self.run.cancel().addBoth(lambda _: self._exit())
            self.reactor.callLater(ORPHAN_DEADLINE_S, self._exit)
            return
        self._exit()

    def _exit(self) -> None:
        if not self.finished.called:
            self.finished.callback(None)

    def exit_now(self) -> None:
        """The deadline of a stop: report what ran if we still can, then exit."""
        if self.run is not None and not self.completed:
            self.abort()
        self._exit()


def _die_with_parent() -> None:
    """SIGTERM (a clean stop: BYE, un-REGISTER) when the coordinator dies, even by SIGKILL
    (Linux prctl PR_SET_PDEATHSIG); a closed stdin alone left orphans running for ever."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: the closed stdin still stops us
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    # A Ctrl-C at the terminal reaches every process of the group: the coordinator decides
    # (it sends "cancel", then "abort").  Set before the reactor, which then keeps it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    raise_open_files_limit()  # three sockets per RTP stream
    # Our stdout is the protocol: log warnings and errors to stderr, one JSON line each.
    globalLogBeginner.beginLoggingTo(
        [make_observer("warn", "json", sys.stderr)], redirectStandardIO=False
    )

    def run(reactor: Any) -> defer.Deferred[None]:
        finished: defer.Deferred[None] = defer.Deferred()
        child = _Child(reactor, finished)
        stdio.StandardIO(child, reactor=reactor)

        def on_term(signum: int, frame: Any) -> None:
            reactor.callFromThread(child.cancel)
            reactor.callFromThread(reactor.callLater, ORPHAN_DEADLINE_S, child.exit_now)

        def install_handlers() -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, on_term)

        reactor.callWhenRunning(install_handlers)
        return finished

    task.react(run, [])


if __name__ == "__main__":
    main()
