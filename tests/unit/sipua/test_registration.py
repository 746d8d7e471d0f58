"""REGISTER with digest auth against an in-memory registrar, on task.Clock (RFC 3261 10.2)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.sip.digest import DigestClient, DigestVerifier
from callmeter.sip.message import SipMessage, SipRequest, make_response, parse_message
from callmeter.sip.registration import Registration, RegistrationFailed, refresh_delay
from callmeter.sip.transport import Origin, Target

from .memory_network import MemoryNetwork

REGISTRAR = 5070


class Registrar:
    """A digest-authenticating registrar on the memory network (stateless, for tests)."""

    def __init__(
        self,
        network: MemoryNetwork,
        algorithm: str = "MD5",
        grant: int | None = None,
        min_expires: int | None = None,
    ) -> None:
        self.network = network
        self.verifier = DigestVerifier("test.example", {"1000": "secret"}.get, algorithm)
        self.grant = grant
        self.min_expires = min_expires
        self.bindings: dict[str, int] = {}
        self.requests: list[SipRequest] = []
        network.stacks[REGISTRAR] = self  # type: ignore[assignment]

    def on_message(self, message: SipMessage, origin: Origin) -> None:
        assert isinstance(message, SipRequest)
        self.requests.append(message)
        auth = message.headers.get("Authorization")
        if auth is None:
            response = make_response(message, 401, to_tag="r1")
            for challenge in self.verifier.challenges():
                response.headers.add("WWW-Authenticate", challenge)
        elif not (result := self.verifier.verify("REGISTER", auth, uri=str(message.uri))).ok:
            response = make_response(message, 401, to_tag="r1")
            for challenge in self.verifier.challenges(stale=result.stale):
                response.headers.add("WWW-Authenticate", challenge)
        else:
            expires = message.headers.expires()
            assert expires is not None
            if self.min_expires and 0 < expires < self.min_expires:
                response = make_response(message, 423, to_tag="r1")
                response.headers.add("Min-Expires", str(self.min_expires))
            else:
                granted = expires if self.grant is None or expires == 0 else self.grant
                contact = message.headers.get("Contact") or ""
                response = make_response(message, 200, to_tag="r1")
                if granted:
                    self.bindings[contact] = granted
                    response.headers.add("Contact", f"{contact};expires={granted}")
                else:
                    self.bindings.pop(contact, None)
        self.network.deliver(response, REGISTRAR, origin.port, "udp", None)


def setup(**registrar: Any) -> tuple[Clock, MemoryNetwork, Any, Registrar]:
    clock = Clock()
    network = MemoryNetwork(clock, latency=0.005)
    stack = network.attach(5060)
    return clock, network, stack, Registrar(network, **registrar)


def register(
    stack: Any, password: str = "secret", expires: int = 3600, algorithm: str = "MD5"
) -> Registration:
    return Registration(
        stack,
        "sip:1000@test.example",
        Target("udp", "127.0.0.1", REGISTRAR),
        user="1000",
        credentials=DigestClient("1000", password),
        expires=expires,
    )


def result(deferred: Any) -> Any:
    got: list[Any] = []
    deferred.addBoth(got.append)
    return got[0] if got else None


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", ("SHA-256", "MD5")])
def test_register_with_digest(algorithm: Any) -> None:
    clock, network, stack, registrar = setup(algorithm=algorithm)
    registration = register(stack)
    started = registration.start()
    clock.pump([0.005] * 10)
    # REGISTER -> 401 -> REGISTER with Authorization -> 200: two round trips of 10 ms.
    assert result(started) == pytest.approx(20.0, abs=0.5)
    assert registration.registered and len(registrar.bindings) == 1
    first, second = registrar.requests
    assert first.headers.call_id() == second.headers.call_id()
    assert [first.headers.cseq().number, second.headers.cseq().number] == [1, 2]
    wanted = "SHA-256" if algorithm != "MD5" else "MD5"
    assert f"algorithm={wanted}" in (second.headers.get("Authorization") or "")


def test_refresh_before_expiry_and_unregister() -> None:
    clock, network, stack, registrar = setup(grant=120)
    registration = register(stack)
    registration.start()
    clock.pump([0.005] * 10)
    assert registration.granted == 120
    clock.advance(89)
    assert len(registrar.requests) == 2
    clock.pump([1.0] + [0.005] * 10)  # refresh at 120 - 30 = 90 s, pre-authorized
    assert len(registrar.requests) == 3 and registration.refreshes == 1
    assert "Authorization" in registrar.requests[2].headers
    done = registration.stop()
    clock.pump([0.005] * 10)
    assert result(done) is None and registrar.bindings == {}
    assert registrar.requests[-1].headers.expires() == 0
    clock.advance(3600)
    assert len(registrar.requests) == 4  # no refresh after stop


def test_wrong_password_fails_with_401_after_one_retry() -> None:
    clock, network, stack, registrar = setup()
    started = register(stack, password="wrong").start()
    clock.pump([0.005] * 20)
    failure = result(started)
    assert isinstance(failure.value, RegistrationFailed)
    assert failure.value.code == 401 and "credentials rejected" in failure.value.reason
    assert len(registrar.requests) == 2


def test_interval_too_brief_is_retried_with_min_expires() -> None:
    clock, network, stack, registrar = setup(min_expires=600)
    registration = register(stack, expires=60)
    registration.start()
    clock.pump([0.005] * 20)
    assert registration.registered and registration.granted == 600
    assert registrar.requests[-1].headers.expires() == 600


def test_registrar_down_is_408_after_timer_f() -> None:
    clock = Clock()
    network = MemoryNetwork(clock)
    stack = network.attach(5060)
    network.attach(REGISTRAR)
    network.drop = lambda m, p: p == REGISTRAR
    started = register(stack).start()
    clock.pump([0.5] * 70)
    assert result(started).value.code == 408


def test_refresh_delay() -> None:
    assert refresh_delay(3600) == 3570
    assert refresh_delay(60) == 30
    assert refresh_delay(1) == 1.0


def test_parse_round_trip_of_register() -> None:
    clock, network, stack, registrar = setup()
    register(stack).start()
    clock.pump([0.005] * 10)
    raw = registrar.requests[1].to_bytes()
    assert parse_message(raw).to_bytes() == raw


def test_stop_during_the_first_register_removes_the_binding_it_gets() -> None:
    """Issue 12: stop() while the authorized first REGISTER is out: start() fails at once
    (408, unanswered), and the 200 that comes after is followed by Expires: 0."""
    clock, network, stack, registrar = setup()
    registration = register(stack)
    started = registration.start()
    clock.pump([0.005] * 3 + [0.001])  # 401 at 10 ms, the REGISTER with credentials at 15
    assert len(registrar.requests) == 2 and registrar.bindings  # granted, 200 on its way
    done = registration.stop()
    failure = result(started)
    assert isinstance(failure.value, RegistrationFailed) and failure.value.code == 408
    assert result(done) is None or not done.called
    clock.pump([0.005] * 10)
    assert result(done) is None
    assert registrar.requests[-1].headers.expires() == 0 and registrar.bindings == {}
    assert [r.headers.cseq().number for r in registrar.requests] == [1, 2, 3]
    assert not registration.registered
    clock.advance(7200)
    assert len(registrar.requests) == 3  # no refresh ever


def test_stop_before_the_challenge_sends_nothing_more() -> None:
    clock, network, stack, registrar = setup()
    registration = register(stack)
    started = registration.start()
    done = registration.stop()
    assert result(started).value.code == 408
    assert not done.called  # waits for the answer to the REGISTER that is out
    clock.pump([0.005] * 10)
    assert result(done) is None
    assert len(registrar.requests) == 1 and registrar.bindings == {}  # 401: nothing bound


def test_stop_before_start_and_twice() -> None:
    clock, network, stack, registrar = setup()
    registration = register(stack)
    assert result(registration.stop()) is None
    assert result(registration.stop()) is None
    assert result(registration.start()).value.code == 408  # stopped first: fails at once
    assert registrar.requests == []


def test_stop_during_a_refresh_waits_for_it_then_unregisters() -> None:
    clock, network, stack, registrar = setup(grant=120)
    registration = register(stack)
    registration.start()
    clock.pump([0.005] * 10)
    clock.advance(90)  # the refresh is out

    def sent() -> int:
        return sum(line.startswith("REGISTER") for line in network.lines())

    assert sent() == 3
    done = registration.stop()
    assert sent() == 3 and not done.called  # no Expires: 0 racing the refresh
    clock.pump([0.005] * 10)
    assert result(done) is None and registrar.bindings == {}
    assert registrar.requests[-1].headers.expires() == 0
    assert [r.headers.cseq().number for r in registrar.requests] == [1, 2, 3, 4]


def test_registrar_unreachable_is_503() -> None:
    clock = Clock()
    network = MemoryNetwork(clock)
    stack = network.attach(5060)  # nothing at REGISTRAR: the transport reports an error
    started = register(stack).start()
    clock.pump([0.01] * 5)
    failure = result(started)
    assert failure.value.code == 503
