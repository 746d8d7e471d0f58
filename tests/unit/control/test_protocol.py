"""Control-plane messages: round trips, the version rule, the frame limit, hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.control import protocol as p
from callmeter.status import WorkerState

# --- strategies -----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=4)
ids = st.text(min_size=1, max_size=12)
texts = st.text(max_size=20)
states = st.sampled_from(p.WORKER_STATES)
times = st.floats(0, 4e9)
names = st.lists(st.text(min_size=1, max_size=6), max_size=4).map(tuple)


@st.composite
def metrics(draw: st.DrawFn) -> p.Metrics:
    seq = draw(st.integers(1, 10**6))
    start = draw(times)
    end = start + draw(st.floats(0, 3600))
    dropped = None
    if seq > 1 and draw(st.booleans()):
        first = draw(st.integers(1, seq - 1))
        dropped = (first, draw(st.integers(first, seq - 1)))
    return p.Metrics(draw(ids), seq, start, end, draw(json_objects), draw(json_objects), dropped)


@st.composite
def finished(draw: st.DrawFn) -> p.Finished:
    windows = draw(st.integers(0, 10**6))
    dropped = None
    if windows and draw(st.booleans()):
        first = draw(st.integers(1, windows))
        dropped = (first, draw(st.integers(first, windows)))
    return p.Finished(draw(ids), draw(json_objects), windows, dropped)


capabilities = st.builds(p.Capabilities, st.integers(0, 10**5), names, names)
worker_messages = st.one_of(
    st.builds(p.Hello, ids, texts, capabilities),
    st.builds(
        p.Heartbeat,
        st.integers(1, 2**53),
        states,
        st.integers(0, 10**5),
        st.none() | ids,
        st.floats(0, 64),
    ),
    st.builds(p.Accepted, ids),
    st.builds(p.Rejected, ids, texts),
    st.builds(p.Status, states, st.none() | texts, st.none() | ids),
    metrics(),
    finished(),
    st.builds(p.Error, texts, texts, st.none() | texts),
)
gateway_messages = st.one_of(
    st.builds(p.Welcome, ids, st.floats(0.001, 3600), times),
    st.builds(p.HeartbeatAck, st.integers(1, 2**53)),
    st.builds(p.Assign, ids, json_objects),
    st.builds(p.Ack, ids, st.integers(0, 10**6), st.booleans()),
    st.builds(p.Cancel, ids, texts),
    st.builds(p.Error, texts, texts, st.none() | texts),
)


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def refused(data: str | bytes, **kwargs: Any) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_message(data, **kwargs)
    return info.value


# --- round trips ----------------------------------------------------------------------------


@given(worker_messages)
def test_worker_messages_round_trip(message: p.Message) -> None:
    text = message.to_json()
    assert p.parse_message(text, expect=p.WORKER_MESSAGES) == message
    assert p.parse_message(text.encode("utf-8")) == message


@given(gateway_messages)
def test_gateway_messages_round_trip(message: p.Message) -> None:
    text = message.to_json()
    data = json.loads(text)
    assert data["v"] == p.PROTOCOL_VERSION and data["type"] == message.TYPE
    assert p.parse_message(text, expect=p.GATEWAY_MESSAGES) == message


def test_every_type_is_in_one_direction_or_both() -> None:
    assert set(p.MESSAGE_TYPES.values()) == set(p.WORKER_MESSAGES) | set(p.GATEWAY_MESSAGES)
    assert set(p.WORKER_MESSAGES) & set(p.GATEWAY_MESSAGES) == {p.Error}


def test_hello_example_and_token_is_not_a_field() -> None:
    hello = p.Hello("lab-1", "0.1.0", p.Capabilities(500, ("udp",), ("PCMU",)))
    assert json.loads(hello.to_json()) == {
        "v": 1,
        "type": "hello",
        "worker": "lab-1",
        "version": "0.1.0",
        "capabilities": {"max_endpoints": 500, "transports": ["udp"], "codecs": ["PCMU"]},
    }
    assert "token" not in hello.to_json()


def test_optional_none_fields_are_left_out_and_default_on_parse() -> None:
    assert json.loads(p.Status("ONLINE").to_json()) == {"v": 1, "type": "status", "state": "ONLINE"}
    parsed = p.parse_message(frame(v=1, type="ack", run="r1", seq=3))
    assert parsed == p.Ack("r1", 3, finished=False)


def test_worker_states_are_the_status_module_states() -> None:
    assert tuple(s.value for s in WorkerState) == p.WORKER_STATES


# --- version rule ---------------------------------------------------------------------------


def test_same_major_version_ignores_unknown_fields() -> None:
    text = frame(v=1, type="heartbeat_ack", seq=7, added_in_1_5={"x": [1]}, other=None)
    assert p.parse_message(text) == p.HeartbeatAck(7)


@pytest.mark.parametrize("version", [0, 2, 99, -1])
def test_another_major_version_is_unsupported(version: int) -> None:
    err = refused(frame(v=version, type="assign", run="r", plan={}))
    assert err.code == "unsupported_version"
    assert "unsupported protocol version" in err.detail
    assert err.in_reply_to == "assign"


@pytest.mark.parametrize("version", ["1", 1.0, True, None, [1]])
def test_version_must_be_an_integer(version: object) -> None:
    err = refused(frame(v=version, type="heartbeat_ack", seq=1))
    assert (err.code, err.detail.split(":")[0]) == ("bad_field", "v")


def test_missing_version() -> None:
    err = refused(frame(type="heartbeat_ack", seq=1))
    assert (err.code, err.detail) == ("bad_field", "v: missing")


# --- frame size -----------------------------------------------------------------------------


def padded_assign(size: int, pad_char: str = "x") -> str:
    base = p.Assign("r", {"pad": ""}).to_json()
    extra = size - len(base.encode("utf-8"))
    width = len(pad_char.encode("utf-8"))
    assert extra % width == 0
    return p.Assign("r", {"pad": pad_char * (extra // width)}).to_json()


def test_frame_of_exactly_64_kib_is_accepted() -> None:
    text = padded_assign(p.MAX_MESSAGE_BYTES)
    assert len(text.encode()) == 65536
    assert isinstance(p.parse_message(text), p.Assign)
    assert isinstance(p.parse_message(text.encode()), p.Assign)


def test_frame_one_byte_over_is_refused_as_str_and_bytes() -> None:
    base = p.Assign("r", {"pad": ""}).to_json()
    text = base.replace('"pad":""', '"pad":"' + "x" * (65537 - len(base)) + '"')
    assert len(text.encode()) == 65537
    assert refused(text).code == "too_large"
    assert refused(text.encode()).code == "too_large"


def test_size_counts_utf8_bytes_not_characters() -> None:
    base = p.Assign("r", {"pad": ""}).to_json()
    text = base.replace('"pad":""', '"pad":"' + "é" * 33000 + '"')
    assert len(text) < 65536 < len(text.encode())
    assert refused(text).code == "too_large"


def test_size_is_checked_before_json() -> None:
    assert refused("{" * 70000).code == "too_large"
    assert refused(b"\xff" * 70000).code == "too_large"


def test_encoding_over_the_limit_is_a_local_error() -> None:
    with pytest.raises(ValueError, match="over the 65536-byte limit"):
        p.Assign("r", {"pad": "x" * 65536}).to_json()


# --- malformed frames -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xfe{}", "not_utf8"),
        (b'{"v":1,"type":"ack","run":"\xc3"}', "not_utf8"),
        ("\ud800", "not_utf8"),
        ("", "not_json"),
        ("{", "not_json"),
        ("{'v': 1}", "not_json"),
        ('{"v":1,"type":"ack","run":"r","seq":NaN}', "not_json"),
        ('{"v":1,"type":"ack","run":"r","seq":Infinity}', "not_json"),
        ("[" * 5000 + "]" * 5000, "not_json"),
        ('{"v":1,"type":"ack","run":"r","seq":' + "9" * 5000 + "}", "not_json"),
        ("[]", "not_object"),
        ('"hello"', "not_object"),
        ("null", "not_object"),
        ('{"v":1}', "missing_type"),
        ('{"v":1,"type":"launch_missiles"}', "unknown_type"),
        ('{"v":1,"type":7}', "bad_field"),
    ],
)
def test_malformed_frames(data: str | bytes, code: str) -> None:
    assert refused(data).code == code


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        (
            {
                "type": "hello",
                "worker": "w",
                "version": "1",
                "capabilities": {"max_endpoints": "9"},
            },
            "capabilities.max_endpoints: expected an integer, got a string",
        ),
        (
            {"type": "hello", "worker": "w", "version": "1", "capabilities": {"max_endpoints": -1}},
            "capabilities.max_endpoints: must be >= 0",
        ),
        (
            {
                "type": "hello",
                "worker": "w",
                "version": "1",
                "capabilities": {"max_endpoints": 1, "codecs": ["PCMU", 8]},
            },
            "capabilities.codecs[1]: expected a string, got an integer",
        ),
        ({"type": "hello", "worker": "w", "version": "1"}, "capabilities: missing"),
        ({"type": "ack", "run": "r", "seq": True}, "seq: expected an integer, got a boolean"),
        ({"type": "ack", "run": "r", "seq": 1.5}, "seq: expected an integer, got a number"),
        ({"type": "ack", "run": "r", "seq": -1}, "seq: must be >= 0"),
        ({"type": "ack", "run": "", "seq": 1}, "run: must not be empty"),
        ({"type": "assign", "run": "r", "plan": []}, "plan: expected an object, got an array"),
        ({"type": "welcome", "worker_id": "w", "heartbeat_interval_s": 0}, "heartbeat_interval_s"),
        (
            {"type": "welcome", "worker_id": "w", "server_time": 10**400},
            "server_time: number out of range",
        ),
        ({"type": "heartbeat", "seq": 1, "state": "SLEEPY"}, "state: must be one of"),
        (
            {
                "type": "metrics",
                "run": "r",
                "seq": 2,
                "start": 5,
                "end": 4,
                "groups": {},
                "total": {},
            },
            "end: must be >= start",
        ),
        (
            {
                "type": "metrics",
                "run": "r",
                "seq": 2,
                "start": 1,
                "end": 4,
                "groups": {},
                "total": {},
                "dropped": [1],
            },
            "dropped: expected an array of 2 items, got 1",
        ),
    ],
)
def test_bad_fields_are_named_by_path(fields: dict[str, Any], detail: str) -> None:
    err = refused(json.dumps({"v": 1, **fields}))
    assert err.code == "bad_field"
    assert err.detail.startswith(detail)
    assert err.in_reply_to == fields["type"]


def test_int_is_accepted_for_a_number_field() -> None:
    msg = p.parse_message(frame(v=1, type="welcome", worker_id="w", heartbeat_interval_s=30))
    assert isinstance(msg, p.Welcome)
    assert msg.heartbeat_interval_s == 30.0 and isinstance(msg.heartbeat_interval_s, float)


def test_a_message_from_the_wrong_side_is_unexpected() -> None:
    hello = p.Hello("w", "1", p.Capabilities(1)).to_json()
    err = refused(hello, expect=p.GATEWAY_MESSAGES)
    assert (err.code, err.in_reply_to) == ("unexpected_type", "hello")
    assert refused(p.Assign("r", {}).to_json(), expect=p.WORKER_MESSAGES).code == "unexpected_type"


def test_bad_field_detail_never_echoes_the_value() -> None:
    secret = "pw-sip-secret-123"
    err = refused(frame(v=1, type="assign", run="r", plan=secret))
    assert secret not in err.detail
    assert secret not in p.error_reply(err).to_json()


def test_lone_surrogate_from_a_json_escape_still_round_trips() -> None:
    msg = p.parse_message('{"v":1,"type":"assign","run":"r","plan":{"x":"\\ud800\\u00e9"}}')
    assert p.parse_message(msg.to_json()) == msg


def test_constructing_an_invalid_message_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="seq"):
        p.Heartbeat(0, "ONLINE")
    with pytest.raises(ValueError, match="dropped"):
        p.Metrics("r", 3, 0.0, 1.0, {}, {}, dropped=(2, 3))
    with pytest.raises(ValueError, match="not JSON compliant"):
        p.Metrics("r", 1, 0.0, float("inf"), {}, {}).to_json()


# --- error replies --------------------------------------------------------------------------


def test_error_reply_for_a_bad_frame() -> None:
    err = refused(frame(v=3, type="cancel", run="r"))
    reply = p.error_reply(err)
    assert json.loads(reply.to_json()) == {
        "v": 1,
        "type": "error",
        "code": "unsupported_version",
        "detail": "unsupported protocol version 3 (this side speaks 1)",
        "in_reply_to": "cancel",
    }
    assert p.error_reply(err, in_reply_to="assign").in_reply_to == "assign"
    assert p.error_reply(refused(b"\xff")).in_reply_to is None


def test_error_detail_is_clipped() -> None:
    err = refused(frame(v=1, type="x" * 5000))
    assert err.code == "unknown_type"
    assert len(err.detail) <= 200
    assert len(p.error_reply(err).to_json()) < 6000


# --- fuzzing --------------------------------------------------------------------------------


def parse_or_protocol_error(data: str | bytes) -> None:
    try:
        message = p.parse_message(data)
    except p.ProtocolError as err:
        assert err.code in set(p.ErrorCode)
        p.error_reply(err).to_json()  # always encodable
    else:
        assert isinstance(message, p.Message)


@given(st.text(max_size=200))
def test_fuzz_text(data: str) -> None:
    parse_or_protocol_error(data)


@given(st.binary(max_size=200))
def test_fuzz_bytes(data: bytes) -> None:
    parse_or_protocol_error(data)


@given(json_values)
def test_fuzz_any_json(value: object) -> None:
    parse_or_protocol_error(json.dumps(value))


@given(worker_messages | gateway_messages, st.data())
def test_fuzz_one_field_replaced(message: p.Message, data: st.DataObject) -> None:
    fields = json.loads(message.to_json())
    key = data.draw(st.sampled_from(sorted(fields)))
    fields[key] = data.draw(json_values)
    parse_or_protocol_error(json.dumps(fields))
