"""RFC 4733 telephone-events (DTMF digits) as RTP payloads, sans-IO.

Payload (RFC 4733 section 2.3)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |     event     |E|R| volume    |          duration             |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

Event codes for DTMF (section 3.2): 0-9, ``*`` = 10, ``#`` = 11, A-D = 12-15; 16 is flash.
Volume is the power level in -dBm0 (0..63); R is sent as 0 and ignored on receipt.

One event as packets (section 2.5.1): every packet carries the RTP timestamp of the event's
start; the first has the marker bit (2.5.1.2); an update follows every packet interval with
the duration so far; the final packet has the E bit and is sent a total of three times at
the same interval (2.5.1.4). :func:`digit_packets` yields them as :class:`EventPacket`
tuples; the caller sends item ``i`` ``i + 1`` intervals after the event began (as in the
section 5 example: the first update 50 ms after the key press, with duration 400) and sets
the RTP timestamp to ``event_start + timestamp_offset`` with its own sequence numbers.

Not implemented: long-duration segments (section 2.5.1.3, events over 0xFFFF timestamp
units, 8.2 s at 8 kHz, are refused) and several events in one packet (RFC 2198).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "DTMF_EVENTS",
    "EVENT_FLASH",
    "EventPacket",
    "TelephoneEvent",
    "TelephoneEventError",
    "digit_packets",
    "event_code",
    "ms_to_units",
]

#: DTMF characters to event codes, RFC 4733 section 3.2, Table 7.
DTMF_EVENTS: dict[str, int] = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
#: Hook flash, RFC 4733 section 3.2.
EVENT_FLASH = 16

_PAYLOAD = struct.Struct("!BBH")
_MAX_DURATION = 0xFFFF
_END = 0x80
_RESERVED = 0x40


class TelephoneEventError(ValueError):
    """A telephone-event payload that breaks RFC 4733 section 2.3."""


@dataclass(frozen=True)
class TelephoneEvent:
    """One telephone-event payload block (RFC 4733 section 2.3)."""

    event: int
    end: bool
    volume: int
    duration: int

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code must be 0-255, got {self.event}")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume must be 0-63 (-dBm0), got {self.volume}")
        if not 0 <= self.duration <= _MAX_DURATION:
            raise ValueError(f"duration must be 0-65535 timestamp units, got {self.duration}")

    def pack(self) -> bytes:
        """The 4-byte payload; R is 0 (section 2.3.3)."""
        return _PAYLOAD.pack(self.event, (_END if self.end else 0) | self.volume, self.duration)

    @classmethod
    def parse(cls, payload: bytes | bytearray | memoryview) -> TelephoneEvent:
        """Read the first 4-byte block; the R bit is ignored (section 2.3.3)."""
        if len(payload) < _PAYLOAD.size:
            raise TelephoneEventError(f"telephone-event payload needs 4 bytes, got {len(payload)}")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & _END), flags & 0x3F, duration)


class EventPacket(NamedTuple):
    """One packet of an event: marker bit, RTP timestamp offset, payload."""

    marker: bool
    timestamp_offset: int
    payload: bytes


def event_code(digit: str | int) -> int:
    """Event code of a DTMF character (``"0"``-``"9"``, ``*``, ``#``, A-D) or a code."""
    if isinstance(digit, int):
        if not 0 <= digit <= 255:
            raise ValueError(f"event code must be 0-255, got {digit}")
        return digit
    try:
        return DTMF_EVENTS[digit.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r} (0-9, *, #, A-D)") from None


def ms_to_units(milliseconds: float, clock_rate: int = 8000) -> int:
    """Milliseconds in RTP timestamp units (telephone-event/8000 by default)."""
    return round(milliseconds * clock_rate / 1000)


def digit_packets(
    digit: str | int,
    duration: int = 800,
    interval: int = 160,
    *,
    volume: int = 10,
    end_packets: int = 3,
) -> Iterator[EventPacket]:
    """The packets of one event lasting ``duration`` units, one per ``interval`` units.

    Defaults: 100 ms at telephone-event/8000, an update every 20 ms, volume -10 dBm0, the
    final packet sent three times (RFC 4733 section 2.5.1.4). The durations reported are
    ``interval, 2 * interval, ...`` and finally exactly ``duration``.
    """
    code = event_code(digit)
    if not 0 < duration <= _MAX_DURATION:
        raise ValueError(
            f"duration must be 1-65535 timestamp units, got {duration} "
            "(long-duration segments, RFC 4733 section 2.5.1.3, are not supported)"
        )
    if interval <= 0:
        raise ValueError(f"packet interval must be positive, got {interval}")
    if end_packets < 1:
        raise ValueError(f"at least one end packet is needed, got {end_packets}")
    marker = True
    elapsed = interval
    while elapsed < duration:
        yield EventPacket(marker, 0, TelephoneEvent(code, False, volume, elapsed).pack())
        marker = False
        elapsed += interval
    final = TelephoneEvent(code, True, volume, duration).pack()
    for _ in range(end_packets):
        yield EventPacket(marker, 0, final)
        marker = False
