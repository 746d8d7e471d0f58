"""RFC 4733 telephone-event payloads and the packet sequence of one digit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.media.dtmf import (
    DTMF_EVENTS,
    EventPacket,
    TelephoneEvent,
    TelephoneEventError,
    digit_packets,
    event_code,
    ms_to_units,
)


def test_pack_by_hand() -> None:
    # '#' = 11, E set, volume 10 -> 0x80 | 0x0A, duration 1000 = 0x03E8 (network order).
    assert TelephoneEvent(11, True, 10, 1000).pack() == bytes([0x0B, 0x8A, 0x03, 0xE8])
    # '9', no E, volume 63 (the lowest level, -63 dBm0), duration 400 = 0x0190.
    assert TelephoneEvent(9, False, 63, 400).pack() == bytes([0x09, 0x3F, 0x01, 0x90])


def test_parse_ignores_the_reserved_bit_and_trailing_bytes() -> None:
    assert TelephoneEvent.parse(bytes([0x05, 0xCA, 0xFF, 0xFF, 0x00])) == TelephoneEvent(
        5, True, 10, 0xFFFF
    )


def test_parse_rejects_short_payloads() -> None:
    with pytest.raises(TelephoneEventError, match="needs 4 bytes, got 3"):
        TelephoneEvent.parse(b"\x01\x02\x03")


@given(st.integers(0, 255), st.booleans(), st.integers(0, 63), st.integers(0, 0xFFFF))
def test_pack_parse_round_trip(event: int, end: bool, volume: int, duration: int) -> None:
    block = TelephoneEvent(event, end, volume, duration)
    assert TelephoneEvent.parse(block.pack()) == block


@pytest.mark.parametrize(
    ("field", "value"), [("event", 256), ("volume", 64), ("duration", 0x10000)]
)
def test_out_of_range_fields_are_refused(field: str, value: int) -> None:
    fields = {"event": 1, "end": False, "volume": 10, "duration": 0}
    fields[field] = value
    with pytest.raises(ValueError, match=field):
        TelephoneEvent(**fields)  # type: ignore[arg-type]


def test_event_codes_section_3_2() -> None:
    assert [event_code(c) for c in "0123456789*#ABCD"] == list(range(16))
    assert event_code("d") == 15 and event_code(16) == 16
    assert len(DTMF_EVENTS) == 16
    with pytest.raises(ValueError, match="not a DTMF digit"):
        event_code("E")


def test_rfc4733_section5_digit_9_at_50_ms_updates() -> None:
    """RFC 4733 section 5's example: '9' lasting 200 ms, telephone-event/8000, 50 ms updates.

    Packets at 50, 100, 150 ms report durations 400, 800, 1200; the 200 ms one reports
    1600 with E set and is sent again at 250 and 300 ms; all carry the event's start
    timestamp and only the first has the marker bit.
    """
    packets = list(
        digit_packets("9", duration=ms_to_units(200), interval=ms_to_units(50), volume=7)
    )
    rows = [
        (p.marker, p.timestamp_offset, *TelephoneEvent.parse(p.payload).__dict__.values())
        for p in packets
    ]
    assert rows == [
        (True, 0, 9, False, 7, 400),
        (False, 0, 9, False, 7, 800),
        (False, 0, 9, False, 7, 1200),
        (False, 0, 9, True, 7, 1600),
        (False, 0, 9, True, 7, 1600),
        (False, 0, 9, True, 7, 1600),
    ]
    assert packets[3].payload == bytes([0x09, 0x87, 0x06, 0x40])


def test_default_digit_is_100_ms_with_20_ms_updates() -> None:
    packets = list(digit_packets("5"))
    durations = [TelephoneEvent.parse(p.payload).duration for p in packets]
    assert durations == [160, 320, 480, 640, 800, 800, 800]
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert all(isinstance(p, EventPacket) for p in packets)


def test_duration_not_a_multiple_of_the_interval_ends_exactly() -> None:
    durations = [TelephoneEvent.parse(p.payload).duration for p in digit_packets(1, 500, 160)]
    assert durations == [160, 320, 480, 500, 500, 500]


def test_event_shorter_than_one_interval() -> None:
    packets = list(digit_packets("#", duration=100, interval=160))
    assert [p.marker for p in packets] == [True, False, False]
    assert {TelephoneEvent.parse(p.payload) for p in packets} == {TelephoneEvent(11, True, 10, 100)}


@given(st.integers(1, 0xFFFF), st.integers(80, 4000), st.integers(1, 5))
def test_sequence_invariants(duration: int, interval: int, end_packets: int) -> None:
    blocks = [
        TelephoneEvent.parse(p.payload)
        for p in digit_packets("0", duration, interval, end_packets=end_packets)
    ]
    ends = [b for b in blocks if b.end]
    assert len(ends) == end_packets and blocks[-end_packets:] == ends
    assert all(b.duration == duration for b in ends)
    updates = [b.duration for b in blocks if not b.end]
    assert updates == list(range(interval, duration, interval))


def test_bad_sequence_arguments() -> None:
    with pytest.raises(ValueError, match="long-duration"):
        list(digit_packets("1", duration=0x10000))
    with pytest.raises(ValueError, match="interval"):
        list(digit_packets("1", interval=0))
    with pytest.raises(ValueError, match="end packet"):
        list(digit_packets("1", end_packets=0))
