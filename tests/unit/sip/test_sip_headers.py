"""Header fields: container, compact forms, lists, folding, typed values (RFC 3261 7.3, 20)."""

from __future__ import annotations

import pytest
from hypothesis import given

from callmeter.sip.headers import (
    CSeq,
    Headers,
    Via,
    parse_cseq,
    parse_header_block,
    parse_header_lines,
    parse_via,
    split_list,
)
from callmeter.sip.uri import SipParseError, SipUri
from tests.unit.sip.strategies import vias

LIMITS = {"max_headers": 200, "max_line_length": 8192}

# --- container ----------------------------------------------------------------------


def test_lookup_is_case_insensitive_and_output_keeps_the_spelling() -> None:
    headers = Headers([("call-ID", "abc@host"), ("X-Custom", "1")])
    assert headers.get("CALL-ID") == "abc@host"
    assert headers.get("Call-Id") == "abc@host"
    assert "x-custom" in headers
    assert list(headers) == [("call-ID", "abc@host"), ("X-Custom", "1")]


@pytest.mark.parametrize(
    ("compact", "long_name"),
    [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
    ],
)
def test_compact_forms_become_long_names(compact: str, long_name: str) -> None:
    headers = Headers([(compact.upper(), "value")])
    assert list(headers) == [(long_name, "value")]
    assert headers.get(long_name.lower()) == "value"
    assert headers.get(compact) == "value"


def test_list_headers_are_split_on_top_level_commas() -> None:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP a.com;branch=z9hG4bK1, SIP/2.0/TCP b.com;branch=z9hG4bK2"),
            ("Contact", '"Doe, John" <sip:j@a.com;x=1,2>;q=0.5, <sip:k@b.com>'),
            ("Allow", "INVITE,ACK , BYE"),
        ]
    )
    assert headers.get_all("via") == [
        "SIP/2.0/UDP a.com;branch=z9hG4bK1",
        "SIP/2.0/TCP b.com;branch=z9hG4bK2",
    ]
    assert headers.get_all("m") == ['"Doe, John" <sip:j@a.com;x=1,2>;q=0.5', "<sip:k@b.com>"]
    assert headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WWW-Authenticate", 'Digest realm="atlanta.com", nonce="84a4cc6f", algorithm=MD5'),
        ("Authorization", 'Digest username="bob", realm="biloxi.com", response="42ce3c"'),
        ("Proxy-Authenticate", 'Digest realm="x", qop="auth,auth-int"'),
        ("Proxy-Authorization", 'Digest username="a", uri="sip:b@c"'),
        ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ("Subject", "Lunch, tomorrow?"),
    ],
)
def test_non_list_headers_are_never_split(name: str, value: str) -> None:
    assert Headers([(name, value)]).get_all(name) == [value]


def test_split_list_handles_quotes_angles_and_unterminated_input() -> None:
    assert split_list('a, "b,\\"c", <d,e>') == ["a", '"b,\\"c"', "<d,e>"]
    assert split_list('a, "b, c') == ["a", '"b, c']
    assert split_list("a, <b, c") == ["a", "<b, c"]
    assert split_list(",a,,") == ["a"]
    assert split_list("") == [""]


def test_set_replaces_every_field_at_the_first_position() -> None:
    headers = Headers([("Route", "<sip:a>"), ("To", "x"), ("route", "<sip:b>")])
    headers.set("ROUTE", "<sip:c>, <sip:d>")
    assert list(headers) == [("ROUTE", "<sip:c>"), ("ROUTE", "<sip:d>"), ("To", "x")]
    headers.set("Subject", "new")
    assert list(headers)[-1] == ("Subject", "new")


def test_prepend_and_remove() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP b.com"), ("To", "<sip:x@y>")])
    headers.prepend("v", "SIP/2.0/UDP a.com")
    assert headers.get_all("Via") == ["SIP/2.0/UDP a.com", "SIP/2.0/UDP b.com"]
    assert headers.top_via().host == "a.com"
    assert headers.remove("VIA") == 2
    assert "via" not in headers and len(headers) == 1


def test_typed_cache_is_invalidated_by_changes() -> None:
    headers = Headers([("CSeq", "1 INVITE")])
    assert headers.cseq() == CSeq(1, "INVITE")
    headers.set("CSeq", "2 BYE")
    assert headers.cseq() == CSeq(2, "BYE")


def test_values_with_line_breaks_or_bad_names_are_refused() -> None:
    headers = Headers()
    with pytest.raises(ValueError):
        headers.add("Subject", "hi\r\nInjected: yes")
    with pytest.raises(ValueError):
        headers.add("Bad Name", "x")
    with pytest.raises(ValueError):
        headers.add("", "x")


def test_equality_copy_and_subset() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP a"), ("From", "<sip:a@b>"), ("X", "1")])
    twin = headers.copy()
    assert twin == headers
    twin.add("Y", "2")
    assert twin != headers
    assert list(headers.subset(["from", "via"])) == [
        ("Via", "SIP/2.0/UDP a"),
        ("From", "<sip:a@b>"),
    ]


def test_to_text_writes_the_given_content_length() -> None:
    headers = Headers([("l", "99"), ("Subject", "x"), ("Content-Length", "7")])
    assert headers.to_text(3) == "Content-Length: 3\r\nSubject: x\r\n"
    assert Headers([("Subject", "x")]).to_text(0) == "Subject: x\r\nContent-Length: 0\r\n"
    assert Headers([("l", "5")]).to_text() == "Content-Length: 5\r\n"


# --- header block: folding and limits (RFC 3261 7.3.1) ------------------------------


def test_folded_lines_are_joined_with_one_space() -> None:
    block = (
        "Subject: I know you're there,\r\n\t pick up the phone\r\n"
        "   and talk to me!\r\nTo: <sip:a@b>"
    )
    headers, error = parse_header_block(block, **LIMITS)
    assert error is None
    assert headers.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert headers.get("To") == "<sip:a@b>"


def test_whitespace_around_the_colon_is_allowed() -> None:
    headers, error = parse_header_block("Subject   :\t hello \r\nv :SIP/2.0/UDP h", **LIMITS)
    assert error is None
    assert list(headers) == [("Subject", "hello"), ("Via", "SIP/2.0/UDP h")]


def test_bare_lf_line_ends_are_tolerated() -> None:
    headers, error = parse_header_block("To: <sip:a@b>\nFrom: <sip:c@d>", **LIMITS)
    assert error is None
    assert list(headers) == [("To", "<sip:a@b>"), ("From", "<sip:c@d>")]


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        (["To: <sip:a@b>", "no colon here", "From: x"], "header line without a colon"),
        (["Bad Name: 1", "From: x"], "invalid header name"),
        (["To: <sip:a@b>", "From: x\ry"], "bare CR in header"),
    ],
)
def test_a_bad_line_is_reported_and_the_rest_still_parsed(lines: list[str], reason: str) -> None:
    headers, error = parse_header_lines(lines, **LIMITS)
    assert error == reason
    assert headers.get("From") == "x" or reason == "bare CR in header"
    assert headers.get("To") in ("<sip:a@b>", None)


def test_continuation_without_header_is_an_error() -> None:
    headers, error = parse_header_block(" folded\r\nTo: x", **LIMITS)
    assert error == "continuation line without a header"
    assert headers.get("To") == "x"


def test_header_count_limit() -> None:
    block = "\r\n".join(f"X-H{i}: {i}" for i in range(5))
    headers, error = parse_header_block(block, max_headers=3, max_line_length=100)
    assert error == "too many headers"
    assert len(headers) == 3


def test_line_length_limit_applies_to_physical_and_folded_lines() -> None:
    long_value = "a" * 50
    headers, error = parse_header_block(
        f"X: {long_value}\r\nTo: x", max_headers=10, max_line_length=40
    )
    assert error == "header line too long"
    assert headers.get("To") == "x" and "X" not in headers
    folded = "X: " + "\r\n ".join(["a" * 30] * 3)
    _, error = parse_header_block(folded, max_headers=10, max_line_length=40)
    assert error == "header line too long"


# --- Via (RFC 3261 20.42, RFC 3581) ---------------------------------------------------


def test_via_fields() -> None:
    via = parse_via(
        "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1"
        ";rport=5067;ttl=16;maddr=224.2.0.1"
    )
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "pc33.atlanta.com",
        5066,
    )
    assert via.branch == "z9hG4bK776asdhds"
    assert via.received == "192.0.2.1"
    assert (via.rport, via.has_rport) == (5067, True)
    assert via.ttl == 16
    assert via.maddr == "224.2.0.1"


def test_via_rport_flag_and_absence() -> None:
    flag = parse_via("SIP/2.0/TCP client.biloxi.com;rport;branch=z9hG4bKx")
    assert (flag.has_rport, flag.rport) == (True, None)
    plain = parse_via("SIP/2.0/TCP client.biloxi.com;branch=z9hG4bKx")
    assert (plain.has_rport, plain.rport, plain.port) == (False, None, None)
    answered = flag.with_param("received", "192.0.2.9").with_param("rport", "5061")
    assert (
        str(answered)
        == "SIP/2.0/TCP client.biloxi.com;rport=5061;branch=z9hG4bKx;received=192.0.2.9"
    )


def test_via_with_ipv6_sent_by_and_received() -> None:
    via = parse_via("SIP/2.0/UDP [::1]:5060;branch=z9hG4bKabc;received=::1;rport")
    assert (via.host, via.port, via.sent_by) == ("::1", 5060, "[::1]:5060")
    assert via.received == "::1"
    assert str(via) == "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKabc;received=::1;rport"


def test_via_with_whitespace_in_sent_protocol_and_around_params() -> None:
    # RFC 4475 3.1.1.1 (wsinv) idea: LWS is allowed around '/', ':' and ';'.
    via = parse_via("SIP  /  2.0 / TCP   spindle.example.com : 6666 ; branch = z9hG4bK9ikj8")
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "spindle.example.com",
        6666,
        "z9hG4bK9ikj8",
    )


def test_unknown_transport_is_kept() -> None:
    # RFC 4475 3.1.1.10 (transports) idea.
    assert parse_via("SIP/2.0/UNKNOWN t.example.com;branch=z9hG4bKx").transport == "UNKNOWN"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host:port",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP ;branch=x",
    ],
)
def test_malformed_vias(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(text)


def test_malformed_via_numbers_raise_on_access() -> None:
    via = parse_via("SIP/2.0/UDP h;rport=x;ttl=1000")
    with pytest.raises(SipParseError):
        via.rport  # noqa: B018
    with pytest.raises(SipParseError):
        via.ttl  # noqa: B018


@given(vias)
def test_via_round_trip(via: Via) -> None:
    assert parse_via(str(via)) == via


# --- CSeq and numeric headers ---------------------------------------------------------


def test_cseq() -> None:
    assert parse_cseq("4711 INVITE") == CSeq(4711, "INVITE")
    assert parse_cseq(" 1\tBYE ") == CSeq(1, "BYE")
    assert str(CSeq(2**31 - 1, "ACK")) == "2147483647 ACK"


@pytest.mark.parametrize(
    "text",
    ["", "INVITE", "1", "-1 INVITE", "2147483648 INVITE", "1 IN VITE", "x INVITE", "1 INV<ITE"],
)
def test_malformed_cseq(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_cseq(text)


def test_numeric_headers() -> None:
    headers = Headers([("l", "120"), ("Max-Forwards", "70"), ("Expires", "3600")])
    assert (headers.content_length(), headers.max_forwards(), headers.expires()) == (120, 70, 3600)
    assert Headers().content_length() is None
    assert Headers().max_forwards() is None


@pytest.mark.parametrize(
    "fields",
    [
        [("Content-Length", "-1")],
        [("Content-Length", "1 2")],
        [("Content-Length", "12345678901")],
        [("Content-Length", "10"), ("l", "11")],
        [("Max-Forwards", "9999")],
        [("Expires", "soon")],
    ],
)
def test_malformed_numeric_headers(fields: list[tuple[str, str]]) -> None:
    headers = Headers(fields)
    with pytest.raises(SipParseError):
        headers.content_length()
        headers.max_forwards()
        headers.expires()


def test_typed_name_addr_accessors_and_missing_headers() -> None:
    headers = Headers(
        [
            ("f", "Alice <sip:alice@atlanta.com>;tag=9fxced76sl"),
            ("t", "sip:bob@biloxi.com"),
            ("m", "<sip:alice@[::1]:5060>;expires=60, <sip:alice@192.0.2.4>"),
            ("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
            ("Route", "<sip:p3.example.com;lr>"),
        ]
    )
    assert headers.from_addr().tag == "9fxced76sl"
    assert headers.to_addr().uri == SipUri(host="biloxi.com", user="bob")
    contacts = headers.contacts()
    assert [c.expires for c in contacts] == [60, None]
    assert isinstance(contacts[0].uri, SipUri) and contacts[0].uri.host == "::1"
    assert [str(r.uri) for r in headers.record_routes()] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]
    assert headers.routes()[0].uri == SipUri(host="p3.example.com", params=(("lr", None),))
    for accessor in (headers.cseq, headers.call_id, headers.top_via):
        with pytest.raises(SipParseError, match="missing"):
            accessor()


def test_contact_wildcard() -> None:
    assert Headers([("Contact", "*")]).contact_is_wildcard()
    assert not Headers([("Contact", "<sip:a@b>")]).contact_is_wildcard()
