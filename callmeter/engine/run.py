"""A test run: the plan's endpoints registering and calling, on one reactor.

:class:`TestRun` owns the SIP sockets and stack of one process, the endpoints of every group,
their registrations and calls, and the metrics.  It schedules registrations over the ramp-up,
calls at each caller group's rate, ends every call after its duration, and at the end (or on
:meth:`cancel`) hangs up what is still up (BYE, or CANCEL), removes the registrations
(``Expires: 0``) and closes its sockets.  Every ``window_s`` it hands a metric window to
``on_window``; it knows nothing of terminals or WebSockets.

Addressing follows SPEC.md: a group with no registrar listens on SIP_IP:SIP_PORT and is called
as ``sip:USER@SIP_IP:SIP_PORT``; with a registrar, endpoints register ``sip:USER@DOMAIN`` and
calls go through the registrar (or its outbound proxy).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from callmeter.config import Config
from callmeter.engine.causes import failure_cause, unfinished_cause
from callmeter.engine.metrics import GroupMetrics, MetricSet, StreamResult, total_of
from callmeter.engine.report import caller_groups, format_report, format_window
from callmeter.plan import Group, Plan, Registrar
from callmeter.sip.call import (
    CallEnd,
    CallFailed,
    IncomingCall,
    MediaSession,
    MediaUnavailable,
    OutgoingCall,
)
from callmeter.sip.dialog import target_of
from callmeter.sip.digest import DigestClient
from callmeter.sip.message import SipRequest
from callmeter.sip.registration import Registration, RegistrationFailed
from callmeter.sip.stack import SipStack
from callmeter.sip.tls_cert import self_signed_pem
from callmeter.sip.transaction import ServerInvite
from callmeter.sip.transport import Origin, SipTransportLayer, Target, TlsSettings
from callmeter.sip.uri import SipParseError, parse_uri

__all__ = [
    "CallRecord",
    "MediaFactory",
    "RunMedia",
    "Shard",
    "SipBinding",
    "SipFactory",
    "TestRun",
    "bind_sip",
    "cannot_listen",
]

WINDOW_S = 5.0
HANGUP_GRACE_S = 3.0
#: Calls sampled per reactor turn for a metric window (about 2 ms of work; see _emit_window).
SAMPLE_SLICE = 25


class RunMedia(MediaSession, Protocol):
    """A call's media as the engine sees it: the SIP interface plus its figures."""

    def results(self) -> list[StreamResult]:
        """Cumulative figures of each stream of the call (empty before media started)."""


class MediaFactory(Protocol):
    """Makes the media of one call for an endpoint of ``group``."""

    def __call__(self, group: Group) -> RunMedia: ...


class Closable(Protocol):
    """The SIP sockets of a run, as it sees them: closed once, at the end."""

    def close(self) -> defer.Deferred[Any]: ...


@dataclass
class SipBinding:
    """What a :class:`SipFactory` bound: the sockets, the stack on them, and the SIP port."""

    transport: Closable
    stack: SipStack
    port: int


class SipFactory(Protocol):
    """Binds the SIP side of a run: given the reactor, the config, the plan's transports,
    whether this is the front shard (the one that listens at SIP_PORT) and where incoming
    messages go, returns the bound sockets and the stack (raises CannotListenError).
    Tests pass one that returns a recording stack and binds nothing."""

    def __call__(
        self,
        reactor: Any,
        config: Config,
        transports: set[str],
        front: bool,
        on_message: Callable[[Any, Origin], None],
    ) -> SipBinding: ...


def bind_sip(
    reactor: Any,
    config: Config,
    transports: set[str],
    front: bool,
    on_message: Callable[[Any, Origin], None],
) -> SipBinding:
    """The real SIP side (the default :class:`SipFactory`).

    The front shard (shard 0, or the only one) listens where the README says: UDP and TCP on
    SIP_PORT, TLS on SIP_PORT + 1 (RFC 3261 18, 26.3.1) with SIP_TLS_CERT or a self-signed
    certificate.  Other shards listen on a port of their own for the transports their
    endpoints use (``transports``, the plan's).
    """
    tls = TlsSettings(
        server_cert=config.sip_tls_cert,
        server_pem=None if config.sip_tls_cert or not front else self_signed_pem(config.sip_ip),
    )
    transport = SipTransportLayer(reactor, config.sip_ip, on_message, tls=tls)
    used = transports - {"tls"}
    listening = ["udp", "tcp"] if front else sorted(used | {"udp"})
    port = config.sip_port if front else 0
    for name in listening:
        port = transport.listen(name, port)
    if front:
        transport.listen("tls", port + 1 if config.sip_port else 0)
    stack = SipStack(reactor, transport, config.external_ip)
    return SipBinding(transport, stack, port)


def cannot_listen(sip_ip: str, error: CannotListenError) -> str:
    """What a SIP port that cannot be bound (:meth:`TestRun.open`) means to the user."""
    reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
    return (
        f"cannot listen for SIP on {sip_ip}:{error.port}: {reason} "
        "(set SIP_PORT to a free port, or SIP_PORT=0 for any)"
    )


def listens(group: Group) -> bool:
    """A group reached at its documented address ``sip:USER@SIP_IP:SIP_PORT`` (SPEC.md): a
    callee with no registrar."""
    return group.role == "callee" and group.registrar is None


@dataclass(frozen=True)
class Shard:
    """This process's share of the plan when several processes run it (engine/processes.py).

    Shard ``index`` of ``count`` owns, in every group, the endpoints with indices
    ``count * index // count`` ... (a contiguous slice); ``ports[k]`` is shard k's SIP port, so
    a caller can reach a callee that lives in another process.  Listening groups
    (:func:`listens`) all live in shard 0, the one that binds SIP_PORT (and SIP_PORT + 1 for
    TLS): an outside peer reaches every one of them at its documented address, whatever the
    process count.  The other shards take the callers and registered endpoints, whose
    addresses are their own (a Contact, a Via).
    """

    index: int = 0
    count: int = 1
    ports: tuple[int, ...] = ()

    def owned(self, size: int) -> range:
        return range(size * self.index // self.count, size * (self.index + 1) // self.count)

    def owner(self, index: int, size: int) -> int:
        for shard in range(self.count):
            if index < size * (shard + 1) // self.count:
                return shard
        return self.count - 1

    def members(self, group: Group) -> range:
        """The endpoints of ``group`` this shard runs."""
        if listens(group):
            return range(group.count) if self.index == 0 else range(0)
        return self.owned(group.count)

    def port_of(self, group: Group, index: int) -> int:
        """The SIP port of the shard that runs endpoint ``index`` of ``group``."""
        if listens(group):
            return self.ports[0]
        return self.ports[self.owner(index, group.count)]


@dataclass
class CallRecord:
    """One call as the ``--calls`` CSV shows it."""

    group: str
    direction: str
    local: str
    remote: str
    started: float
    pdd_ms: float | None = None
    setup_ms: float | None = None
    ended: float | None = None
    final_code: int | None = None
    end: str | None = None
    streams: list[StreamResult] = field(default_factory=list)


@dataclass
class _Endpoint:
    group: Group
    index: int
    user: str
    password: str | None
    registrar: Registrar | None
    registration: Registration | None = None
    registered: bool = False
    #: The first REGISTER is out and has no final answer yet.
    registering: bool = False

    @property
    def domain(self) -> str | None:
        return self.registrar.domain if self.registrar else None


class TestRun:
    """Runs ``plan`` to the end (``start()``), or until ``cancel()``."""

    log = Logger()
    __test__ = False  # not a pytest test class

    def __init__(
        self,
        plan: Plan,
        config: Config,
        reactor: Any,
        media_factory: MediaFactory,
        *,
        on_window: Callable[[dict[str, Any]], None] | None = None,
        window_s: float = WINDOW_S,
        run_id: str = "local",
        shard: Shard | None = None,
        on_window_sets: Callable[[int, float, float, dict[str, MetricSet]], None] | None = None,
        sip: SipFactory = bind_sip,
    ) -> None:
        self.sip = sip
        self.on_window_sets = on_window_sets
        self.plan = plan
        self.shard = shard or Shard()
        self.config = config
        self.reactor = reactor
        self.media_factory = media_factory
        self.on_window = on_window
        self.window_s = window_s
        self.run_id = run_id
        self.metrics = {group.name: GroupMetrics() for group in plan.groups}
        self.calls: list[CallRecord] = []
        self.endpoints: dict[str, list[_Endpoint]] = {}
        self.transport: Closable | None = None
        self.stack: SipStack | None = None
        self.active: set[OutgoingCall | IncomingCall] = set()
        self.window_seq = 0
        self.started_at = 0.0
        self.wall_started = 0.0
        self._timers: list[IDelayedCall] = []
        self._window_start = 0.0
        self._finished: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._stopping = False
        self._media: dict[OutgoingCall | IncomingCall, tuple[str, RunMedia]] = {}
        self._counted: dict[OutgoingCall | IncomingCall, list[StreamResult]] = {}
        #: Calls with no outcome yet, and how to count them as failed if the run closes first.
        self._unsettled: dict[OutgoingCall | IncomingCall, Callable[[], None]] = {}
        self.report: dict[str, Any] | None = None
        self.error: str | None = None
        #: Stopped by cancel() before the plan's duration: never a pass.
        self.interrupted = False
        self._closed = False
        self._said_out_of_ports = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> defer.Deferred[dict[str, Any]]:
        """Open the SIP sockets and begin; fires with the report when the run ends."""
        port = self.open()
        self.begin((port,) if self.shard.count == 1 else self.shard.ports)
        return self._finished

    def open(self) -> int:
        """Bind the SIP sockets through ``sip`` (raises CannotListenError); returns the SIP
        port.  By default (:func:`bind_sip`) shard 0 listens at SIP_PORT, SIP_PORT + 1 for TLS;
        other shards on a port of their own."""
        binding = self.sip(
            self.reactor,
            self.config,
            {group.transport for group in self.plan.groups},
            self.shard.index == 0,
            self._on_message,
        )
        self.transport, self.stack, port = binding.transport, binding.stack, binding.port
        # The endpoints exist as soon as their sockets do: an INVITE that comes before the
        # clock starts finds its callee (not a 404).
        self._build_endpoints()
        return port

    def begin(self, ports: tuple[int, ...]) -> defer.Deferred[dict[str, Any]]:
        """Start the clock: endpoints, registrations, calls; ``ports`` of every shard."""
        self.shard = Shard(self.shard.index, self.shard.count, tuple(ports))
        self.started_at = self.reactor.seconds()
        self.wall_started = time.time()
        self._window_start = self.started_at
        # What exists now (modules, prepared media, endpoints, the SIP stack) lives as long
        # as the test: out of the collector's sight, a full collection no longer walks it
        # (one took 51 ms at 500 endpoints, in the middle of every stream's timing).
        gc.freeze()
        self._later(self.window_s, self._emit_window)
        self._schedule_registrations()
        self._later(self.plan.duration_s, self._time_is_up)
        return self._finished

    def cancel(self) -> defer.Deferred[dict[str, Any]]:
        """Stop now: hang up, unregister, close; fires with the report of what ran."""
        if not self._stopping:
            self.interrupted = True
        self._time_is_up()
        return self._finished

    def abort(self) -> defer.Deferred[dict[str, Any]]:
        """Stop at once (a second Ctrl-C): no waiting for BYEs or un-REGISTERs; fires with
        the report of what ran, interrupted."""
        if not self._stopping:
            self.interrupted = True
            self._stopping = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._close()
        return self._finished

    @property
    def elapsed(self) -> float:
        if not self.wall_started:
            return 0.0  # not begun (cancelled while setting up)
        return float(self.reactor.seconds() - self.started_at)

    def progress(self) -> dict[str, Any]:
        """Live figures for a progress display."""
        registered = sum(e.registered for group in self.endpoints.values() for e in group)
        needs = sum(e.registration is not None for group in self.endpoints.values() for e in group)
        total = total_of(self.run_sets(), self._caller_groups())
        return {
            "elapsed_s": self.elapsed,
            "registered": registered,
            "to_register": needs,
            "calls_up": sum(1 for call in self.active if call.times.answered is not None),
            "calls_attempted": total.calls_attempted,
            "calls_established": total.calls_established,
            "failures": total.calls_failed + total.register_failed,
            "register_failed": total.register_failed,
            "calls_failed": total.calls_failed,
        }

    # -- endpoints ------------------------------------------------------------------------

    def _build_endpoints(self) -> None:
        assert self.stack is not None
        for group in self.plan.groups:
            registrar = self.plan.registrars.get(group.registrar) if group.registrar else None
            members = []
            for index in self.shard.members(group):
                endpoint = _Endpoint(
                    group, index, group.user_of(index), group.password_of(index), registrar
                )
                if group.role == "callee":
                    self.stack.add_endpoint(endpoint.user, self._incoming_handler(endpoint))
                if registrar is not None and registrar.register:
                    endpoint.registration = Registration(
                        self.stack,
                        f"sip:{endpoint.user}@{registrar.domain}",
                        self._registrar_target(registrar),
                        user=endpoint.user,
                        credentials=self._credentials(endpoint),
                        expires=registrar.expires,
                    )
                members.append(endpoint)
            self.endpoints[group.name] = members

    def _credentials(self, endpoint: _Endpoint) -> DigestClient | None:
        if endpoint.password is None:
            return None
        return DigestClient(endpoint.user, endpoint.password)

    def _registrar_target(self, registrar: Registrar) -> Target:
        if registrar.outbound_proxy:
            text = registrar.outbound_proxy
            uri = parse_uri(text if text.startswith(("sip:", "sips:")) else f"sip:{text}")
            transport, host, port = target_of(uri, registrar.transport)
            return Target(transport, host, port)
        return Target(registrar.transport, registrar.host, registrar.port)

    # -- registrations --------------------------------------------------------------------

    def _schedule_registrations(self) -> None:
        """Spread the whole plan's registrations over the ramp-up, in global order, so that
        several processes together register at the plan's pace."""
        offsets: dict[str, int] = {}
        registering = 0
        for group in self.plan.groups:
            registrar = self.plan.registrars.get(group.registrar) if group.registrar else None
            if registrar is not None and registrar.register:
                offsets[group.name] = registering
                registering += group.count
        spread = self.plan.ramp_up_s
        step = spread / registering if registering else 0.0
        for group_name, members in self.endpoints.items():
            for endpoint in members:
                if endpoint.registration is not None:
                    position = offsets[group_name] + endpoint.index
                    self._later(position * step, self._register, endpoint)
        # Calls begin after the ramp-up (and once registrations had their chance).
        self._later(spread if registering else min(spread, 0.5), self._schedule_calls)

    def _register(self, endpoint: _Endpoint) -> None:
        if self._stopping or endpoint.registration is None:
            return
        metrics = self.metrics[endpoint.group.name]
        metrics.register_attempted()
        endpoint.registering = True
        target = self._registrar_target(endpoint.registrar) if endpoint.registrar else None

        def done(time_ms: float) -> None:
            if not endpoint.registering:
                return  # already counted as unanswered when the run ended
            endpoint.registering = False
            endpoint.registered = True
            metrics.register_done(time_ms)

        def failed(failure: Failure) -> None:
            if not endpoint.registering:
                return
            endpoint.registering = False
            error = failure.value
            if isinstance(error, RegistrationFailed):
                code, cause = error.code, failure_cause(error.code, error.reason, target)
            else:
                code, cause = 500, f"500 {error}"
            metrics.register_done(None, failed_code=code, cause=cause)
            self.log.warn("{user} did not register: {cause}", user=endpoint.user, cause=cause)

        endpoint.registration.start().addCallbacks(done, failed)

    # -- calls ----------------------------------------------------------------------------

    def _schedule_calls(self) -> None:
        if self._stopping:
            return
        for group in self.plan.groups:
            if group.call is None:
                continue
            callers = self.endpoints[group.name]
            interval = 1.0 / group.call.rate_per_s
            for caller in callers:  # caller i starts at i / rate, whichever process owns it
                self._later(caller.index * interval, self._place_call, caller, 1)

    def _place_call(self, caller: _Endpoint, number: int) -> None:
        spec = caller.group.call
        if self._stopping or spec is None or self.stack is None:
            return
        metrics = self.metrics[caller.group.name]
        try:
            to_uri, target = self._destination(caller)
            media = self.media_factory(caller.group)
        except (ValueError, SipParseError) as error:
            metrics.call_attempted()
            metrics.call_failed(500, f"not placed: {error}")
            self.log.warn(
                "call from {user} not placed: {error}", user=caller.user, error=str(error)
            )
            return
        domain = caller.domain or self.config.external_ip
        call = OutgoingCall(
            self.stack,
            media,
            user=caller.user,
            from_uri=f"sip:{caller.user}@{_host(domain)}",
            to_uri=to_uri,
            target=target,
            credentials=self._credentials(caller),
            setup_timeout=spec.setup_timeout_s,
        )
        record = CallRecord(caller.group.name, "out", caller.user, to_uri, self.elapsed)
        self.calls.append(record)
        metrics.call_attempted()
        self.active.add(call)
        self._media[call] = (caller.group.name, media)
        self._unsettled[call] = lambda: self._unfinished(record, metrics, target)
        try:
            starting = call.start()
        except MediaUnavailable as error:  # no RTP ports left for its offer
            self._unsettled.pop(call, None)
            self.active.discard(call)
            self._media.pop(call, None)
            record.final_code = 503
            metrics.call_failed(503, f"not placed: {error}")
            self._out_of_ports(error)
            return
        starting.addCallbacks(
            lambda _: self._established(call, caller, record, metrics),
            lambda failure: self._call_failed(call, failure, record, metrics, target),
        )
        call.ended.addCallback(
            lambda how: self._ended(call, caller, record, metrics, how, media, number)
        )

    def _out_of_ports(self, error: Exception) -> None:
        """Said once per run (the causes count every call it cost)."""
        if not self._said_out_of_ports:
            self._said_out_of_ports = True
            self.log.error("calls are failing: {error}", error=str(error))

    def _destination(self, caller: _Endpoint) -> tuple[str, Target]:
        spec = caller.group.call
        assert spec is not None
        if not spec.to_group:
            uri = parse_uri(spec.to)
            transport, host, port = target_of(uri, caller.group.transport)
            return spec.to, Target(transport, host, port)
        callee_group = self.plan.group(spec.to)
        callee_index = caller.index % callee_group.count
        callee_user = callee_group.user_of(callee_index)
        callee_registrar = (
            self.plan.registrars.get(callee_group.registrar) if callee_group.registrar else None
        )
        if caller.registrar is not None:
            return (
                f"sip:{callee_user}@{caller.registrar.domain}",
                self._registrar_target(caller.registrar),
            )
        if callee_registrar is not None:
            return (
                f"sip:{callee_user}@{callee_registrar.domain}",
                self._registrar_target(callee_registrar),
            )
        port = self.shard.port_of(callee_group, callee_index)
        host = _host(self.config.sip_ip)
        return (
            f"sip:{callee_user}@{host}:{port}",
            Target(callee_group.transport, self.config.sip_ip, port),
        )

    def _established(
        self, call: OutgoingCall, caller: _Endpoint, record: CallRecord, metrics: GroupMetrics
    ) -> None:
        if self._unsettled.pop(call, None) is None:
            return  # counted as unfinished when the run closed
        record.pdd_ms = call.times.pdd_ms
        record.setup_ms = call.times.setup_ms
        metrics.call_established(call.times.setup_ms, call.times.pdd_ms)
        spec = caller.group.call
        assert spec is not None
        self._later(spec.duration_s, call.hangup)

    def _call_failed(
        self,
        call: OutgoingCall,
        failure: Failure,
        record: CallRecord,
        metrics: GroupMetrics,
        target: Target,
    ) -> None:
        if self._unsettled.pop(call, None) is None:
            return  # counted as unfinished when the run closed
        error = failure.value
        if self._stopping and isinstance(error, CallFailed) and error.code == 487:
            # We cancelled it because the run ended: it never got its answer.
            self._unfinished(record, metrics, target)
            return
        if isinstance(error, CallFailed):
            code, cause = error.code, failure_cause(error.code, error.reason, target)
        else:
            code, cause = 500, f"500 {error}"
        record.final_code = code
        metrics.call_failed(code, cause)

    def _unfinished(self, record: CallRecord, metrics: GroupMetrics, target: Target) -> None:
        """A call with no final answer when the run ended: 408, as RFC 3261 8.1.3.1 treats
        a request that got no final response, never a blank."""
        record.final_code = 408
        metrics.call_failed(408, unfinished_cause("INVITE", target))

    def _ended(
        self,
        call: OutgoingCall | IncomingCall,
        endpoint: _Endpoint,
        record: CallRecord,
        metrics: GroupMetrics,
        how: CallEnd,
        media: RunMedia,
        number: int | None,
    ) -> None:
        self.active.discard(call)
        self._media.pop(call, None)
        record.ended = self.elapsed
        record.final_code = record.final_code or call.times.final_code
        record.end = how.value
        streams = media.results()
        record.streams = streams
        counted = self._counted.pop(call, [])
        for index, stream in enumerate(streams):
            metrics.stream_final(stream, counted[index] if index < len(counted) else None)
        spec = endpoint.group.call
        if spec is None or number is None or self._stopping:
            return
        if spec.calls is None or number < spec.calls:
            self._later(spec.pause_s, self._place_call, endpoint, number + 1)

    # -- incoming calls -------------------------------------------------------------------

    def _incoming_handler(self, endpoint: _Endpoint) -> Callable[..., Any]:
        def on_invite(
            request: SipRequest, transaction: ServerInvite, origin: Origin
        ) -> IncomingCall | None:
            assert self.stack is not None
            metrics = self.metrics[endpoint.group.name]
            metrics.call_attempted()
            media = self.media_factory(endpoint.group)
            call = IncomingCall(
                self.stack,
                media,
                request,
                transaction,
                origin,
                user=endpoint.user,
                answer_delay=endpoint.group.answer_delay_s,
            )
            record = CallRecord(
                endpoint.group.name,
                "in",
                endpoint.user,
                str(request.headers.from_addr().uri),
                self.elapsed,
            )
            self.calls.append(record)
            self.active.add(call)
            self._media[call] = (endpoint.group.name, media)

            def settle() -> None:
                """Counted once: established if answered, else unanswered at the end."""
                if call.times.answered is not None:
                    metrics.call_established(None, None)
                else:
                    record.final_code = 408
                    metrics.call_failed(408, "incoming call not answered before the run ended")

            self._unsettled[call] = settle

            def ended(how: CallEnd) -> None:
                if self._unsettled.pop(call, None) is None:
                    self._ended(call, endpoint, record, metrics, how, media, None)
                    return
                if call.times.answered is not None or self._stopping:
                    settle()
                else:
                    code = call.times.final_code or 500
                    record.final_code = code
                    metrics.call_failed(code, f"incoming call ended with {code}")
                self._ended(call, endpoint, record, metrics, how, media, None)

            call.ended.addCallback(ended)
            call.start()
            return call

        return on_invite

    def _on_message(self, message: Any, origin: Origin) -> None:
        if self.stack is not None:
            self.stack.on_message(message, origin)

    # -- windows and the end --------------------------------------------------------------

    def _emit_window(self, calls: list[Any] | None = None, start: int = 0) -> None:
        """Sample the calls that are up, :data:`SAMPLE_SLICE` per reactor turn, then emit.

        A snapshot costs tens of microseconds per stream (E-model included): 500 streams in
        one go stalled the reactor for 40 ms every window, which every stream's pacer and
        receive timing (and so the jitter it reports) felt. In slices, the pacer runs in
        between. Stopping cancels the remaining slices; the final window samples all.
        """
        if calls is None:
            calls = [call for call in self._media if call in self.active]
        end = start + SAMPLE_SLICE
        for call in calls[start:end]:
            self._sample(call)
        if end < len(calls):
            self._later(0, self._emit_window, calls, end)
            return
        window = self._take_window()
        if self.on_window is not None:
            try:
                self.on_window(window)
            except Exception:
                self.log.failure("a metric window listener failed")
        if not self._stopping:
            self._later(self.window_s, self._emit_window)

    def _sample(self, call: Any) -> None:
        """Put a call's new packets into the window, and sample its streams' gauges."""
        entry = self._media.get(call)
        if entry is None or call not in self.active:
            return
        group, media = entry
        current = media.results()
        counted = self._counted.get(call, [])
        for index, stream in enumerate(current):
            before = counted[index] if index < len(counted) else None
            self.metrics[group].stream_progress(stream, before)
        self._counted[call] = current

    def _window(self) -> dict[str, Any]:
        """Sample every call that is up, at once, and take the window (the final one)."""
        for call in list(self._media):
            self._sample(call)
        return self._take_window()

    def _take_window(self) -> dict[str, Any]:
        """Close the window over what was sampled into it."""
        self.window_seq += 1
        now = self.reactor.seconds()
        sets = {name: metrics.take_window() for name, metrics in self.metrics.items()}
        start = self.wall_started + (self._window_start - self.started_at)
        end = self.wall_started + (now - self.started_at)
        self._window_start = now
        if self.on_window_sets is not None:
            self.on_window_sets(self.window_seq, start, end, sets)
        return format_window(self.plan, self.window_seq, start, end, sets)

    def _time_is_up(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers.clear()
        hangups = [defer.maybeDeferred(call.hangup) for call in list(self.active)]
        ended = defer.DeferredList(hangups, consumeErrors=True)
        ended.addTimeout(HANGUP_GRACE_S, self.reactor)
        ended.addBoth(lambda _: self._unregister())

    def _unregister(self) -> defer.Deferred[Any]:
        if self._closed:  # aborted meanwhile
            return defer.succeed(None)
        for members in self.endpoints.values():
            for endpoint in members:
                if endpoint.registering:  # its first REGISTER never got a final answer
                    endpoint.registering = False
                    target = (
                        self._registrar_target(endpoint.registrar) if endpoint.registrar else None
                    )
                    self.metrics[endpoint.group.name].register_done(
                        None, failed_code=408, cause=unfinished_cause("REGISTER", target)
                    )
        removals = [
            defer.maybeDeferred(e.registration.stop)
            for group in self.endpoints.values()
            for e in group
            if e.registration is not None  # also one whose first REGISTER is still out
        ]
        done = defer.DeferredList(removals, consumeErrors=True)
        done.addTimeout(HANGUP_GRACE_S, self.reactor)
        done.addBoth(lambda _: self._close())
        return done

    def _close(self) -> None:
        """The last step of every stop: count what is unsettled, the final window, close the
        sockets (a connection that does not close in HANGUP_GRACE_S is not waited for), the
        report.  Whatever fails on the way is logged and the run still finishes."""
        if self._closed:
            return
        self._closed = True
        try:
            for settle in list(self._unsettled.values()):
                settle()
            self._unsettled.clear()
            final_window = self._window()
            if self.on_window is not None:
                self.on_window(final_window)
        except Exception:
            self.log.failure("closing the run: the final window failed")
        try:
            if self.stack is not None:
                self.stack.shutdown()
            closing = self.transport.close() if self.transport is not None else defer.succeed(None)
        except Exception:
            self.log.failure("closing the run: the SIP stack failed to close")
            closing = defer.succeed(None)
        closing.addTimeout(HANGUP_GRACE_S, self.reactor)
        closing.addBoth(lambda _: self._finish())

    def _finish(self) -> None:
        if self._finished.called:
            return
        try:
            self.report = self._report()
        except Exception:
            self.log.failure("closing the run: the report failed")
            self._finished.errback()
            return
        self._finished.callback(self.report)

    def _report(self) -> dict[str, Any]:
        return format_report(
            self.plan,
            self.run_id,
            self.wall_started,
            self.elapsed,
            self.window_seq,
            self.run_sets(),
            interrupted=self.interrupted,
        )

    def _caller_groups(self) -> list[str]:
        return caller_groups(self.plan)

    def run_sets(self) -> dict[str, MetricSet]:
        return {name: metrics.run_set for name, metrics in self.metrics.items()}

    # -- helpers --------------------------------------------------------------------------

    def _later(self, delay: float, function: Callable[..., Any], *args: Any) -> None:
        timer = self.reactor.callLater(delay, function, *args)
        self._timers.append(timer)
        if len(self._timers) > 4096:
            self._timers = [t for t in self._timers if t.active()]


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address
