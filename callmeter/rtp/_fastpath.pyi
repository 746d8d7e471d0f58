"""Types of the C extension callmeter/rtp/_fastpath.c (the media plane's per-packet work)."""

from typing import Any, Protocol

class _HasFileno(Protocol):
    def fileno(self) -> int: ...

BUFFER_SIZE: int

def timestamp_arrivals(sock: int | _HasFileno) -> None: ...

class SeqState:
    """Per-packet receive state of one SSRC (RFC 3550 A.1 in sequence, A.8)."""

    packets: int
    bytes: int
    _max_seq: int
    _next_seq: int
    _cycles: int
    _received: int
    _last_ts: int
    _jitter: float
    _last_arrival: float
    _rate: float
    def on_packet(self, seq: int, rtp_ts: int, arrival: float, size: int) -> None: ...
    def _unusual(self, seq: int, rtp_ts: int, arrival: float) -> bool: ...

class SendCounters:
    """A sender's packet and payload octet counts (RFC 3550 6.4.1)."""

    packets: int
    octets: int

class ReaderState:
    """The RTP receive path of one stream; calling it reads one datagram."""

    _fd: int
    enabled: bool
    _last_ssrc: int
    _last: Any
    def read(self, now: float) -> None: ...
    def __call__(self, now: float) -> None: ...

class SendState:
    """The send path of one RTP stream, driven by the pacer (RFC 3550 5.1)."""

    _rtp_fd: int
    _due: float
    _start: float
    _inv_rate: float
    _max_late: float
    _late_inv: float
    _index: int
    _n: int
    _seq: int
    _mts: int
    _ts0: int
    ssrc: int
    send_errors: int
    skipped: int
    _rtp_send: Any
    _payloads: tuple[bytes, ...]
    _second: tuple[int, ...]
    _incs: tuple[int, ...]
    _late_counts: Any
    sender: Any
    def pace(self, now: float) -> float: ...
    def _pace_behind(self, now: float) -> float: ...

class Dispatch:
    """A level-triggered epoll set of sockets, each with its reader."""

    def register(self, fd: int, target: Any) -> None: ...
    def unregister(self, fd: int) -> bool: ...
    def dispatch(self, now: float) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    def __len__(self) -> int: ...

class TimerFd:
    """A one-shot Linux timerfd on the wall clock (CLOCK_REALTIME, absolute times)."""

    def arm(self, when: float) -> None: ...
    def disarm(self) -> None: ...
    def read(self) -> int: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
