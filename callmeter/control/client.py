"""The worker's side of the control plane: session logic and its Autobahn WebSocket adapter.

SPEC.md "Control plane" and docs/protocol.md are the contract. Three pieces, one job each:

:class:`ControlClient`
    The session brain, alive across connections: the worker state machine (OFFLINE,
    CONNECTING, ONLINE, BUSY, DRAINING, ERROR) driving :class:`~callmeter.status.WorkerStatus`,
    hello/welcome, heartbeats (:class:`~callmeter.control.heartbeat.HeartbeatMonitor`), the
    assignment of runs to the engine (:mod:`callmeter.control.engine_api`), metric windows
    through the :class:`~callmeter.control.spool.WindowSpool` (sent, acknowledged, resent after
    a reconnect) and draining. It talks to a connection only through :class:`Connection`
    (``send_text``, ``drop``, ``close``), so tests drive it with a recording dummy.

:class:`ControlClientProtocol` / :class:`ControlClientFactory`
    The thin Autobahn (Twisted) adapter: ``onOpen`` / ``onMessage`` / ``onClose`` into the
    client, text frames out. The worker token is the upgrade request's
    ``Authorization: Bearer`` header (RFC 6750 section 2.1), never in the URL.

:func:`describe_failure` and :class:`ObservedEndpoint`
    Turn what went wrong (TLS, HTTP 401 at the upgrade, a proxy's refusal, a refused TCP
    connection) into the one-line reason shown by ``/health``, systemd's ``STATUS=`` and the log.

Frame size: Autobahn is told to accept messages up to :data:`MAX_RECEIVED_BYTES` (1 MiB) so a
frame over the protocol's 64 KiB limit still reaches :func:`~callmeter.control.protocol.
parse_message` and gets a ``too_large`` error back with the connection kept up; beyond 1 MiB,
Autobahn closes the connection with 1009 (RFC 6455 section 7.4.1, "message too big"), the one
case where keeping the connection would mean buffering whatever a broken peer sends.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any, Protocol

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IProtocol as IProtocolIface
from twisted.internet.interfaces import IProtocolFactory, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from callmeter.control import protocol as p
from callmeter.control.engine_api import (
    Engine,
    MetricWindow,
    PreparedPlan,
    PrepareError,
    RunHandle,
)
from callmeter.control.heartbeat import DEFAULT_TIMEOUT_S, HeartbeatMonitor
from callmeter.control.proxy import ProxyError
from callmeter.control.spool import WindowSpool
from callmeter.status import WorkerState, WorkerStatus

__all__ = [
    "AUTO_PING_INTERVAL_S",
    "AUTO_PING_TIMEOUT_S",
    "MAX_RECEIVED_BYTES",
    "SPOOL_MAX_WINDOWS",
    "Connection",
    "ControlClient",
    "ControlClientFactory",
    "ControlClientProtocol",
    "ObservedEndpoint",
    "describe_failure",
]

SPOOL_MAX_WINDOWS = 720
"""Unacknowledged windows kept: one hour of 5 s windows (docs/protocol.md "Spool bound")."""

MAX_RECEIVED_BYTES = 1024 * 1024
"""Autobahn's own message limit; frames between 64 KiB and this get a ``too_large`` error."""

AUTO_PING_INTERVAL_S = 20.0
"""WebSocket pings (RFC 6455 section 5.5.2) keep NAT and proxy idle timers from expiring."""

AUTO_PING_TIMEOUT_S = DEFAULT_TIMEOUT_S
"""No pong within this: Autobahn drops the connection (a second, lower-level dead-path check)."""

_REASON_MAX = 200
_UPGRADE_STATUS = re.compile(r"upgrade failed \[(\d{3})\]:?\s*(.*)")

log = Logger()


class Connection(Protocol):
    """What :class:`ControlClient` needs of an open WebSocket."""

    def send_text(self, text: str) -> None:
        """Send one text frame."""

    def drop(self) -> None:
        """Abort the connection now (no closing handshake): the path is dead."""

    def close(self) -> None:
        """Start a clean closing handshake (1000)."""


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _REASON_MAX else text[: _REASON_MAX - 3] + "..."


class _Phase:
    """Where the connection is (the state machine's connection half)."""

    OFFLINE = "offline"  # not connected, not trying (or lost an authenticated session)
    CONNECTING = "connecting"  # TCP/TLS/proxy/upgrade/hello in progress
    ONLINE = "online"  # welcome received: authenticated
    FAILED = "failed"  # the last attempt failed: ERROR with its reason


class ControlClient:
    """The control session of one worker, across reconnections (docs/protocol.md "Session").

    The worker's state is derived from two halves: the connection phase (offline, connecting,
    online, failed) and the work (a run in progress, draining)::

        draining                   -> DRAINING
        a run in progress          -> BUSY   (reason: the connection's trouble, if any)
        online                     -> ONLINE
        connecting                 -> CONNECTING (reason: the last error, if any)
        the last attempt failed    -> ERROR  (reason: why)
        otherwise                  -> OFFLINE

    A run keeps going while the gateway is away: its windows wait in the spool.
    ``on_authenticated`` is called on every ``welcome`` (the service resets its backoff there).
    ``cpu_time`` gives the process's CPU seconds (heartbeat ``load``).
    """

    def __init__(
        self,
        *,
        worker_name: str,
        version: str,
        max_endpoints: int,
        engine: Engine,
        status: WorkerStatus,
        clock: IReactorTime,
        spool: WindowSpool | None = None,
        on_authenticated: Callable[[], None] = lambda: None,
        heartbeat_timeout_s: float = DEFAULT_TIMEOUT_S,
        cpu_time: Callable[[], float] = time.process_time,
        transports: tuple[str, ...] = ("udp", "tcp", "tls"),
        codecs: tuple[str, ...] = ("PCMU", "PCMA"),
    ) -> None:
        self._worker_name = worker_name
        self._version = version
        self.max_endpoints = max_endpoints
        self._engine = engine
        self._status = status
        self._clock = clock
        self.spool = spool if spool is not None else WindowSpool(SPOOL_MAX_WINDOWS)
        self._on_authenticated = on_authenticated
        self._heartbeat_timeout_s = heartbeat_timeout_s
        self._cpu_time = cpu_time
        self._capabilities = p.Capabilities(max_endpoints, transports, codecs)

        self.phase = _Phase.OFFLINE
        self.reason: str | None = None
        self.worker_id: str | None = None
        self._conn: Connection | None = None
        self._heartbeat: HeartbeatMonitor | None = None
        self._drop_reason: str | None = None
        self._run: str | None = None
        #: The run being prepared (its media fetched): accepted or rejected when that ends.
        self._preparing: str | None = None
        self._handle: RunHandle | None = None
        self._draining = False
        self._flush_waiters: list[Deferred[None]] = []
        self._cpu_mark = (clock.seconds(), cpu_time())
        self._update_state()

    # --- what the worker is doing --------------------------------------------------------------

    @property
    def run(self) -> str | None:
        """The run in progress, if any."""
        return self._run

    @property
    def online(self) -> bool:
        return self.phase == _Phase.ONLINE

    def _update_state(self, *, announce: bool = True) -> None:
        if self._draining:
            state, reason = WorkerState.DRAINING, None
        elif self._run is not None:
            state, reason = WorkerState.BUSY, (None if self.online else self.reason)
        elif self.phase == _Phase.ONLINE:
            state, reason = WorkerState.ONLINE, None
        elif self.phase == _Phase.CONNECTING:
            state, reason = WorkerState.CONNECTING, self.reason
        elif self.phase == _Phase.FAILED:
            state, reason = WorkerState.ERROR, self.reason
        else:
            state, reason = WorkerState.OFFLINE, self.reason
        before = self._status.state
        self._status.set_load(self._active_endpoints(), self._run)
        self._status.set_state(state, reason)
        if state is not before:
            log.info(
                "Worker state {state}{why}", state=state.value, why=f": {reason}" if reason else ""
            )
            if self.online and announce:
                self._send(p.Status(state.value, reason, self._run))

    def _active_endpoints(self) -> int:
        if self._handle is None:
            return 0
        try:
            return max(0, int(self._handle.active_endpoints))
        except Exception:
            return 0

    # --- connection events (from the endpoint and the protocol) ------------------------------

    def attempt_started(self) -> None:
        """A connection attempt begins (TCP, proxy, TLS, upgrade)."""
        self.phase = _Phase.CONNECTING
        self._update_state()

    def attempt_failed(self, reason: str) -> None:
        """The attempt failed before a WebSocket existed (refused, proxy, DNS, timeout)."""
        log.warn("Cannot connect to the gateway: {reason}", reason=reason)
        self.phase = _Phase.FAILED
        self.reason = reason
        self._update_state()

    def connection_made(self, conn: Connection) -> None:
        """The WebSocket is open (upgrade accepted): say hello, wait for welcome."""
        self._conn = conn
        self._drop_reason = None
        self.phase = _Phase.CONNECTING
        self._update_state()
        self._write(conn, p.Hello(self._worker_name, self._version, self._capabilities))

    def connection_lost(self, conn: Connection | None, reason: str) -> None:
        """The connection closed (or never opened: the upgrade or TLS failed)."""
        if conn is not None and conn is not self._conn and self._conn is not None:
            return  # an old connection's late notice
        was_online = self.online
        self._conn = None
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        self._status.set_connected(False)
        reason = self._drop_reason or reason
        self._drop_reason = None
        if was_online:
            self.phase = _Phase.OFFLINE
            self.reason = f"connection to the gateway lost: {reason}"
            log.warn("{reason}", reason=self.reason)
        else:
            self.phase = _Phase.FAILED
            self.reason = reason
            log.warn("Gateway session failed before welcome: {reason}", reason=reason)
        self._update_state()

    def message_received(self, payload: bytes | str) -> None:
        """One frame from the gateway: parse it, answer it; never raises."""
        if self._heartbeat is not None:
            self._heartbeat.received()
        try:
            message = p.parse_message(payload, expect=p.GATEWAY_MESSAGES)
        except p.ProtocolError as error:
            self._refuse(error)
            return
        try:
            self._dispatch(message)
        except Exception:
            log.failure("Error handling a {type} message", type=message.TYPE)
            self._send(p.Error("internal", f"the worker failed to handle {message.TYPE}"))

    def _refuse(self, error: p.ProtocolError) -> None:
        log.warn(
            "Refused a message from the gateway: {code}: {detail}",
            code=error.code,
            detail=error.detail,
        )
        if error.in_reply_to != "error" and self._conn is not None:
            self._write(self._conn, p.error_reply(error))

    def _dispatch(self, message: p.Message) -> None:
        if isinstance(message, p.Error):
            log.warn(
                "The gateway refused our {what}: {code}: {detail}",
                what=message.in_reply_to or "message",
                code=_clip(message.code),
                detail=_clip(message.detail),
            )
        elif isinstance(message, p.Welcome):
            self._welcome(message)
        elif not self.online:
            self._refuse(
                p.ProtocolError(p.ErrorCode.UNEXPECTED_TYPE, "expected welcome first", message.TYPE)
            )
        elif isinstance(message, p.HeartbeatAck):
            if self._heartbeat is not None:
                self._heartbeat.acknowledged(message.seq)
        elif isinstance(message, p.Assign):
            self._assign(message)
        elif isinstance(message, p.Ack):
            self.spool.ack(message)
            self._check_flushed()
        elif isinstance(message, p.Cancel):
            self._cancel(message)

    def _welcome(self, welcome: p.Welcome) -> None:
        if self._conn is None or self.online:
            return
        self.phase = _Phase.ONLINE
        self.reason = None
        self.worker_id = welcome.worker_id
        self._status.set_connected(True)
        self._on_authenticated()
        log.info(
            "Gateway session authenticated as {worker_id} (clock skew {skew:.1f} s)",
            worker_id=welcome.worker_id,
            skew=(welcome.server_time - self._clock.seconds()) if welcome.server_time else 0.0,
        )
        self._update_state(announce=False)  # heartbeat 1 carries the state
        self._heartbeat = HeartbeatMonitor(
            self._clock,
            self._send_heartbeat,
            self._heartbeat_dead,
            interval_s=welcome.heartbeat_interval_s,
            timeout_s=self._heartbeat_timeout_s,
        )
        self._heartbeat.start()
        for item in self.spool.pending():
            self._send(item)

    # --- heartbeats -----------------------------------------------------------------------------

    def _send_heartbeat(self, seq: int) -> None:
        self._send(
            p.Heartbeat(
                seq=seq,
                state=self._status.state.value,
                active_endpoints=self._active_endpoints(),
                test_run=self._run,
                load=self._load(),
            )
        )

    def _load(self) -> float:
        now, cpu = self._clock.seconds(), self._cpu_time()
        then, cpu_then = self._cpu_mark
        self._cpu_mark = (now, cpu)
        if now <= then:
            return 0.0
        return round(max(0.0, (cpu - cpu_then) / (now - then)), 3)

    def _heartbeat_dead(self) -> None:
        assert self._heartbeat is not None
        self._drop_reason = (
            f"no reply from the gateway within {self._heartbeat.timeout_s:g} s "
            f"of heartbeat {self._heartbeat.seq}"
        )
        log.warn("{reason}: dropping the connection", reason=self._drop_reason)
        if self._conn is not None:
            self._conn.drop()

    # --- runs -----------------------------------------------------------------------------------

    def _assign(self, assign: p.Assign) -> None:
        """validate (now) -> prepare (the media fetched: later) -> accepted and started, or
        rejected with the reason; the answer comes when preparation ends."""
        run = assign.run
        if run == self._run or run in set(self.spool.runs()):
            # The gateway sent it again (it restarted, or missed our answer): same answer.
            self._send(p.Accepted(run))
            return
        if run == self._preparing:
            log.info("Run {run} is being prepared: its answer follows", run=run)
            return
        reason = self._why_not(assign)
        if reason is not None:
            log.warn("Rejected run {run}: {reason}", run=run, reason=reason)
            self._send(p.Rejected(run, reason))
            return
        self._preparing = run
        try:
            preparing = self._engine.prepare(assign.plan)
        except Exception:
            preparing = fail()
        preparing.addCallbacks(
            lambda prepared: self._prepared(run, prepared),
            lambda failure: self._not_prepared(run, failure),
        )

    def _prepared(self, run: str, prepared: PreparedPlan) -> None:
        self._preparing = None
        if self._draining:
            self._reject(run, "the worker is stopping")
            return
        try:
            handle = self._engine.start(run, prepared, lambda w: self._on_window(run, w))
        except Exception as error:
            log.failure("The engine could not start run {run}", run=run)
            self._reject(run, _clip(f"the engine could not start the run: {error}"))
            return
        self._run = run
        self._handle = handle
        log.info("Accepted run {run}", run=run)
        self._send(p.Accepted(run))
        self._update_state()
        handle.finished.addCallbacks(
            lambda report: self._on_finished(run, report),
            lambda failure: self._on_engine_failure(run, failure),
        )

    def _not_prepared(self, run: str, failure: Failure) -> None:
        self._preparing = None
        if failure.check(PrepareError):
            reason = _clip(failure.getErrorMessage())
        else:
            log.failure("The engine could not prepare run {run}", failure, run=run)
            reason = _clip(f"the engine could not prepare the run: {failure.getErrorMessage()}")
        self._reject(run, reason)

    def _reject(self, run: str, reason: str) -> None:
        log.warn("Rejected run {run}: {reason}", run=run, reason=reason)
        self._send(p.Rejected(run, reason))

    def _why_not(self, assign: p.Assign) -> str | None:
        if self._draining:
            return "the worker is stopping"
        if self._run is not None:
            return f"run {self._run} is in progress"
        if self._preparing is not None:
            return f"run {self._preparing} is being prepared"
        try:
            problems = self._engine.validate(assign.plan)
        except Exception:
            log.failure("Plan validation failed for run {run}", run=assign.run)
            return "the plan could not be validated"
        if problems:
            return _clip("invalid plan: " + "; ".join(problems))
        needed = self._engine.endpoints(assign.plan)
        limit = self.max_endpoints
        if needed > limit:
            return f"plan needs {needed} endpoints, MAX_ENDPOINTS is {limit}"
        return None

    def _on_window(self, run: str, window: MetricWindow) -> None:
        if run != self._run:
            return
        groups, total = window.groups, window.total
        try:
            p.Metrics(run, 1, window.start, window.end, groups, total).to_json()
        except ValueError as error:
            log.error("Metric window of run {run} not sendable: {error}", run=run, error=error)
            groups, total = {}, {"error": "window over the 64 KiB message limit"}
        message = self.spool.append(run, window.start, window.end, groups, total)
        self._send(message)
        self._status.set_load(self._active_endpoints(), self._run)

    def _cancel(self, cancel: p.Cancel) -> None:
        if cancel.run != self._run or self._handle is None:
            log.info("Cancel for run {run}, which is not running here", run=cancel.run)
            self._send(
                p.Error("unknown_run", "run: not running on this worker", in_reply_to="cancel")
            )
            return
        log.info("Cancelling run {run}: {reason}", run=cancel.run, reason=_clip(cancel.reason))
        self._handle.cancel()

    def _on_finished(self, run: str, report: dict[str, Any]) -> None:
        dropped = self.spool.dropped_count(run)
        if dropped:
            report = {**report, "windows_dropped": dropped}
        log.info("Run {run} finished", run=run)
        self._end_run(run, report)

    def _on_engine_failure(self, run: str, failure: Failure) -> None:
        log.failure("The engine failed running {run}", failure, run=run)
        self._end_run(run, {"passed": False, "error": _clip(f"engine error: {failure.value}")})

    def _end_run(self, run: str, report: dict[str, Any]) -> None:
        try:
            p.Finished(run, report, windows=self.spool.last_seq(run)).to_json()
        except ValueError as error:
            log.error("Report of run {run} not sendable: {error}", run=run, error=error)
            report = {"passed": bool(report.get("passed", False)), "error": "report over 64 KiB"}
        message = self.spool.finish(run, report)
        if self._run == run:
            self._run = None
            self._handle = None
        self._send(message)
        self._update_state()

    # --- draining ---------------------------------------------------------------------------------

    def drain(self, timeout_s: float) -> Deferred[None]:
        """Stop: DRAINING, cancel the run cleanly, flush its last windows and ``finished``.

        Fires when everything was acknowledged, or after ``timeout_s``, whichever is first.
        """
        self._draining = True
        self._update_state()
        ended: Deferred[None]
        if self._handle is not None:
            log.info("Draining: cancelling run {run}", run=self._run)
            handle = self._handle
            handle.cancel()
            ended = Deferred()

            def run_ended(result: object) -> object:
                ended.callback(None)
                return result

            handle.finished.addBoth(run_ended)
        else:
            ended = succeed(None)
        ended.addCallback(lambda _: self._flushed())
        ended.addTimeout(timeout_s, self._clock)

        def timed_out(failure: Failure) -> None:
            log.warn("Draining did not finish within {timeout} s", timeout=timeout_s)

        ended.addErrback(timed_out)
        return ended

    def _flushed(self) -> Deferred[None]:
        if not self.online or not list(self.spool.runs()):
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._flush_waiters.append(waiter)
        return waiter

    def _check_flushed(self) -> None:
        if self._flush_waiters and not list(self.spool.runs()):
            waiters, self._flush_waiters = self._flush_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def close(self) -> None:
        """Start a clean close of the current connection, if any."""
        if self._conn is not None:
            self._conn.close()

    # --- sending ----------------------------------------------------------------------------------

    def _send(self, message: p.Message) -> None:
        """Send on the authenticated connection; while away, windows wait in the spool."""
        if self._conn is not None and self.online:
            self._write(self._conn, message)

    def _write(self, conn: Connection, message: p.Message) -> None:
        try:
            text = message.to_json()
        except ValueError as error:
            log.error("Not sending {type}: {error}", type=message.TYPE, error=error)
            return
        conn.send_text(text)


# --- failure descriptions ---------------------------------------------------------------------


def describe_failure(failure: Failure | BaseException, target: str = "the gateway") -> str:
    """One line saying why a connection attempt or connection failed (no secrets in it)."""
    error: BaseException = failure.value if isinstance(failure, Failure) else failure  # type: ignore[assignment]
    if isinstance(error, ProxyError):
        return _clip(str(error))
    module = type(error).__module__
    if module.startswith("OpenSSL"):
        return _clip(f"TLS handshake with {target} failed: {_openssl_text(error)}")
    if module.startswith("service_identity") or type(error).__name__ == "VerificationError":
        return _clip(f"TLS: the certificate of {target} does not match its name: {error}")
    from twisted.internet import error as errors

    if isinstance(error, errors.ConnectionRefusedError):
        return f"connection refused by {target}"
    if isinstance(error, errors.DNSLookupError):
        return f"cannot resolve the host name of {target}"
    if isinstance(error, errors.TimeoutError | errors.UserError) or "timeout" in module:
        return _clip(f"timed out connecting to {target}")
    text = str(error) or type(error).__name__
    return _clip(f"cannot connect to {target}: {text}")


def _openssl_text(error: BaseException) -> str:
    args = error.args[0] if error.args else None
    if isinstance(args, list):
        parts = [str(item[-1]) for item in args if isinstance(item, tuple) and item]
        if parts:
            return ", ".join(parts)
    return str(error) or type(error).__name__


def describe_close(
    was_not_clean_reason: str | None,
    lost: Failure | None,
    was_clean: bool,
    code: int | None,
    reason: str | None,
) -> str:
    """Why a WebSocket connection ended, from Autobahn's view of it and the transport's."""
    match = _UPGRADE_STATUS.search(was_not_clean_reason or "")
    if match is not None:
        status, phrase = match.group(1), match.group(2).strip()
        shown = f"HTTP {status}{(' ' + phrase) if phrase else ''}"
        if status in ("401", "403"):
            return _clip(f"the gateway refused the worker token ({shown})")
        return _clip(f"the gateway refused the WebSocket upgrade ({shown})")
    if lost is not None:
        module = type(lost.value).__module__
        if module.startswith(("OpenSSL", "service_identity")) or (
            type(lost.value).__name__ == "VerificationError"
        ):
            return describe_failure(lost)
    if was_clean and code is not None:
        return _clip(f"closed by the gateway (code {code}{': ' + reason if reason else ''})")
    if was_not_clean_reason:
        return _clip(was_not_clean_reason)
    if lost is not None:
        return _clip(lost.getErrorMessage())
    return "connection closed"


# --- the Autobahn adapter ---------------------------------------------------------------------


class ControlClientProtocol(WebSocketClientProtocol):  # type: ignore[misc]
    """One WebSocket connection to the gateway; everything else is :class:`ControlClient`."""

    factory: ControlClientFactory
    _lost: Failure | None = None
    _opened = False

    def onOpen(self) -> None:
        self._opened = True
        self.factory.client.connection_made(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.client.message_received(payload)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._lost = reason
        super().connectionLost(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        why = describe_close(
            getattr(self, "wasNotCleanReason", None), self._lost, wasClean, code, reason
        )
        self.factory.client.connection_lost(self if self._opened else None, why)

    # Connection

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    def drop(self) -> None:
        self.dropConnection(abort=True)

    def close(self) -> None:
        self.sendClose(1000)


class ControlClientFactory(WebSocketClientFactory):  # type: ignore[misc]
    """Builds :class:`ControlClientProtocol` for ``url`` with the token in the upgrade request.

    ``auto_ping_interval_s`` 0 disables WebSocket pings (unit tests on a Clock: Autobahn's
    timers run on the global reactor through txaio, not on ``reactor``).
    """

    protocol = ControlClientProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(
        self,
        url: str,
        token: str,
        client: ControlClient,
        reactor: Any,
        *,
        version: str,
        auto_ping_interval_s: float = AUTO_PING_INTERVAL_S,
        auto_ping_timeout_s: float = AUTO_PING_TIMEOUT_S,
    ) -> None:
        super().__init__(
            url,
            headers={"Authorization": f"Bearer {token}"},
            useragent=f"callmeter-worker/{version}",
            reactor=reactor,
        )
        self.client = client
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_RECEIVED_BYTES,
            maxFramePayloadSize=MAX_RECEIVED_BYTES,
            autoPingInterval=auto_ping_interval_s,
            autoPingTimeout=auto_ping_timeout_s if auto_ping_interval_s else 0,
            openHandshakeTimeout=30,
            closeHandshakeTimeout=5,
        )

    def __repr__(self) -> str:
        return "<ControlClientFactory>"  # the default repr would show the headers (the token)


@implementer(IStreamClientEndpoint)
class ObservedEndpoint:
    """Wraps the gateway endpoint to tell the client of each attempt and of its failure."""

    def __init__(self, endpoint: IStreamClientEndpoint, client: ControlClient, target: str) -> None:
        self._endpoint = endpoint
        self._client = client
        self._target = target

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocolIface]:
        self._client.attempt_started()
        d: Deferred[IProtocolIface] = self._endpoint.connect(protocolFactory)

        def failed(failure: Failure) -> Failure:
            if not failure.check(CancelledError):
                self._client.attempt_failed(describe_failure(failure, self._target))
            return failure

        d.addErrback(failed)
        return d
