"""Scale past one core: run a plan in several worker processes and merge their metrics.

:class:`ShardedRun` has :class:`~callmeter.engine.run.TestRun`'s interface (``start()``,
``cancel()``, ``progress()``, ``calls``, ``on_window``) and spreads the plan's endpoints over
``processes`` children (``python -m callmeter.engine.child``), one reactor each: child *k* owns a
contiguous slice of every group (:class:`~callmeter.engine.run.Shard`) and its own slice of the
RTP port range.  Each child binds its SIP socket and reports the port; when all have, every child
learns every port (a caller reaches a callee in another process) and the clock starts.

Windows are merged by sequence number once every child has sent it; percentiles come from the
merged histograms.  A child that fails (its error line, or an exit before its report) fails the
run with its reason (its exit status and the last line it wrote on stderr), and the others are
cancelled.  Nothing waits for ever: a child silent for :data:`STALL_S` (or not ready after
:data:`SETUP_S`) is killed and named, and children still alive :data:`KILL_AFTER_S` after a
failure or an :meth:`ShardedRun.abort` are killed.

The children run the very ``callmeter`` package the coordinator runs (see :data:`BOOTSTRAP`),
never one that happens to sit in the current directory.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from twisted.internet import defer, error, protocol, task
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

import callmeter
from callmeter.config import Config
from callmeter.engine.metrics import MetricSet, StreamResult, merge_sets
from callmeter.engine.report import format_report, format_window
from callmeter.engine.run import CallRecord
from callmeter.plan import Plan

__all__ = ["BOOTSTRAP", "RunFailed", "ShardedRun", "rtp_slices"]

#: Seconds a child may take from its start to "ready" (plan, media from the cache, sockets).
SETUP_S = 60.0
#: Seconds a child that has begun may stay silent (it sends progress every second).
STALL_S = 15.0
#: Seconds the children get to exit after a failure or an abort before they are killed.
KILL_AFTER_S = 5.0

#: What a child runs (``python -P -c BOOTSTRAP ROOT``): ``callmeter`` is imported from ROOT,
#: the directory that holds the coordinator's own package.  ``python -m`` would prepend the
#: current directory to sys.path, and a source tree there (the project directory, with no
#: compiled extension) would shadow the installed package; ``-P`` leaves it out.
BOOTSTRAP = """\
import importlib.util, sys
root = sys.argv[1]
spec = importlib.util.spec_from_file_location(
    "callmeter", root + "/callmeter/__init__.py", submodule_search_locations=[root + "/callmeter"]
)
module = importlib.util.module_from_spec(spec)
sys.modules["callmeter"] = module
spec.loader.exec_module(module)
from callmeter.engine.child import main
main()
"""


def child_command() -> list[str]:
    """The argv of a worker process running this process's own ``callmeter``."""
    root = str(Path(callmeter.__file__).resolve().parent.parent)
    return [sys.executable, "-P", "-c", BOOTSTRAP, root]


class RunFailed(Exception):
    """A worker process failed; the message says which and why.

    ``config`` is true when the cause is the configuration (a SIP port in use, a bad
    variable): ``callmeter run`` exits 2 for it, 1 for anything else.
    """

    def __init__(self, message: str, config: bool = False) -> None:
        super().__init__(message)
        self.config = config


def rtp_slices(low: int, high: int, count: int) -> list[tuple[int, int]]:
    """Split RTP_PORT_MIN..RTP_PORT_MAX into ``count`` disjoint ranges of whole even/odd pairs."""
    first = low + (low % 2)
    pairs = (high - first + 1) // 2
    if pairs < count:
        raise ValueError(
            f"RTP_PORT_MIN..RTP_PORT_MAX ({low}..{high}) has {pairs} port pairs: "
            f"fewer than the {count} processes"
        )
    slices = []
    for index in range(count):
        start = first + 2 * (pairs * index // count)
        stop = first + 2 * (pairs * (index + 1) // count) - 1
        slices.append((start, stop))
    return slices


class _ChildProtocol(protocol.ProcessProtocol):
    log = Logger()

    def __init__(self, run: ShardedRun, index: int, started: float) -> None:
        self.run = run
        self.index = index
        self._buffer = b""
        self._errors = b""
        self.exited: defer.Deferred[None] = defer.Deferred()
        #: The last lines the child wrote on stderr (its log), for the error that names it.
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self.last_heard = started
        self.begun = False
        self.ready = False

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.exited.called:
            self.transport.write(json.dumps(message).encode() + b"\n")

    def close_stdin(self) -> None:
        """No more messages: a child whose stdin closes stops cleanly and exits."""
        if self.transport is not None and not self.exited.called:
            self.transport.closeStdin()

    def kill(self) -> None:
        if self.transport is not None and not self.exited.called:
            with contextlib.suppress(error.ProcessExitedAlready):
                self.transport.signalProcess("KILL")

    def outReceived(self, data: bytes) -> None:
        self.last_heard = self.run.reactor.seconds()
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            self.run.message(self.index, message)

    def errReceived(self, data: bytes) -> None:
        self._errors += data
        while b"\n" in self._errors:
            line, self._errors = self._errors.split(b"\n", 1)
            self._stderr_line(line.decode(errors="replace"))

    def _stderr_line(self, line: str) -> None:
        """A child logs JSON lines (callmeter.logs): re-emit each here, with its level and
        traceback; anything else (an interpreter that died before logging began) as is."""
        if not line.strip():
            return
        try:
            record = json.loads(line)
            message = str(record["message"])
            level = LogLevel.levelWithName(str(record.get("level", "warn")))
        except Exception:  # not a JSON log line: the interpreter's own words
            record, message, level = {}, line, LogLevel.warn
        self.stderr_tail.append(message)
        self.log.emit(
            level,
            "worker {index}: {message}",
            index=self.index,
            message=message,
            traceback=record.get("traceback"),
        )
        if record.get("traceback"):  # for --log FILE (every level), not the terminal
            self.log.debug(
                "worker {index} traceback:\n{traceback}",
                index=self.index,
                traceback=record["traceback"],
            )

    def processEnded(self, reason: Failure) -> None:
        if self._errors:
            self._stderr_line(self._errors.decode(errors="replace"))
            self._errors = b""
        self.run.child_exited(self.index, reason)
        self.exited.callback(None)

    def last_words(self) -> str:
        """The most telling stderr line: an exception's, else the last one."""
        for line in reversed(self.stderr_tail):
            text = line.strip().splitlines()[-1] if line.strip() else ""
            if "Error" in text or "Exception" in text:
                return text
        return self.stderr_tail[-1].strip().splitlines()[-1] if self.stderr_tail else ""


class ShardedRun:
    """A plan run by ``processes`` worker processes; the same interface as TestRun."""

    log = Logger()

    def __init__(
        self,
        plan: Plan,
        config: Config,
        reactor: Any,
        processes: int,
        *,
        environ: Mapping[str, str] | None = None,
        on_window: Callable[[dict[str, Any]], None] | None = None,
        window_s: float = 5.0,
        run_id: str = "local",
    ) -> None:
        self.plan = plan
        self.config = config
        self.reactor = reactor
        self.processes = processes
        self.environ = dict(os.environ if environ is None else environ)
        self.on_window = on_window
        self.window_s = window_s
        self.run_id = run_id
        self.calls: list[CallRecord] = []
        self.report: dict[str, Any] | None = None
        self._children: list[_ChildProtocol] = []
        self._ports: dict[int, int] = {}
        self._windows: dict[int, dict[int, dict[str, Any]]] = {}
        self._progress: dict[int, dict[str, Any]] = {}
        self._done: dict[int, dict[str, Any]] = {}
        self._error: str | None = None
        self._finished: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._started = time.time()
        self._emitted = 0
        self._config_error = False
        self._watchdog: task.LoopingCall | None = None
        self._kill_timer: Any = None
        #: cancel() was called before the end: the report says interrupted, never a pass.
        self.interrupted = False

    # -- the TestRun interface ------------------------------------------------------------

    def start(self, media_files: Mapping[str, str] | None = None) -> defer.Deferred[dict[str, Any]]:
        """Start the children; ``media_files`` (the plan's media URLs and their local paths,
        fetched once by the caller) go to each in "setup", which then fetches nothing."""
        slices = rtp_slices(self.config.rtp_port_min, self.config.rtp_port_max, self.processes)
        command = child_command()
        for index in range(self.processes):
            env = dict(self.environ)
            env["RTP_PORT_MIN"], env["RTP_PORT_MAX"] = (str(port) for port in slices[index])
            env["SIP_IP"] = self.config.sip_ip
            env["SDP_IP"] = self.config.sdp_ip
            env["EXTERNAL_IP"] = self.config.external_ip
            # Shard 0 takes SIP_PORT; the others any free port (they are announced).
            env["SIP_PORT"] = str(self.config.sip_port) if index == 0 else "0"
            child = _ChildProtocol(self, index, self.reactor.seconds())
            self._children.append(child)
            self.reactor.spawnProcess(
                child, command[0], command, env=env, childFDs={0: "w", 1: "r", 2: "r"}
            )
            setup: dict[str, Any] = {
                "type": "setup",
                "plan": dict(self.plan.raw),
                "shard": index,
                "shards": self.processes,
                "window_s": self.window_s,
                "run_id": self.run_id,
            }
            if media_files is not None:
                setup["media"] = dict(media_files)
            child.send(setup)
        self._watchdog = task.LoopingCall(self._check_children)
        self._watchdog.clock = self.reactor
        self._watchdog.start(1.0, now=False)
        return self._finished

    def cancel(self) -> defer.Deferred[dict[str, Any]]:
        """Stop cleanly (the children hang up and unregister), then report what ran."""
        if not self._finished.called and len(self._done) < self.processes:
            self.interrupted = True
        for child in self._children:
            child.send({"type": "cancel"})
        return self._finished

    def abort(self) -> defer.Deferred[dict[str, Any]]:
        """Stop now: the children report at once without waiting for BYEs; any child still
        alive :data:`KILL_AFTER_S` later is killed."""
        if not self._finished.called and len(self._done) < self.processes:
            self.interrupted = True
        for child in self._children:
            child.send({"type": "abort"})
        self._kill_later()
        return self._finished

    def _kill_later(self) -> None:
        if self._kill_timer is None:
            self._kill_timer = self.reactor.callLater(KILL_AFTER_S, self._kill_all)

    def _kill_all(self) -> None:
        for child in self._children:
            if not child.exited.called:
                self.log.warn("worker {index} killed: it did not exit", index=child.index)
                child.kill()

    def _check_children(self) -> None:
        """A child that never gets ready, or stops talking once begun, fails the run."""
        now = self.reactor.seconds()
        for child in self._children:
            if child.exited.called or child.index in self._done:
                continue
            silent = now - child.last_heard
            if not child.ready and silent > SETUP_S:
                self._fail(f"worker {child.index} was not ready after {SETUP_S:g} s")
                child.kill()
            elif child.begun and silent > STALL_S:
                self._fail(f"worker {child.index} stopped responding (silent for {silent:.0f} s)")
                child.kill()

    def progress(self) -> dict[str, Any]:
        keys = (
            "registered",
            "to_register",
            "calls_up",
            "calls_attempted",
            "calls_established",
            "failures",
            "register_failed",
            "calls_failed",
        )
        summed: dict[str, Any] = {
            key: sum(p.get(key, 0) for p in self._progress.values()) for key in keys
        }
        summed["elapsed_s"] = max(
            (p.get("elapsed_s", 0.0) for p in self._progress.values()), default=0.0
        )
        return summed

    # -- messages from the children -------------------------------------------------------

    def message(self, index: int, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ready":
            self._children[index].ready = True
            self._ports[index] = int(message["port"])
            if len(self._ports) == self.processes and self._error is None:
                ports = [self._ports[k] for k in range(self.processes)]
                for child in self._children:
                    child.begun = True
                    child.send({"type": "begin", "ports": ports})
        elif kind == "progress":
            self._progress[index] = message
        elif kind == "window":
            self._windows.setdefault(int(message["seq"]), {})[index] = message
            self._emit_ready_windows()
        elif kind == "done":
            self._done[index] = message
            for call in message.get("calls", []):
                streams = [StreamResult(**s) for s in call.pop("streams", [])]
                self.calls.append(CallRecord(**call, streams=streams))
        elif kind == "error":
            if message.get("config"):
                self._config_error = True
            self._fail(f"worker {index}: {message.get('message')}")

    def child_exited(self, index: int, reason: Failure) -> None:
        if index not in self._done and self._error is None:
            child = self._children[index]
            status = _exit_status(reason)
            words = child.last_words()
            self._fail(
                f"worker {index} exited before its report ({status})"
                + (f": {words}" if words else "")
            )
        if all(child.exited.called or child is self._children[index] for child in self._children):
            self._complete()

    def _emit_ready_windows(self) -> None:
        while len(self._windows.get(self._emitted + 1, {})) == self.processes:
            self._emit_partial(self._emitted + 1)

    def _emit_partial(self, seq: int) -> None:
        parts = self._windows.pop(seq)
        if not parts:
            return
        sets = self._merge([part["sets"] for part in parts.values()])
        window = format_window(
            self.plan,
            seq,
            min(p["start"] for p in parts.values()),
            max(p["end"] for p in parts.values()),
            sets,
        )
        self._emitted = seq
        if self.on_window is not None:
            try:
                self.on_window(window)
            except Exception:
                self.log.failure("a metric window listener failed")

    def _merge(self, parts: list[dict[str, Any]]) -> dict[str, MetricSet]:
        merged: dict[str, MetricSet] = {}
        for group in self.plan.groups:
            merged[group.name] = merge_sets(
                MetricSet.from_wire(part[group.name]) for part in parts if group.name in part
            )
        return merged

    def _fail(self, reason: str) -> None:
        if self._error is None:
            self._error = reason
            # The caller reports the failure (callmeter run's last line, the gateway's run).
            self.log.info("run failing: {reason}", reason=reason)
            for child in self._children:
                child.send({"type": "cancel"})
                child.close_stdin()
            self._kill_later()

    def _complete(self) -> None:
        if self._finished.called:
            return
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        if self._kill_timer is not None and self._kill_timer.active():
            self._kill_timer.cancel()
        if self._error is not None or len(self._done) < self.processes:
            self._finished.errback(
                RunFailed(self._error or "a worker process failed", config=self._config_error)
            )
            return
        for seq in sorted(self._windows):  # windows a child did not send: merge what came
            self._emit_partial(seq)
        done = list(self._done.values())
        sets = self._merge([part["sets"] for part in done])
        self.report = format_report(
            self.plan,
            self.run_id,
            self._started,
            max(part["elapsed"] for part in done),
            max(part["windows"] for part in done),
            sets,
            processes=self.processes,
            interrupted=self.interrupted or any(part.get("interrupted") for part in done),
        )
        self._finished.callback(self.report)


def _exit_status(reason: Failure) -> str:
    """ "exit code 1" or "killed by SIGKILL", from a ProcessProtocol's processEnded reason."""
    value = reason.value
    code = getattr(value, "exitCode", None)
    sig = getattr(value, "signal", None)
    if sig:
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit code {code}"
