"""Reconnect backoff: the delays, the jitter bounds, and a real ClientService on a Clock.

The ClientService tests run on whichever Twisted the interpreter has (22.4 on Debian's
/usr/bin/python3, the current release on pip's), so both schedules are checked.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.application.internet import ClientService
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from callmeter.control.backoff import (
    MAX_JITTERED_DELAY_S,
    ReconnectBackoff,
    reconnect_delay,
)

NOMINAL = [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_nominal_schedule() -> None:
    assert [reconnect_delay(n) for n in range(1, 8)] == NOMINAL
    assert reconnect_delay(10_000) == 60.0


def test_failures_count_from_one() -> None:
    with pytest.raises(ValueError):
        reconnect_delay(0)


@given(st.integers(1, 100), st.floats(-10, 10, allow_nan=False))
def test_jitter_never_leaves_the_stated_bounds(failures: int, jitter: float) -> None:
    nominal = reconnect_delay(failures)
    delay = reconnect_delay(failures, jitter)
    assert nominal <= delay <= nominal * 1.1
    assert 5.0 <= delay <= MAX_JITTERED_DELAY_S == 66.0


def test_jitter_is_up_to_ten_percent() -> None:
    assert reconnect_delay(1, 1.0) == pytest.approx(5.5)
    assert reconnect_delay(5, 0.5) == pytest.approx(63.0)


def test_policy_counts_its_own_calls_and_resets() -> None:
    policy = ReconnectBackoff(jitter=lambda: 0.0)
    # ClientService passes 1 after every TCP connection; the policy keeps doubling anyway.
    assert [policy(1) for _ in range(6)] == NOMINAL[:6]
    assert policy.failures == 6
    policy.reset()
    assert policy(1) == 5.0


# --- a real ClientService ---------------------------------------------------------------------

REFUSE, AUTH_FAILS, AUTHENTICATES = "refuse", "auth fails", "authenticates"


@implementer(IStreamClientEndpoint)
class ScriptedEndpoint:
    """Each connect() plays the next outcome: TCP refused; TCP accepted then the gateway closes
    after 1 s without a welcome (a refused token); or accepted, ``welcome`` after 1 s (the
    client resets the backoff) and the connection lost ``session_s`` later."""

    def __init__(
        self, clock: Clock, outcomes: list[str], on_welcome: Callable[[], None], session_s: float
    ) -> None:
        self.clock = clock
        self.outcomes = list(outcomes)
        self.on_welcome = on_welcome
        self.session_s = session_s
        self.attempts: list[float] = []

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        self.attempts.append(self.clock.seconds())
        outcome = self.outcomes.pop(0) if self.outcomes else REFUSE
        if outcome == REFUSE:
            return defer.fail(ConnectionRefusedError("scripted"))
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8443))
        assert protocol is not None
        protocol.makeConnection(StringTransport())

        def lost() -> None:
            protocol.connectionLost(Failure(ConnectionDone()))

        if outcome == AUTHENTICATES:
            self.clock.callLater(1.0, self.on_welcome)
            self.clock.callLater(1.0 + self.session_s, lost)
        else:
            self.clock.callLater(1.0, lost)
        return defer.succeed(protocol)


def run_service(
    outcomes: list[str], until: float, jitter: float = 0.0, session_s: float = 100.0
) -> list[float]:
    """The times of every connection attempt of a ClientService using ReconnectBackoff."""
    clock = Clock()
    policy = ReconnectBackoff(jitter=lambda: jitter)
    endpoint = ScriptedEndpoint(clock, outcomes, policy.reset, session_s)
    service = ClientService(
        endpoint, Factory.forProtocol(Protocol), retryPolicy=policy, clock=clock
    )
    service.startService()
    try:
        while clock.seconds() < until:
            clock.advance(0.25)
    finally:
        service.stopService()
    return endpoint.attempts


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 6) for a, b in itertools.pairwise(times)]


def test_client_service_waits_5_10_20_40_60_60() -> None:
    attempts = run_service([], until=300)
    assert attempts[0] == 0.0
    assert gaps(attempts) == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


def test_client_service_with_fixed_jitter() -> None:
    attempts = run_service([], until=200, jitter=0.5)
    assert gaps(attempts) == [5.25, 10.5, 21.0, 42.0, 63.0]


def test_auth_failures_keep_backing_off() -> None:
    """TCP succeeds each time (ClientService resets its own count) but the gateway refuses the
    token: the delays still double, measured from the close 1 s after each connect."""
    attempts = run_service([AUTH_FAILS] * 6, until=200)
    assert gaps(attempts) == [1 + 5.0, 1 + 10.0, 1 + 20.0, 1 + 40.0, 1 + 60.0]


def test_an_authenticated_session_resets_the_backoff() -> None:
    """Refused 4 times (5+10+20+40 s), then a session authenticates at t=76 and is lost at
    t=175: the next retry comes 5 s later, not 60 s, and doubles again from there."""
    outcomes = [REFUSE] * 4 + [AUTHENTICATES]
    attempts = run_service(outcomes, until=220, session_s=99.0)
    assert attempts[:5] == [0.0, 5.0, 15.0, 35.0, 75.0]
    assert gaps(attempts[4:]) == [100.0 + 5.0, 10.0, 20.0]


def test_a_mix_only_resets_on_welcome() -> None:
    outcomes = [REFUSE, AUTH_FAILS, REFUSE, AUTHENTICATES, AUTH_FAILS, REFUSE]
    attempts = run_service(outcomes, until=110, session_s=9.0)
    # refuse: 5; auth fails at +1: 10; refuse: 20; session of 10 s, reset: 5;
    # auth fails at +1 (count 2): 10; refuse: 20
    assert gaps(attempts) == [5.0, 1 + 10.0, 20.0, 10.0 + 5.0, 1 + 10.0, 20.0]


def test_why_not_twisted_backoff_policy() -> None:
    """Twisted's backoffPolicy (22.4 and current) waits initialDelay * factor at attempt 1 and
    adds its jitter after the cap: not the 5, 10, 20 ... schedule."""
    from twisted.application.internet import backoffPolicy

    policy = backoffPolicy(5.0, 60.0, 2.0, jitter=lambda: 1.0)
    assert [policy(n) for n in (1, 2, 5)] == [11.0, 21.0, 61.0]
