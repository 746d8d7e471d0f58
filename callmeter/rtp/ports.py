"""RTP/RTCP port pairs from the configured range (RTP_PORT_MIN..RTP_PORT_MAX).

RFC 3550 section 11: RTP uses an even port and RTCP the next higher (odd) port. The allocator
hands out such pairs, never the same pair twice while it is allocated, in O(1): free pairs
wait in a FIFO queue, so a released pair goes to the back and is reused as late as
possible (stale packets of the previous call are less likely to reach the new one). An
optional ``start`` rotates the first pass through the range, so a restarted worker does not
begin with the ports its previous run used.

Sans-IO: no sockets here. :func:`bind_pair` takes the caller's ``bind`` callable and moves
on to the next pair when a port turns out to be taken by another program (EADDRINUSE).
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, TypeVar

__all__ = [
    "NoBindablePortPair",
    "PortPair",
    "PortRangeExhausted",
    "RtpPortAllocator",
    "bind_pair",
]

T = TypeVar("T")


class PortPair(NamedTuple):
    """An even RTP port and its RTCP port, ``rtp + 1`` (RFC 3550 section 11)."""

    rtp: int
    rtcp: int


class PortRangeExhausted(Exception):
    """Every pair of the range is allocated."""

    def __init__(self, min_port: int, max_port: int, in_use: int, detail: str = "") -> None:
        self.min_port = min_port
        self.max_port = max_port
        self.in_use = in_use
        message = (
            f"RTP port range {min_port}-{max_port} exhausted: all {in_use} port pairs "
            f"are in use (raise RTP_PORT_MAX/lower RTP_PORT_MIN or run fewer endpoints)"
        )
        super().__init__(detail or message)


class NoBindablePortPair(PortRangeExhausted):
    """Every free pair was tried and each one was already bound by another program."""


class RtpPortAllocator:
    """Hands out :class:`PortPair` from ``min_port..max_port``; O(1) allocate and release.

    ``min_port`` is rounded up to even; a pair needs ``rtp + 1 <= max_port``. The range must
    hold at least one pair.
    """

    def __init__(self, min_port: int, max_port: int, *, start: int | None = None) -> None:
        for name, value in (("min_port", min_port), ("max_port", max_port)):
            if not 1 <= value <= 65535:
                raise ValueError(f"{name} must be a port number 1-65535, got {value}")
        first = min_port + (min_port & 1)
        # last is the highest even port whose RTCP port (last + 1) is still <= max_port.
        last = max_port - 1 - ((max_port - 1) & 1)
        if first > last:
            raise ValueError(
                f"RTP port range {min_port}-{max_port} holds no even/odd port pair "
                f"(RTP even, RTCP = RTP + 1, RFC 3550 section 11)"
            )
        self.min_port = min_port
        self.max_port = max_port
        ports = range(first, last + 1, 2)
        shift = 0
        if start is not None:
            shift = ((start - first) // 2) % len(ports)
        self._free: deque[int] = deque(ports[shift:])
        self._free.extend(ports[:shift])
        self._allocated: set[int] = set()
        self.capacity = len(ports)

    @property
    def in_use(self) -> int:
        """Number of pairs currently allocated."""
        return len(self._allocated)

    @property
    def available(self) -> int:
        """Number of pairs that can still be allocated."""
        return len(self._free)

    def allocate(self) -> PortPair:
        """The pair that has been free the longest; :exc:`PortRangeExhausted` if none."""
        if not self._free:
            raise PortRangeExhausted(self.min_port, self.max_port, len(self._allocated))
        rtp = self._free.popleft()
        self._allocated.add(rtp)
        return PortPair(rtp, rtp + 1)

    def release(self, pair: PortPair | int) -> None:
        """Give a pair back (by the pair or its RTP port); it is reused last."""
        rtp = pair if isinstance(pair, int) else pair.rtp
        try:
            self._allocated.remove(rtp)
        except KeyError:
            raise ValueError(f"RTP port {rtp} is not allocated") from None
        self._free.append(rtp)

    def __contains__(self, pair: object) -> bool:
        """Whether a pair (or an RTP port) is currently allocated."""
        rtp = pair.rtp if isinstance(pair, PortPair) else pair
        return rtp in self._allocated


def _address_in_use(error: BaseException) -> bool:
    """EADDRINUSE, raw (OSError) or wrapped by Twisted (CannotListenError.socketError)."""
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return True
    wrapped = getattr(error, "socketError", None)
    return isinstance(wrapped, OSError) and wrapped.errno == errno.EADDRINUSE


def bind_pair(allocator: RtpPortAllocator, bind: Callable[[int], T]) -> tuple[PortPair, T]:
    """Allocate a pair and ``bind(rtp_port)``; skip pairs another program holds.

    ``bind`` gets the even RTP port and binds both sockets (RTP on ``port``, RTCP on
    ``port + 1``), closing what it opened if either fails. When it raises EADDRINUSE (an
    :exc:`OSError`, or Twisted's ``CannotListenError`` wrapping one) the pair goes to the
    back of the queue and the next one is tried, at most once each of the pairs that were
    free; then :exc:`NoBindablePortPair`. Any other error releases the pair and propagates.
    """
    attempts = allocator.available
    if attempts == 0:
        allocator.allocate()  # raises PortRangeExhausted with the usual message
    busy: list[int] = []
    for _ in range(attempts):
        pair = allocator.allocate()
        try:
            result = bind(pair.rtp)
        except BaseException as error:
            allocator.release(pair)
            if not _address_in_use(error):
                raise
            busy.append(pair.rtp)
            continue
        return pair, result
    shown = ", ".join(str(port) for port in busy[:5]) + (", ..." if len(busy) > 5 else "")
    raise NoBindablePortPair(
        allocator.min_port,
        allocator.max_port,
        allocator.in_use,
        f"no RTP port pair in {allocator.min_port}-{allocator.max_port} could be bound: "
        f"{len(busy)} free pairs tried, each already in use by another program "
        f"(EADDRINUSE on RTP ports {shown}); {allocator.in_use} pairs are held by this worker",
    )
