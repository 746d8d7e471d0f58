"""Scale past one core: run a plan in several worker processes and merge their metrics.

:class:`ShardedRun` has :class:`~callmeter.engine.run.TestRun`'s interface (``start()``,
``cancel()``, ``progress()``, ``calls``, ``on_window``) and spreads the plan's endpoints over
``processes`` children (``python -m callmeter.engine.child``), one reactor each: child *k* owns a
contiguous slice of every group (:class:`~callmeter.engine.run.Shard`) and its own slice of the
RTP port range.  Each child binds its SIP socket and reports the port; when all have, every child
learns every port (a caller reaches a callee in another process) and the clock starts.

Windows are merged by sequence number once every child has sent it; percentiles come from the
merged histograms.  A child that fails (its error line, or an exit before its report) fails the
run with its reason, and the others are cancelled.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from callmeter.config import Config
from callmeter.engine.metrics import MetricSet, StreamResult, merge_sets
from callmeter.engine.report import format_report, format_window
from callmeter.engine.run import CallRecord
from callmeter.plan import Plan

__all__ = ["RunFailed", "ShardedRun", "rtp_slices"]


class RunFailed(Exception):
    """A worker process failed; the message says which and why."""


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

    def __init__(self, run: ShardedRun, index: int) -> None:
        self.run = run
        self.index = index
        self._buffer = b""
        self.exited: defer.Deferred[None] = defer.Deferred()

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None:
            self.transport.write(json.dumps(message).encode() + b"\n")

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            self.run.message(self.index, message)

    def errReceived(self, data: bytes) -> None:
        for line in data.decode(errors="replace").splitlines():
            if line.strip():
                self.log.warn("worker {index}: {line}", index=self.index, line=line)

    def processEnded(self, reason: Failure) -> None:
        self.run.child_exited(self.index, reason)
        self.exited.callback(None)


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

    # -- the TestRun interface ------------------------------------------------------------

    def start(self) -> defer.Deferred[dict[str, Any]]:
        slices = rtp_slices(self.config.rtp_port_min, self.config.rtp_port_max, self.processes)
        for index in range(self.processes):
            env = dict(self.environ)
            env["RTP_PORT_MIN"], env["RTP_PORT_MAX"] = (str(port) for port in slices[index])
            env["SIP_IP"] = self.config.sip_ip
            env["SDP_IP"] = self.config.sdp_ip
            env["EXTERNAL_IP"] = self.config.external_ip
            # Shard 0 takes SIP_PORT; the others any free port (they are announced).
            env["SIP_PORT"] = str(self.config.sip_port) if index == 0 else "0"
            child = _ChildProtocol(self, index)
            self._children.append(child)
            self.reactor.spawnProcess(
                child,
                sys.executable,
                [sys.executable, "-m", "callmeter.engine.child"],
                env=env,
                childFDs={0: "w", 1: "r", 2: "r"},
            )
            child.send(
                {
                    "type": "setup",
                    "plan": dict(self.plan.raw),
                    "shard": index,
                    "shards": self.processes,
                    "window_s": self.window_s,
                    "run_id": self.run_id,
                }
            )
        return self._finished

    def cancel(self) -> defer.Deferred[dict[str, Any]]:
        for child in self._children:
            child.send({"type": "cancel"})
        return self._finished

    def progress(self) -> dict[str, Any]:
        keys = (
            "registered",
            "to_register",
            "calls_up",
            "calls_attempted",
            "calls_established",
            "failures",
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
            self._ports[index] = int(message["port"])
            if len(self._ports) == self.processes:
                ports = [self._ports[k] for k in range(self.processes)]
                for child in self._children:
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
            self._fail(f"worker {index}: {message.get('message')}")

    def child_exited(self, index: int, reason: Failure) -> None:
        if index not in self._done and self._error is None:
            self._fail(f"worker {index} exited before its report ({reason.getErrorMessage()})")
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
            self.log.error("{reason}", reason=reason)
            self.cancel()

    def _complete(self) -> None:
        if self._finished.called:
            return
        if self._error is not None or len(self._done) < self.processes:
            self._finished.errback(RunFailed(self._error or "a worker process failed"))
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
        )
        self._finished.callback(self.report)
