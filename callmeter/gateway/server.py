"""The gateway core: worker sessions, worker tracking, dispatch of runs, windows and acks.

SPEC.md "Reference gateway" and docs/protocol.md, the gateway's half:

- A worker authenticates in the WebSocket upgrade request with ``Authorization: Bearer TOKEN``
  (RFC 6750 section 2.1); an unknown token gets HTTP 401 and no WebSocket
  (:meth:`Gateway.authenticate`). Its first message must be ``hello``; the gateway answers
  ``welcome`` (worker id = the token's name in the worker-tokens file).
- Workers are ONLINE or BUSY as their heartbeats say, and ERROR when stale: 60 s without a
  heartbeat (:data:`STALE_AFTER_S`, on the injected clock), ONLINE again on the next one.
- Queued runs go to an idle connected worker (the one named, or any with the capacity); the
  run is pinned to that worker as it is sent, so a lost ``accepted`` cannot start it twice.
- Windows are stored idempotently by (run, seq) and answered with a cumulative ``ack``;
  ``finished`` is acknowledged with ``finished: true`` once the report and every window are in.

:class:`Gateway` holds the logic and talks to connections through :class:`WorkerConnection`;
:class:`GatewayServerProtocol` is the thin Autobahn adapter.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from callmeter.control import protocol as p
from callmeter.gateway.plans import plan_endpoints, validate_plan
from callmeter.gateway.store import Store

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "MAX_RECEIVED_BYTES",
    "STALE_AFTER_S",
    "ApiError",
    "Gateway",
    "GatewayServerFactory",
    "GatewayServerProtocol",
    "WorkerConnection",
    "WorkerRecord",
]

HEARTBEAT_INTERVAL_S = 30.0
STALE_AFTER_S = 60.0
MAX_RECEIVED_BYTES = 1024 * 1024
"""Autobahn's limit; frames from 64 KiB up to this get a ``too_large`` error, not a close."""

log = Logger()


class WorkerConnection(Protocol):
    """What :class:`Gateway` needs of a worker's WebSocket."""

    def send_text(self, text: str) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


class ApiError(Exception):
    """An API request the gateway refuses: HTTP ``status`` and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class WorkerRecord:
    """What the gateway knows of one worker (``GET /api/workers``)."""

    id: str
    name: str
    state: str = "OFFLINE"
    reason: str | None = None
    last_heartbeat: float | None = None
    max_endpoints: int = 0
    active_endpoints: int = 0
    test_run: str | None = None
    version: str | None = None
    connection: WorkerConnection | None = None
    stale_timer: IDelayedCall | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "reason": self.reason,
            "connected": self.connection is not None,
            "last_heartbeat": self.last_heartbeat,
            "max_endpoints": self.max_endpoints,
            "active_endpoints": self.active_endpoints,
            "test_run": self.test_run,
            "version": self.version,
        }


class Gateway:
    """The gateway's logic; ``tokens`` maps worker names to their tokens."""

    def __init__(
        self,
        store: Store,
        tokens: dict[str, str],
        clock: IReactorTime,
        *,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        self.store = store
        self._tokens = dict(tokens)
        self._clock = clock
        self.heartbeat_interval_s = heartbeat_interval_s
        self.stale_after_s = stale_after_s
        self.workers: dict[str, WorkerRecord] = {
            name: WorkerRecord(id=name, name=name) for name in tokens
        }
        self._assigning: dict[str, str] = {}  # run -> worker, assign sent, no answer yet
        self._dispatching = False
        self._dispatch_again = False

    # --- authentication and sessions -----------------------------------------------------------

    def authenticate(self, authorization: str | None) -> str | None:
        """The worker name for an ``Authorization`` header value, or None (compared in
        constant time against every token, so the time taken says nothing of which failed)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[len("Bearer ") :].strip().encode()
        found = None
        for name, token in self._tokens.items():
            if hmac.compare_digest(given, token.encode()):
                found = name
        return found

    def message(self, name: str, conn: WorkerConnection, payload: bytes | str) -> None:
        """One frame from worker ``name`` on ``conn``: parse, handle; never raises."""
        worker = self.workers[name]
        try:
            message = p.parse_message(payload, expect=p.WORKER_MESSAGES)
        except p.ProtocolError as error:
            log.warn(
                "Refused a message from worker {name}: {code}: {detail}",
                name=name,
                code=error.code,
                detail=error.detail,
            )
            if error.in_reply_to != "error":
                self._write(conn, p.error_reply(error))
            return
        if worker.connection is not conn:
            if isinstance(message, p.Hello):
                self._hello(worker, conn, message)
            else:
                self._write(
                    conn, p.Error(p.ErrorCode.UNEXPECTED_TYPE, "expected hello first", message.TYPE)
                )
                conn.close(4001, "expected hello first")
            return
        try:
            self._dispatch_message(worker, message)
        except Exception:
            log.failure("Error handling {type} from {name}", type=message.TYPE, name=name)

    def connection_lost(self, name: str, conn: WorkerConnection) -> None:
        worker = self.workers.get(name)
        if worker is None or worker.connection is not conn:
            return
        worker.connection = None
        for run, assigned in list(self._assigning.items()):
            if assigned == name:
                del self._assigning[run]
        log.info("Worker {name} disconnected", name=name)

    def _hello(self, worker: WorkerRecord, conn: WorkerConnection, hello: p.Hello) -> None:
        old = worker.connection
        worker.connection = conn
        if old is not None:
            old.close(4000, "replaced by a new connection")
        worker.max_endpoints = hello.capabilities.max_endpoints
        worker.version = hello.version
        self._write(
            conn,
            p.Welcome(worker.id, self.heartbeat_interval_s, server_time=self._clock.seconds()),
        )
        log.info(
            "Worker {name} ({label}, {version}) connected, max {max} endpoints",
            name=worker.name,
            label=hello.worker,
            version=hello.version,
            max=worker.max_endpoints,
        )
        self._heard_from(worker)
        self._resend_cancels(worker)

    def _dispatch_message(self, worker: WorkerRecord, message: p.Message) -> None:
        if isinstance(message, p.Heartbeat):
            self._heartbeat(worker, message)
        elif isinstance(message, p.Metrics):
            self._metrics(worker, message)
        elif isinstance(message, p.Finished):
            self._finished(worker, message)
        elif isinstance(message, p.Accepted):
            self._accepted(worker, message)
        elif isinstance(message, p.Rejected):
            self._rejected(worker, message)
        elif isinstance(message, p.Status):
            self._status(worker, message)
        elif isinstance(message, p.Error):
            log.warn(
                "Worker {name} refused our {what}: {code}: {detail}",
                name=worker.name,
                what=message.in_reply_to or "message",
                code=message.code,
                detail=message.detail,
            )
        elif isinstance(message, p.Hello):
            self._write(
                worker.connection, p.Error(p.ErrorCode.UNEXPECTED_TYPE, "hello sent twice", "hello")
            )

    # --- worker tracking ------------------------------------------------------------------------

    def _heard_from(self, worker: WorkerRecord) -> None:
        worker.last_heartbeat = self._clock.seconds()
        if worker.state in ("OFFLINE", "ERROR"):
            worker.state = "BUSY" if worker.test_run else "ONLINE"
            worker.reason = None
        if worker.stale_timer is not None and worker.stale_timer.active():
            worker.stale_timer.reset(self.stale_after_s)
        else:
            worker.stale_timer = self._clock.callLater(self.stale_after_s, self._stale, worker.name)

    def _stale(self, name: str) -> None:
        worker = self.workers[name]
        worker.stale_timer = None
        worker.state = "ERROR"
        worker.reason = f"stale: no heartbeat for {self.stale_after_s:g} s"
        log.warn("Worker {name} is stale (ERROR): {reason}", name=name, reason=worker.reason)

    def _heartbeat(self, worker: WorkerRecord, beat: p.Heartbeat) -> None:
        self._write(worker.connection, p.HeartbeatAck(beat.seq))
        worker.state = beat.state
        worker.reason = None
        worker.active_endpoints = beat.active_endpoints
        worker.test_run = beat.test_run
        self._heard_from(worker)
        if self._idle(worker):
            self.dispatch()

    def _status(self, worker: WorkerRecord, status: p.Status) -> None:
        worker.state = status.state
        worker.reason = status.reason
        if status.state == "ONLINE":
            worker.test_run = None
            worker.active_endpoints = 0
        log.info(
            "Worker {name} is {state}{why}",
            name=worker.name,
            state=status.state,
            why=f": {status.reason}" if status.reason else "",
        )
        if self._idle(worker):
            self.dispatch()

    def _idle(self, worker: WorkerRecord) -> bool:
        return (
            worker.connection is not None
            and worker.state == "ONLINE"
            and worker.test_run is None
            and worker.name not in self._assigning.values()
        )

    # --- runs -----------------------------------------------------------------------------------

    @inlineCallbacks
    def submit(self, body: object) -> Any:
        """``POST /api/runs``: validate, store as queued, dispatch; returns the run id."""
        if not isinstance(body, dict):
            raise ApiError(400, "body: expected a JSON object")
        if "plan" not in body:
            raise ApiError(400, "plan: missing")
        plan = body["plan"]
        problems = validate_plan(plan)
        if problems:
            raise ApiError(400, "; ".join(problems))
        worker = body.get("worker")
        if worker is not None:
            if not isinstance(worker, str):
                raise ApiError(400, "worker: expected a worker id or null")
            if worker not in self.workers:
                raise ApiError(400, "worker: no such worker")
        run = "r-" + uuid.uuid4().hex[:12]
        yield self.store.create_run(run, plan, worker, self._clock.seconds())
        log.info("Run {run} queued for {worker}", run=run, worker=worker or "any worker")
        self.dispatch()
        return run

    @inlineCallbacks
    def cancel(self, run: str) -> Any:
        """``POST /api/runs/RUN/cancel``; ApiError 404 or 409 when there is nothing to cancel."""
        info = yield self.store.get_run(run)
        if info is None:
            raise ApiError(404, "run: no such run")
        if info["state"] not in ("queued", "running"):
            raise ApiError(409, f"run: already {info['state']}")
        if info["state"] == "queued" and run not in self._assigning:
            changed = yield self.store.update_run(
                run, state="cancelled", reason="cancelled before it started", only_from=("queued",)
            )
            if changed:
                return None
        yield self.store.update_run(run, cancel_requested=True)
        worker = self.workers.get(info["worker"] or "")
        if worker is not None and worker.connection is not None:
            self._write(worker.connection, p.Cancel(run, "cancelled through the API"))
        return None

    def dispatch(self) -> None:
        """Send queued runs to idle workers (one pass at a time; a request during a pass
        starts another)."""
        if self._dispatching:
            self._dispatch_again = True
            return
        self._dispatching = True
        d = self._dispatch_pass()

        def done(result: object) -> None:
            self._dispatching = False
            if isinstance(result, Failure):
                log.failure("Dispatch failed", result)
            if self._dispatch_again:
                self._dispatch_again = False
                self.dispatch()

        d.addBoth(done)

    @inlineCallbacks
    def _dispatch_pass(self) -> Any:
        queued = yield self.store.queued_runs()
        for run, plan, pinned in queued:
            if run in self._assigning:
                continue
            worker = self._pick(plan, pinned)
            if worker is None:
                continue
            self._assigning[run] = worker.name
            if pinned is None:
                yield self.store.update_run(run, worker=worker.name)
            if worker.connection is None:
                self._assigning.pop(run, None)
                continue
            log.info("Assigning run {run} to {name}", run=run, name=worker.name)
            self._write(worker.connection, p.Assign(run, plan))

    def _pick(self, plan: dict[str, Any], pinned: str | None) -> WorkerRecord | None:
        if pinned is not None:
            worker = self.workers.get(pinned)
            return worker if worker is not None and self._idle(worker) else None
        needed = plan_endpoints(plan)
        for worker in self.workers.values():
            if self._idle(worker) and worker.max_endpoints >= needed:
                return worker
        return None

    def _accepted(self, worker: WorkerRecord, accepted: p.Accepted) -> None:
        run = accepted.run
        self._assigning.pop(run, None)
        worker.test_run = run
        worker.state = "BUSY"
        self.store.update_run(
            run, state="running", worker=worker.name, only_from=("queued",)
        ).addErrback(self._log_failure, "recording accepted")
        log.info("Worker {name} accepted run {run}", name=worker.name, run=run)

    def _rejected(self, worker: WorkerRecord, rejected: p.Rejected) -> None:
        run = rejected.run
        self._assigning.pop(run, None)
        log.warn(
            "Worker {name} rejected run {run}: {reason}",
            name=worker.name,
            run=run,
            reason=rejected.reason,
        )
        self.store.update_run(
            run, state="failed", reason=f"rejected: {rejected.reason}", only_from=("queued",)
        ).addErrback(self._log_failure, "recording rejected")
        self.dispatch()

    def _metrics(self, worker: WorkerRecord, metrics: p.Metrics) -> None:
        body = {
            "seq": metrics.seq,
            "start": metrics.start,
            "end": metrics.end,
            "groups": metrics.groups,
            "total": metrics.total,
        }
        conn = worker.connection
        d = self.store.add_window(metrics.run, metrics.seq, body, metrics.dropped)
        d.addCallback(lambda upto: self._write(conn, p.Ack(metrics.run, upto)))
        d.addErrback(self._log_failure, "storing a window")

    def _finished(self, worker: WorkerRecord, finished: p.Finished) -> None:
        run = finished.run
        conn = worker.connection
        if worker.test_run == run:
            worker.test_run = None
            worker.active_endpoints = 0
        d = self.store.finish_run(run, finished.report, finished.windows, finished.dropped)

        def stored(upto: int) -> None:
            complete = upto >= finished.windows
            self._write(conn, p.Ack(run, upto, finished=complete))
            log.info(
                "Run {run} finished on {name} ({upto}/{windows} windows stored)",
                run=run,
                name=worker.name,
                upto=upto,
                windows=finished.windows,
            )

        d.addCallback(stored)
        d.addErrback(self._log_failure, "storing a report")

    @inlineCallbacks
    def _resend_cancels(self, worker: WorkerRecord) -> Any:
        runs = yield self.store.runs_to_cancel(worker.name)
        for run in runs:
            if worker.connection is not None:
                self._write(worker.connection, p.Cancel(run, "cancelled through the API"))

    # --- helpers --------------------------------------------------------------------------------

    def workers_json(self) -> list[dict[str, Any]]:
        return [w.as_json() for w in self.workers.values()]

    def stop(self) -> None:
        """Cancel the stale timers (the service is stopping)."""
        for worker in self.workers.values():
            if worker.stale_timer is not None and worker.stale_timer.active():
                worker.stale_timer.cancel()
            worker.stale_timer = None

    @staticmethod
    def _write(conn: WorkerConnection | None, message: p.Message) -> None:
        if conn is None:
            return
        try:
            text = message.to_json()
        except ValueError as error:
            log.error("Not sending {type}: {error}", type=message.TYPE, error=error)
            return
        conn.send_text(text)

    @staticmethod
    def _log_failure(failure: Failure, what: str) -> None:
        log.failure("Gateway store failed {what}", failure, what=what)


# --- the Autobahn adapter ---------------------------------------------------------------------


class GatewayServerProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """One worker's WebSocket; the token is checked in the upgrade request (401 if bad)."""

    factory: GatewayServerFactory
    worker_name: str | None = None

    def onConnect(self, request: Any) -> None:
        header = request.headers.get("authorization")
        name = self.factory.gateway.authenticate(header)
        if name is None:
            log.warn("Refused a worker connection from {peer}: bad token", peer=request.peer)
            raise ConnectionDeny(401, "Unauthorized")
        self.worker_name = name

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.worker_name is not None:
            self.factory.gateway.message(self.worker_name, self, payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.connections.discard(self)
        if self.worker_name is not None:
            self.factory.gateway.connection_lost(self.worker_name, self)

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def close(self, code: int, reason: str) -> None:
        self.sendClose(code, reason)

    def abort(self) -> None:
        self.dropConnection(abort=True)


class GatewayServerFactory(WebSocketServerFactory):  # type: ignore[misc]
    protocol = GatewayServerProtocol  # type: ignore[assignment]

    def __init__(self, gateway: Gateway, url: str | None = None, reactor: Any = None) -> None:
        super().__init__(url, reactor=reactor)
        self.gateway = gateway
        self.connections: set[GatewayServerProtocol] = set()
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_RECEIVED_BYTES,
            maxFramePayloadSize=MAX_RECEIVED_BYTES,
            openHandshakeTimeout=30,
        )

    def buildProtocol(self, addr: Any) -> Any:
        proto = super().buildProtocol(addr)
        if isinstance(proto, GatewayServerProtocol):
            self.connections.add(proto)
        return proto

    def abort_all(self) -> None:
        """Drop every worker connection (the gateway is stopping)."""
        for proto in list(self.connections):
            abort = getattr(proto.transport, "abortConnection", None)
            if abort is not None:
                abort()
        self.connections.clear()
