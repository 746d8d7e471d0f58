"""RTP port pairs: RFC 3550 section 11 parity, exhaustion, reuse order, bind failures."""

from __future__ import annotations

import errno

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.error import CannotListenError

from callmeter.rtp.ports import (
    NoBindablePortPair,
    PortPair,
    PortRangeExhausted,
    RtpPortAllocator,
    bind_pair,
)


def test_pairs_are_even_rtp_and_next_odd_rtcp() -> None:
    allocator = RtpPortAllocator(10000, 10009)
    pairs = [allocator.allocate() for _ in range(5)]
    assert pairs == [PortPair(p, p + 1) for p in (10000, 10002, 10004, 10006, 10008)]
    assert allocator.in_use == 5 and allocator.available == 0


def test_odd_min_is_adjusted_up_and_max_must_hold_the_rtcp_port() -> None:
    allocator = RtpPortAllocator(10001, 10006)  # 10002/3, 10004/5; 10006 has no 10007
    assert [allocator.allocate(), allocator.allocate()] == [(10002, 10003), (10004, 10005)]
    assert allocator.capacity == 2
    with pytest.raises(PortRangeExhausted):
        allocator.allocate()


@pytest.mark.parametrize(
    ("low", "high", "message"),
    [
        (10001, 10002, "holds no even/odd port pair"),
        (10000, 10000, "holds no even/odd port pair"),
        (20000, 10000, "holds no even/odd port pair"),
        (0, 10000, "min_port must be a port number"),
        (10000, 70000, "max_port must be a port number"),
    ],
)
def test_invalid_ranges_are_rejected(low: int, high: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPortAllocator(low, high)


def test_smallest_range_and_the_top_of_the_port_space() -> None:
    assert RtpPortAllocator(10000, 10001).allocate() == (10000, 10001)
    assert RtpPortAllocator(65534, 65535).allocate() == (65534, 65535)
    assert RtpPortAllocator(10000, 65535).capacity == 27768  # the SPEC's default range


def test_exhaustion_names_the_range_and_the_count() -> None:
    allocator = RtpPortAllocator(10000, 10005)
    for _ in range(3):
        allocator.allocate()
    with pytest.raises(PortRangeExhausted) as caught:
        allocator.allocate()
    assert "10000-10005" in str(caught.value)
    assert "all 3 port pairs are in use" in str(caught.value)
    assert (caught.value.min_port, caught.value.max_port, caught.value.in_use) == (10000, 10005, 3)


def test_released_pairs_are_reused_last_in_release_order() -> None:
    allocator = RtpPortAllocator(10000, 10007)  # four pairs
    a, b, c = allocator.allocate(), allocator.allocate(), allocator.allocate()
    allocator.release(b)
    allocator.release(a.rtp)
    # The never-used pair comes first, then the released ones, oldest release first.
    assert [allocator.allocate().rtp for _ in range(3)] == [10006, b.rtp, a.rtp]
    assert c in allocator and a in allocator
    allocator.release(c)
    assert c not in allocator and 10004 not in allocator


def test_double_release_and_foreign_ports_are_errors() -> None:
    allocator = RtpPortAllocator(10000, 10003)
    pair = allocator.allocate()
    allocator.release(pair)
    with pytest.raises(ValueError, match="10000 is not allocated"):
        allocator.release(pair)
    with pytest.raises(ValueError, match="10002 is not allocated"):
        allocator.release(10002)


def test_start_rotates_the_first_pass() -> None:
    allocator = RtpPortAllocator(10000, 10009, start=10005)  # rounds down to pair 10004
    assert [allocator.allocate().rtp for _ in range(5)] == [10004, 10006, 10008, 10000, 10002]
    wrapped = RtpPortAllocator(10000, 10009, start=10010)  # past the end wraps round
    assert wrapped.allocate().rtp == 10000


def _in_use_by(taken: set[int], calls: list[int], wrap: bool = False):  # type: ignore[no-untyped-def]
    def bind(port: int) -> str:
        calls.append(port)
        if port in taken:
            error = OSError(errno.EADDRINUSE, "Address already in use")
            if wrap:
                raise CannotListenError("127.0.0.1", port, error)
            raise error
        return f"bound:{port}"

    return bind


@pytest.mark.parametrize("wrap", [False, True], ids=["OSError", "CannotListenError"])
def test_bind_pair_skips_ports_held_by_other_programs(wrap: bool) -> None:
    allocator = RtpPortAllocator(10000, 10009)
    calls: list[int] = []
    pair, bound = bind_pair(allocator, _in_use_by({10000, 10002}, calls, wrap))
    assert (pair, bound) == ((10004, 10005), "bound:10004")
    assert calls == [10000, 10002, 10004]
    assert allocator.in_use == 1
    # The busy pairs went to the back of the queue: tried again only after the others.
    assert [allocator.allocate().rtp for _ in range(4)] == [10006, 10008, 10000, 10002]


def test_bind_pair_gives_up_after_every_free_pair() -> None:
    allocator = RtpPortAllocator(10000, 10009)
    held = allocator.allocate()
    calls: list[int] = []
    with pytest.raises(NoBindablePortPair) as caught:
        bind_pair(allocator, _in_use_by(set(range(10000, 10010)), calls))
    assert sorted(calls) == [10002, 10004, 10006, 10008]  # each free pair once
    message = str(caught.value)
    assert "10000-10009" in message and "4 free pairs tried" in message
    assert "1 pairs are held by this worker" in message
    assert isinstance(caught.value, PortRangeExhausted)
    assert allocator.in_use == 1 and held in allocator


def test_bind_pair_other_errors_release_the_pair_and_propagate() -> None:
    allocator = RtpPortAllocator(10000, 10003)

    def refuse(port: int) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    with pytest.raises(PermissionError):
        bind_pair(allocator, refuse)
    assert allocator.in_use == 0 and allocator.available == 2


def test_bind_pair_on_an_exhausted_range() -> None:
    allocator = RtpPortAllocator(10000, 10001)
    allocator.allocate()
    with pytest.raises(PortRangeExhausted, match="all 1 port pairs are in use"):
        bind_pair(allocator, lambda port: port)


class AllocatorMachine(RuleBasedStateMachine):
    """Random allocate/release sequences never hand out an allocated pair."""

    def __init__(self) -> None:
        super().__init__()
        self.allocator = RtpPortAllocator(20001, 20020)  # 20002..20018: 9 pairs
        self.held: list[PortPair] = []
        self.released_order: list[int] = []

    @precondition(lambda self: len(self.held) < self.allocator.capacity)
    @rule()
    def allocate(self) -> None:
        pair = self.allocator.allocate()
        assert pair.rtp % 2 == 0 and pair.rtcp == pair.rtp + 1
        assert pair.rtp >= 20002 and pair.rtcp <= 20020
        assert pair not in self.held
        self.held.append(pair)

    @precondition(lambda self: len(self.held) == self.allocator.capacity)
    @rule()
    def allocate_when_full(self) -> None:
        with pytest.raises(PortRangeExhausted):
            self.allocator.allocate()

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(min_value=0))
    def release(self, index: int) -> None:
        pair = self.held.pop(index % len(self.held))
        self.allocator.release(pair)

    @invariant()
    def counts_agree(self) -> None:
        assert self.allocator.in_use == len(self.held)
        assert self.allocator.available == self.allocator.capacity - len(self.held)
        assert all(pair in self.allocator for pair in self.held)


TestAllocatorMachine = AllocatorMachine.TestCase
# 9 pairs: 40-step runs fill and drain the range many times; 60 runs keep it ~1 s.
TestAllocatorMachine.settings = settings(max_examples=60, stateful_step_count=40)
