"""The C per-packet path (callmeter/rtp/_fastpath.c) on its own.

Sockets here are AF_UNIX datagram socketpairs: local, instant and deterministic, and the C
code only calls recv/send on a descriptor, whatever its family.
"""

from __future__ import annotations

import gc
import itertools
import select
import socket
import struct
import time
import weakref
from array import array
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.rtp._fastpath import (
    Dispatch,
    ReaderState,
    SendCounters,
    SendState,
    TimerFd,
    timestamp_arrivals,
)
from callmeter.rtp.stats import ReceiverStats
from callmeter.rtp.stream import UdpMux

HEADER = struct.Struct("!BBHII")


def rtp(seq: int, ts: int, ssrc: int = 0x1234, payload: bytes = b"x" * 160) -> bytes:
    return HEADER.pack(0x80, 0, seq, ts, ssrc) + payload


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


# --- SeqState: the in-sequence path and A.8 -----------------------------------------------


def reference_jitter(packets: list[tuple[int, float]], rate: int) -> float:
    """RFC 3550 A.8 written out plainly: J += (|D| - J) / 16, timestamps modulo 2**32."""
    jitter = 0.0
    for (ts0, t0), (ts1, t1) in itertools.pairwise(packets):
        dts = (ts1 - ts0) % 2**32
        if dts >= 2**31:
            dts -= 2**32
        d = abs((t1 - t0) * rate - dts)
        jitter += (d - jitter) / 16
    return jitter


@given(
    first_seq=st.integers(0, 65535),
    first_ts=st.integers(0, 2**32 - 1),
    steps=st.lists(
        st.tuples(st.integers(0, 2000), st.floats(0.0, 0.2, allow_nan=False)),
        min_size=1,
        max_size=200,
    ),
)
def test_in_sequence_packets_follow_a1_and_a8(
    first_seq: int, first_ts: int, steps: list[tuple[int, float]]
) -> None:
    stats = ReceiverStats(0x1234, 8000, min_sequential=1)
    seq, ts, now = first_seq, first_ts, 1000.0
    fed = [(ts, now)]
    stats.on_packet(seq, ts, now, 172)
    for inc, gap in steps:
        seq = (seq + 1) % 65536
        ts = (ts + inc) % 2**32
        now += gap
        fed.append((ts, now))
        stats.on_packet(seq, ts, now, 172)
    n = len(fed)
    assert stats.packets == n and stats.bytes == 172 * n
    assert stats.expected == n and stats.lost == 0
    assert stats.extended_highest_seq == first_seq + n - 1
    assert stats.jitter == pytest.approx(reference_jitter(fed, 8000), rel=1e-9, abs=1e-9)


def test_on_packet_refuses_fields_out_of_range() -> None:
    stats = ReceiverStats(1, 8000)
    with pytest.raises(ValueError, match="out of range"):
        stats.on_packet(65536, 0, 0.0, 12)
    with pytest.raises(ValueError, match="out of range"):
        stats.on_packet(0, 2**32, 0.0, 12)
    with pytest.raises(TypeError):
        stats.on_packet(0, 0, 0.0)  # type: ignore[call-arg]
    assert stats.packets == 0


# --- ReaderState ---------------------------------------------------------------------------


class Receiver(ReaderState):
    """What stream._RtpReceiver gives the C reader: _source and datagram_received."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.stats: dict[int, ReceiverStats] = {}
        self.other: list[tuple[bytes, Any, float]] = []

    def _source(self, ssrc: int) -> ReceiverStats:
        stats = self.stats.setdefault(ssrc, ReceiverStats(ssrc, 8000, min_sequential=1))
        self._last_ssrc = ssrc
        self._last = stats
        return stats

    def datagram_received(self, data: bytes, addr: Any, now: float) -> None:
        self.other.append((data, addr, now))


def test_reader_feeds_each_ssrc_and_hands_back_the_rest(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    reader = Receiver(b.fileno())
    for seq in range(3):
        a.send(rtp(seq, seq * 160))
    a.send(rtp(7, 0, ssrc=0xBEEF))
    a.send(b"\x00" * 20)  # version 0: not RTP
    a.send(b"\x80\x00")  # shorter than a header
    for now in (1.0, 1.02, 1.04, 1.05, 1.06):
        reader.read(now)
    reader(1.07)  # calling it is the same read
    reader.read(1.08)  # nothing left: no error
    assert sorted(reader.stats) == [0x1234, 0xBEEF]
    main = reader.stats[0x1234]
    assert (main.packets, main.bytes, main.expected, main.lost) == (3, 3 * 172, 3, 0)
    assert main.jitter == pytest.approx(0.0, abs=1e-9)  # 160 units per 20 ms exactly
    assert reader.stats[0xBEEF].packets == 1
    assert [(data, addr, now) for data, addr, now in reader.other] == [
        (b"\x00" * 20, None, 1.06),
        (b"\x80\x00", None, 1.07),
    ]


def test_reader_that_is_off_hands_every_datagram_back(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    reader = Receiver(b.fileno())
    reader.enabled = False
    a.send(rtp(1, 160))
    reader.read(2.0)
    assert reader.stats == {} and reader.other == [(rtp(1, 160), None, 2.0)]


def test_reader_without_a_socket_reads_nothing() -> None:
    reader = Receiver(-1)
    reader.read(1.0)
    assert reader.stats == {} and reader.other == []


def test_reader_errors_in_python_callbacks_propagate(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair

    class Broken(Receiver):
        def _source(self, ssrc: int) -> ReceiverStats:
            raise RuntimeError("no statistics today")

    a.send(rtp(1, 160))
    with pytest.raises(RuntimeError, match="no statistics today"):
        Broken(b.fileno()).read(1.0)


def test_a_reader_in_a_cycle_is_collected() -> None:
    reader = Receiver(-1)
    reader._last = reader  # a cycle through the C field
    alive = weakref.ref(reader)
    del reader
    gc.collect()
    assert alive() is None


# --- SendState -----------------------------------------------------------------------------


def sender(fd: int = -1, **fields: Any) -> SendState:
    state = SendState()
    state._rtp_fd = fd
    state._payloads = (b"a" * 160, b"b" * 160, b"c" * 10)
    state._second = (0x80, 0x00, 0x00)  # M bit on the first payload, PT 0
    state._incs = (160, 160, 400)
    state._n = 3
    state._seq = 65534
    state._ts0 = 2**32 - 200
    state.ssrc = 0xCAFEF00D
    state._start = 10.0
    state._due = 10.0
    state._inv_rate = 1 / 8000
    state._max_late = 0.2
    state._late_inv = 1 / 50e-6
    state._late_counts = array("q", bytes(8 * 10))
    state.sender = SendCounters()
    for name, value in fields.items():
        setattr(state, name, value)
    return state


def test_pace_sends_what_is_due_with_rewritten_headers(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    state = sender(a.fileno())
    assert state.pace(9.99) == 10.0  # nothing due yet
    # Due at 10.000, 10.020, 10.040, 10.090: at 10.0401 three are due.
    assert state.pace(10.0401) == pytest.approx(10.09)
    packets = [b.recv(2048) for _ in range(3)]
    with pytest.raises(BlockingIOError):
        b.recv(2048)
    headers = [HEADER.unpack(p[:12]) for p in packets]
    assert headers == [
        (0x80, 0x80, 65534, 2**32 - 200, 0xCAFEF00D),
        (0x80, 0x00, 65535, 2**32 - 40, 0xCAFEF00D),
        (0x80, 0x00, 0, 120, 0xCAFEF00D),  # both wrapped
    ]
    assert [p[12:] for p in packets] == [b"a" * 160, b"b" * 160, b"c" * 10]
    assert (state.sender.packets, state.sender.octets, state.send_errors) == (3, 330, 0)
    assert (state._seq, state._index, state._mts) == (1, 0, 720)
    # Lateness: 40.1 ms, 20.1 ms and 0.1 ms late, in 50 us bins; beyond the last bin: last.
    assert list(state._late_counts) == [0, 0, 1, 0, 0, 0, 0, 0, 0, 2]


def test_pace_counts_send_errors_and_uses_the_sequence_number(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    b.close()  # the peer is gone: send fails with ECONNREFUSED
    state = sender(a.fileno())
    state.pace(10.0)
    assert (state.sender.packets, state.send_errors, state._seq) == (0, 1, 65535)


def test_pace_through_a_python_callable() -> None:
    sent: list[bytes] = []
    state = sender(_rtp_send=sent.append)
    state.pace(10.0)
    assert [HEADER.unpack(p[:12])[2] for p in sent] == [65534]

    def refuse(packet: bytes) -> None:
        raise ConnectionRefusedError

    state._rtp_send = refuse
    state.pace(10.02)
    assert (state.sender.packets, state.send_errors) == (1, 1)

    def broken(packet: bytes) -> None:
        raise RuntimeError("bug")

    state._rtp_send = broken
    with pytest.raises(RuntimeError, match="bug"):
        state.pace(10.09)


def test_pace_leaves_a_stall_and_a_stopped_stream_to_python() -> None:
    calls: list[float] = []

    class Stream(SendState):
        def _pace_behind(self, now: float) -> float:
            calls.append(now)
            return now + 1.0

    stopped = Stream()
    stopped._due = 1.0
    stopped._max_late = 0.2
    assert stopped.pace(1.0) == 2.0  # no descriptor, no callable: stopped
    late = Stream()
    late._rtp_send = print
    late._due, late._max_late = 1.0, 0.2
    assert late.pace(1.5) == 2.5  # 0.5 s behind
    assert calls == [1.0, 1.5]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("_payloads", [b"a", b"b", b"c"], "tuples"),
        ("_n", 4, "tuples"),
        ("_late_counts", [0] * 10, "array"),
        ("_late_counts", array("d", [0.0] * 10), "array"),
        ("sender", object(), "SendCounters"),
    ],
)
def test_pace_refuses_wrong_state(field: str, value: Any, message: str) -> None:
    state = sender(_rtp_send=lambda packet: None, **{field: value})
    with pytest.raises(TypeError, match=message):
        state.pace(10.0)
    assert state._seq == 65534  # nothing happened


# --- Dispatch ------------------------------------------------------------------------------


def test_dispatch_serves_every_ready_socket_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    d.setblocking(False)
    seen: list[tuple[bytes, float]] = []
    reader = Receiver(b.fileno())
    dispatch = Dispatch()
    try:
        dispatch.register(b.fileno(), reader)
        dispatch.register(d.fileno(), lambda now: seen.append((d.recv(100), now)))
        assert len(dispatch) == 2
        assert dispatch.dispatch(1.0) == 0  # nothing ready
        a.send(rtp(5, 800))
        a.send(rtp(6, 960))
        c.send(b"hello")
        assert dispatch.dispatch(2.0) == 2
        assert seen == [(b"hello", 2.0)]
        assert reader.stats[0x1234].packets == 1  # one read per ready socket per batch
        assert dispatch.dispatch(3.0) == 1  # level-triggered: the second comes now
        assert reader.stats[0x1234].packets == 2
        assert dispatch.unregister(d.fileno()) is True
        assert dispatch.unregister(d.fileno()) is False
        assert len(dispatch) == 1
    finally:
        dispatch.close()
        c.close()
        d.close()
    assert len(dispatch) == 0 and dispatch.dispatch(4.0) == 0


def test_dispatch_skips_a_socket_unregistered_during_the_batch(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    dispatch = Dispatch()
    calls: list[str] = []

    def first(now: float) -> None:
        calls.append("first")
        b.recv(100)
        dispatch.unregister(d.fileno())
        dispatch.unregister(b.fileno())

    def second(now: float) -> None:
        calls.append("second")
        d.recv(100)
        dispatch.unregister(b.fileno())
        dispatch.unregister(d.fileno())

    try:
        dispatch.register(b.fileno(), first)
        dispatch.register(d.fileno(), second)
        a.send(b"1")
        c.send(b"2")
        dispatch.dispatch(1.0)
        assert len(calls) == 1 and len(dispatch) == 0
    finally:
        dispatch.close()
        c.close()
        d.close()


def test_dispatch_refuses_bad_registrations(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    dispatch = Dispatch()
    try:
        dispatch.register(b.fileno(), print)
        with pytest.raises(ValueError, match="already registered"):
            dispatch.register(b.fileno(), print)
        with pytest.raises(TypeError, match="callable"):
            dispatch.register(a.fileno(), 42)
        with pytest.raises(OSError):
            dispatch.register(10_000, print)  # not an open descriptor
        with pytest.raises(TypeError):
            Dispatch(1)  # type: ignore[call-arg]
    finally:
        dispatch.close()


class FakeReactor:
    def __init__(self) -> None:
        self.readers: list[Any] = []

    def seconds(self) -> float:
        return 5.0

    def addReader(self, reader: Any) -> None:
        self.readers.append(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.remove(reader)

    def callLater(self, *args: Any) -> Any:
        raise NotImplementedError


def test_mux_logs_a_failing_handler_and_keeps_serving(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    reactor = FakeReactor()
    mux = UdpMux(reactor)
    received: list[float] = []

    def handler(now: float) -> None:
        data = b.recv(100)
        if data == b"bad":
            raise RuntimeError("handler bug")
        received.append(now)

    mux.add(b, handler)
    assert reactor.readers == [mux] and len(mux) == 1
    a.send(b"bad")
    mux.doRead()  # logged, not raised: the reactor would drop the reader
    a.send(b"good")
    mux.doRead()
    assert received == [5.0]
    mux.remove(b)
    assert reactor.readers == [] and len(mux) == 0


# --- kernel arrival timestamps -------------------------------------------------------------


@pytest.mark.parametrize("stamped", [True, False])
def test_arrival_is_the_kernel_stamp_when_asked_for(
    pair: tuple[socket.socket, socket.socket], stamped: bool
) -> None:
    a, b = pair
    if stamped:
        timestamp_arrivals(b)
    reader = Receiver(b.fileno())
    before = time.time()
    a.send(rtp(1, 160))
    after = time.time()
    reader.read(4e9)  # "now": long after the packet was queued
    arrival = reader.stats[0x1234]._last_arrival
    if stamped:
        assert before <= arrival <= after
    else:
        assert arrival == 4e9


# --- TimerFd -------------------------------------------------------------------------------


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_timerfd_fires_at_an_absolute_time_and_can_be_disarmed() -> None:
    timer = TimerFd()
    try:
        assert not readable(timer.fileno()) and timer.read() == 0
        timer.arm(time.time() - 1.0)  # past: at once
        assert readable(timer.fileno())
        assert timer.read() == 1 and timer.read() == 0
        assert not readable(timer.fileno())
        timer.arm(time.time() + 3600.0)
        assert not readable(timer.fileno())
        timer.arm(time.time() - 1.0)  # moved earlier
        timer.disarm()
        assert not readable(timer.fileno())
        with pytest.raises(ValueError, match="positive"):
            timer.arm(0.0)
    finally:
        timer.close()
    with pytest.raises(ValueError, match="closed"):
        timer.arm(time.time())
    assert timer.read() == 0 and timer.fileno() == -1


def test_mux_drain_reads_what_is_queued_without_the_reactor(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    reactor = FakeReactor()
    mux = UdpMux(reactor)
    mux.drain()  # nothing registered: nothing to do
    received: list[bytes] = []
    mux.add(b, lambda now: received.append(b.recv(100)))
    a.send(b"queued")
    mux.drain()
    assert received == [b"queued"]
    per_socket = UdpMux(reactor, per_socket=True)
    per_socket.drain()  # the reactor reads each socket itself: no-op


def test_pace_survives_a_sender_that_reconfigures_the_stream_while_sending() -> None:
    state = sender()
    sent: list[bytes] = []

    def send(packet: bytes) -> None:
        sent.append(packet)
        # A re-INVITE handled inside the send: new counters, a shorter loop of payloads.
        state.sender = SendCounters()
        state._payloads = (b"z",)
        state._second = (0,)

    state._rtp_send = send
    with pytest.raises(TypeError, match="tuples of _n items"):
        state.pace(10.05)  # three due; the second is past the new, shorter loop
    assert len(sent) == 1
    gc.collect()
    state._n, state._incs = 1, (160,)
    state._index = 0
    state._rtp_send = sent.append
    state.pace(10.05)
    assert sent[-1][12:] == b"z"


def test_reader_feeds_statistics_of_another_kind_through_their_on_packet(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    fed: list[tuple[int, int, float, int]] = []

    class Recorder:
        def on_packet(self, seq: int, rtp_ts: int, arrival: float, size: int) -> None:
            fed.append((seq, rtp_ts, arrival, size))

    class Custom(Receiver):
        def _source(self, ssrc: int) -> Any:
            self._last_ssrc, self._last = ssrc, Recorder()
            return self._last

    reader = Custom(b.fileno())
    a.send(rtp(65535, 2**32 - 1, payload=b"x" * 20))
    a.send(rtp(0, 159, payload=b"x" * 20))
    reader.read(3.0)
    reader.read(3.5)
    assert fed == [(65535, 2**32 - 1, 3.0, 32), (0, 159, 3.5, 32)]


def test_reader_keys_statistics_by_payload_type_and_ssrc(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """_source gets PT << 32 | SSRC: an RFC 4733 event in the audio's SSRC has its own."""
    a, b = pair
    reader = Receiver(b.fileno())
    a.send(rtp(1, 160))
    a.send(HEADER.pack(0x80, 0x80 | 101, 2, 160, 0x1234) + b"\x01\x0a\x00\xa0")  # M bit set
    a.send(rtp(3, 480))
    for now in (1.0, 1.02, 1.04):
        reader.read(now)
    assert sorted(reader.stats) == [0x1234, 101 << 32 | 0x1234]
    assert reader.stats[0x1234].packets == 2
    assert reader.stats[101 << 32 | 0x1234].packets == 1
