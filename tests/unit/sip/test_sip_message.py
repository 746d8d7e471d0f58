"""Requests and responses: parsing, serializing, building responses (RFC 3261 7, 8.2, 18.3).

The torture messages take the ideas of RFC 4475 (folded headers, compact forms,
escaped URIs, unusual methods and reasons, IPv6, bad lengths...) in messages of
our own.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from callmeter.sip.headers import CSeq, Headers
from callmeter.sip.message import (
    ParseLimits,
    SipParseError,
    SipRequest,
    SipResponse,
    is_rfc3261_branch,
    make_error_response,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)
from callmeter.sip.uri import AbsoluteUri, SipUri
from tests.unit.sip.strategies import requests, responses


def wire(*lines: str, body: bytes = b"") -> bytes:
    """CRLF-terminated lines, the empty line, then the body."""
    return ("".join(line + "\r\n" for line in lines) + "\r\n").encode("utf-8") + body


def parse_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def parse_response(data: bytes) -> SipResponse:
    message = parse_message(data)
    assert isinstance(message, SipResponse)
    return message


def parse_error(data: bytes, limits: ParseLimits | None = None) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data) if limits is None else parse_message(data, limits)
    return info.value


SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.com\r\n"
    b"s=Session SDP\r\n"
    b"c=IN IP4 pc33.atlanta.com\r\n"
    b"t=0 0\r\n"
    b"m=audio 49172 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

# RFC 3261 section 4: Alice's INVITE to Bob ...
ALICE_INVITE = wire(
    "INVITE sip:bob@biloxi.com SIP/2.0",
    "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: Bob <sip:bob@biloxi.com>",
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@pc33.atlanta.com>",
    "Content-Type: application/sdp",
    f"Content-Length: {len(SDP)}",
    body=SDP,
)

# ... and Bob's 200 OK as it reaches Alice (received params added by the proxies).
BOB_200 = wire(
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=192.0.2.3",
    "Via: SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2",
    "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds ;received=192.0.2.1",
    "To: Bob <sip:bob@biloxi.com>;tag=a6c85cf",
    "From: Alice <sip:alice@atlanta.com>;tag=1928301774",
    "Call-ID: a84b4c76e66710@pc33.atlanta.com",
    "CSeq: 314159 INVITE",
    "Contact: <sip:bob@192.0.2.4>",
    "Content-Type: application/sdp",
    f"Content-Length: {len(SDP)}",
    body=SDP,
)

COMMON = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtest1",
    "Max-Forwards: 70",
    "To: <sip:bob@example.com>",
    "From: <sip:alice@example.com>;tag=abc",
    "Call-ID: test1@192.0.2.1",
)


def request_with(*headers: str, method: str = "OPTIONS", body: bytes = b"") -> bytes:
    return wire(f"{method} sip:bob@example.com SIP/2.0", *headers, body=body)


# --- RFC 3261 worked examples -------------------------------------------------------------


def test_rfc3261_invite() -> None:
    request = parse_request(ALICE_INVITE)
    assert request.method == "INVITE"
    assert request.uri == SipUri(host="biloxi.com", user="bob")
    assert request.headers.top_via().branch == "z9hG4bK776asdhds"
    assert request.headers.cseq() == CSeq(314159, "INVITE")
    assert request.headers.from_addr().tag == "1928301774"
    assert request.headers.to_addr().tag is None
    assert request.headers.max_forwards() == 70
    assert request.body == SDP
    assert request.to_bytes() == ALICE_INVITE


def test_rfc3261_200_ok_with_three_vias() -> None:
    response = parse_response(BOB_200)
    assert (response.status, response.reason) == (200, "OK")
    assert [via.received for via in response.headers.vias()] == [
        "192.0.2.3",
        "192.0.2.2",
        "192.0.2.1",
    ]
    assert response.headers.to_addr().tag == "a6c85cf"
    assert response.body == SDP


def test_make_response_copies_the_rfc_headers_and_adds_the_to_tag() -> None:
    request = parse_request(BOB_200.replace(b"SIP/2.0 200 OK", b"INVITE sip:bob@192.0.2.4 SIP/2.0"))
    request.headers.set("To", "Bob <sip:bob@biloxi.com>")
    response = make_response(request, 180, to_tag="a6c85cf")
    assert (response.status, response.reason) == (180, "Ringing")
    assert list(response.headers) == [
        ("Via", "SIP/2.0/UDP server10.biloxi.com;branch=z9hG4bKnashds8;received=192.0.2.3"),
        (
            "Via",
            "SIP/2.0/UDP bigbox3.site3.atlanta.com;branch=z9hG4bK77ef4c2312983.1"
            ";received=192.0.2.2",
        ),
        ("Via", "SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds ;received=192.0.2.1"),
        ("To", "Bob <sip:bob@biloxi.com>;tag=a6c85cf"),
        ("From", "Alice <sip:alice@atlanta.com>;tag=1928301774"),
        ("Call-ID", "a84b4c76e66710@pc33.atlanta.com"),
        ("CSeq", "314159 INVITE"),
    ]
    assert response.body == b""
    assert b"\r\nContent-Length: 0\r\n\r\n" in response.to_bytes()


def test_make_response_keeps_an_existing_to_tag_and_defaults() -> None:
    request = parse_request(
        request_with(
            *COMMON[:2], "To: <sip:bob@example.com>;tag=old", *COMMON[3:], "CSeq: 2 OPTIONS"
        )
    )
    response = make_response(request, 200, to_tag="new")
    assert response.headers.to_addr().tag == "old"
    assert make_response(request, 100).headers.get("To") == "<sip:bob@example.com>;tag=old"
    assert make_response(request, 486, "Busy, really").reason == "Busy, really"
    assert make_response(request, 499).reason == "Unknown"
    with pytest.raises(ValueError):
        make_response(request, 99)
    with pytest.raises(ValueError):
        make_response(request, 200, to_tag="bad tag")


def test_trying_without_tag() -> None:
    request = parse_request(ALICE_INVITE)
    assert make_response(request, 100).headers.to_addr().tag is None


# --- serialization ----------------------------------------------------------------------


def test_to_bytes_always_writes_the_right_content_length() -> None:
    headers = Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bKx"), ("l", "999"), ("X-A", "1")])
    request = SipRequest("MESSAGE", SipUri(host="example.com"), headers, b"hello")
    assert request.to_bytes() == wire(
        "MESSAGE sip:example.com SIP/2.0",
        "Via: SIP/2.0/UDP h;branch=z9hG4bKx",
        "Content-Length: 5",
        "X-A: 1",
        body=b"hello",
    )
    response = SipResponse(200, "OK", Headers([("CSeq", "1 BYE")]))
    assert response.to_bytes() == wire("SIP/2.0 200 OK", "CSeq: 1 BYE", "Content-Length: 0")


def test_to_bytes_refuses_what_cannot_be_written() -> None:
    with pytest.raises(ValueError):
        SipRequest("BAD METHOD", SipUri(host="h")).to_bytes()
    with pytest.raises(ValueError):
        SipResponse(200, "OK\r\nX: injected").to_bytes()
    with pytest.raises(ValueError):
        SipResponse(700, "Nope").to_bytes()


@settings(max_examples=60)
@given(requests())
def test_request_round_trip(request: SipRequest) -> None:
    assert parse_message(request.to_bytes()) == request


@settings(max_examples=60)
@given(responses())
def test_response_round_trip(response: SipResponse) -> None:
    assert parse_message(response.to_bytes()) == response


# --- framing of a datagram (RFC 3261 18.3) ----------------------------------------------


def test_datagram_without_content_length_takes_the_rest_as_body() -> None:
    request = parse_request(request_with(*COMMON, "CSeq: 1 OPTIONS", body=b"abc"))
    assert request.body == b"abc"


def test_bytes_beyond_content_length_are_discarded() -> None:
    # RFC 4475 3.1.1.12 (dblreq) idea: a second message glued after the first.
    data = request_with(*COMMON, "CSeq: 1 OPTIONS", "Content-Length: 0") + ALICE_INVITE
    request = parse_request(data)
    assert (request.method, request.body) == ("OPTIONS", b"")


def test_leading_crlf_is_ignored_and_bare_lf_tolerated() -> None:
    assert parse_request(b"\r\n\r\n" + ALICE_INVITE).method == "INVITE"
    lf_only = ALICE_INVITE.split(b"\r\n\r\n")[0].replace(b"\r\n", b"\n") + b"\n\n" + SDP
    request = parse_request(lf_only)
    assert request.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.com"
    assert request.body == SDP


# --- torture messages that must parse (RFC 4475 3.1.1 ideas) -----------------------------


def test_whitespace_folding_and_compact_forms() -> None:
    body = b"v=0\r\n"
    data = (
        b"OPTIONS sip:carol@chicago.example.com;oddparam SIP/2.0\r\n"
        b"TO :\r\n sip:carol@chicago.example.com ;   tag    = 8321234356\r\n"
        b'from   : "Alice \\\\\\"the Great\\"" <sip:alice@example.com>\r\n'
        b"  ;\r\n  tag = 44asd\r\n"
        b"MaX-fOrWaRdS: 0068\r\n"
        b"i: folding.test.1@192.0.2.8\r\n"
        b"l  : 5\r\n"
        b"cseq: 0009\r\n  OPTIONS\r\n"
        b"Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.8;branch=z9hG4bKfold1\r\n"
        b"s :\r\n"
        b"X-Odd:   first part\r\n\t second part\r\n"
        b"X-Punct: ;;,,;;,;\r\n"
        b"c: application/sdp\r\n"
        b"Route:\r\n <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
        b"v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
        b"  branch  =   z9hG4bK9ikj8  ,\r\n"
        b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n z9hG4bK30239\r\n"
        b'm:"Quoted \\"\\"" <sip:alice@example.com> ; newparam =\r\n'
        b"      newvalue ;\r\n  secondparam ; q = 0.33\r\n"
        b"\r\n"
    ) + body
    request = parse_request(data)
    headers = request.headers
    assert headers.to_addr().tag == "8321234356"
    sender = headers.from_addr()
    assert sender.display_name == 'Alice \\"the Great"'
    assert sender.tag == "44asd"
    assert headers.max_forwards() == 68
    assert headers.call_id() == "folding.test.1@192.0.2.8"
    assert headers.cseq() == CSeq(9, "OPTIONS")
    assert [(v.transport, v.host, v.branch) for v in headers.vias()] == [
        ("UDP", "192.0.2.8", "z9hG4bKfold1"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert headers.get("Subject") == ""
    assert headers.get("x-odd") == "first part second part"
    assert headers.get("X-Punct") == ";;,,;;,;"
    assert headers.get("Content-Type") == "application/sdp"
    (contact,) = headers.contacts()
    assert contact.display_name == 'Quoted ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert request.body == body
    again = parse_request(request.to_bytes())
    assert again == request


def test_unusual_method_and_uri_characters() -> None:
    method = "!interesting-Method0123456789_*+`.%i~"
    uri = (
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
        ":&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    )
    data = wire(
        f"{method} {uri} SIP/2.0",
        *COMMON,
        'X-Display: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"',
        f"CSeq: 139122385 {method}",
    )
    request = parse_request(data)
    assert request.method == method
    assert isinstance(request.uri, SipUri)
    assert request.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert request.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert parse_request(request.to_bytes()).to_bytes() == request.to_bytes()


def test_escaped_uris() -> None:
    data = wire(
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0",
        "To: sip:%75se%72@example.com",
        "From: <sip:I%20have%20spaces@example.net>;tag=938",
        "Max-Forwards: 87",
        "i: esc01.239409asdfakjkn23onasd0-3234",
        "CSeq: 234234 INVITE",
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw",
        "m: <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>",
        "Content-Length: 0",
    )
    request = parse_request(data)
    assert isinstance(request.uri, SipUri)
    assert (request.uri.user, request.uri.host) == ("sips:user@example.com", "example.net")
    assert request.headers.to_addr().uri == SipUri(host="example.com", user="user")
    from_uri = request.headers.from_addr().uri
    assert isinstance(from_uri, SipUri) and from_uri.user == "I have spaces"
    contact_uri = request.headers.contacts()[0].uri
    assert isinstance(contact_uri, SipUri)
    assert contact_uri.user == "caller"
    assert contact_uri.params == (("lr", None), ("name", "value%41"))


def test_escaped_nul_and_semicolon_in_user_part() -> None:
    null = parse_request(
        wire(
            "REGISTER sip:example.com SIP/2.0",
            *COMMON[:2],
            "To: sip:null-%00-null@example.com",
            *COMMON[3:],
            "CSeq: 1 REGISTER",
        )
    )
    assert null.headers.to_addr().uri == SipUri(host="example.com", user="null-\x00-null")
    semi = parse_request(
        wire("OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0", *COMMON, "CSeq: 1 OPTIONS")
    )
    assert isinstance(semi.uri, SipUri) and semi.uri.user == "user;par=u@example.net"


def test_other_uri_schemes_reach_the_user_agent() -> None:
    # RFC 4475 3.1.2.? unknown scheme: parsed, the UA answers 416.
    request = parse_request(
        wire(
            "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0", *COMMON, "CSeq: 1 OPTIONS"
        )
    )
    assert request.uri == AbsoluteUri("nobodyknowsthisscheme", "totallyopaquecontent")


def test_unusual_reason_phrases() -> None:
    unicode_reason = "= 2**3 * 5**2 но сто девяносто девять - простое"
    response = parse_response(wire(f"SIP/2.0 200 {unicode_reason}", *COMMON, "CSeq: 1 OPTIONS"))
    assert response.reason == unicode_reason
    assert parse_response(wire("SIP/2.0 100 ", *COMMON, "CSeq: 1 INVITE")).reason == ""
    assert parse_response(wire("SIP/2.0 183", *COMMON, "CSeq: 1 INVITE")).reason == ""


def test_long_values_and_many_vias() -> None:
    tag = "t" * 2000
    vias = [f"Via: SIP/2.0/UDP sip{i}.example.com;branch=z9hG4bK{i}" for i in range(40)]
    request = parse_request(
        wire(
            "OPTIONS sip:bob@example.com SIP/2.0",
            *vias,
            *COMMON[1:3],
            f"From: <sip:alice@example.com>;tag={tag}",
            COMMON[4],
            "CSeq: 1 OPTIONS",
        )
    )
    assert len(request.headers.vias()) == 40
    assert request.headers.from_addr().tag == tag


def test_ipv6_everywhere() -> None:
    data = wire(
        "INVITE sip:bob@[::1]:5070;transport=tcp SIP/2.0",
        "Via: SIP/2.0/TCP [::1]:5060;branch=z9hG4bKv6;rport",
        "Via: SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKv6b;received=2001:db8::9:255",
        "Max-Forwards: 70",
        "To: <sip:bob@[::1]:5070>",
        "From: <sip:alice@[::1]>;tag=v6",
        "Call-ID: v6call@::1",
        "CSeq: 1 INVITE",
        "Contact: <sip:alice@[::1]:5060;transport=tcp>",
        "Content-Length: 0",
    )
    request = parse_request(data)
    assert isinstance(request.uri, SipUri)
    assert (request.uri.host, request.uri.port) == ("::1", 5070)
    top, second = request.headers.vias()
    assert (top.host, top.port, top.has_rport) == ("::1", 5060, True)
    assert (second.host, second.received) == ("2001:db8::9:1", "2001:db8::9:255")
    contact = request.headers.contacts()[0].uri
    assert isinstance(contact, SipUri) and contact.host_port == "[::1]:5060"
    assert request.to_bytes() == data


def test_binary_multipart_body_is_kept_as_bytes() -> None:
    body = b"--b\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\xfe\r\n\r\n--b--\r\n"
    request = parse_request(
        request_with(
            *COMMON,
            "CSeq: 1 OPTIONS",
            'Content-Type: multipart/mixed;boundary="b"',
            f"Content-Length: {len(body)}",
            body=body,
        )
    )
    assert request.body == body


# --- malformed requests get a 400 that names the problem (RFC 4475 3.1.2 ideas) ------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (
            request_with(*COMMON, "CSeq: 1 OPTIONS", "Content-Length: 9999", body=b"short"),
            "Content-Length larger than the message",
        ),
        (
            request_with(*COMMON, "CSeq: 1 OPTIONS", "Content-Length: -999"),
            "invalid Content-Length header",
        ),
        (
            request_with(*COMMON, "CSeq: 1 OPTIONS", "Content-Length: 3", "l: 4", body=b"abcd"),
            "conflicting Content-Length headers",
        ),
        (request_with(*COMMON, "CSeq: 36893488147419103232 OPTIONS"), "invalid CSeq header"),
        (
            request_with(COMMON[0], "Max-Forwards: 300", *COMMON[2:], "CSeq: 1 OPTIONS"),
            "invalid Max-Forwards header",
        ),
        (request_with(*COMMON, "CSeq: 1 INVITE"), "CSeq method does not match the request method"),
        (
            request_with(
                *COMMON[:3],
                'From: "Mr. J. User <sip:j.user@example.com>;tag=1',
                COMMON[4],
                "CSeq: 1 OPTIONS",
            ),
            "unterminated quoted string",
        ),
        (
            request_with(
                *COMMON[:3],
                "From: Bell, Alexander <sip:a.g.bell@bell-tel.com>;tag=43",
                COMMON[4],
                "CSeq: 1 OPTIONS",
            ),
            "display name must be a token list or quoted",
        ),
        (
            wire("OPTIONS <sip:user@example.com> SIP/2.0", *COMMON, "CSeq: 1 OPTIONS"),
            "invalid Request-URI: invalid URI scheme",
        ),
        (
            wire("OPTIONS sip:user@example.com; lr SIP/2.0", *COMMON, "CSeq: 1 OPTIONS"),
            "invalid request line",
        ),
        (
            wire("OPTIONS  sip:user@example.com  SIP/2.0", *COMMON, "CSeq: 1 OPTIONS"),
            "invalid request line",
        ),
        (
            wire("OPTIONS sip:user@example.com SIP/2.0 ", *COMMON, "CSeq: 1 OPTIONS"),
            "invalid request line",
        ),
        (
            wire("OPTIONS sip:user@example.com HTTP/1.1", *COMMON, "CSeq: 1 OPTIONS"),
            "invalid request line",
        ),
        (
            request_with(*COMMON, "CSeq: 1 OPTIONS", "Bad Header Line"),
            "header line without a colon",
        ),
        (
            request_with(
                *COMMON,
                "CSeq: 1 OPTIONS",
                "X-A: caf\udce9".encode("utf-8", "surrogateescape").decode("latin-1"),
            ).replace(b"caf\xc3\xa9", b"caf\xe9"),
            "headers are not valid UTF-8",
        ),
        (request_with(*COMMON, "CSeq: 1 OPTIONS")[:-2], "missing empty line after headers"),
    ],
)
def test_malformed_requests_are_answerable(data: bytes, reason: str) -> None:
    error = parse_error(data)
    assert error.reason == reason
    assert error.status == 400
    assert error.can_respond
    assert error.method == "OPTIONS"
    response = make_error_response(error, to_tag="t1")
    assert response.status == 400
    assert response.reason == reason[0].upper() + reason[1:]
    assert response.headers.top_via().branch == "z9hG4bKtest1"
    assert response.headers.call_id() == "test1@192.0.2.1"
    # The reply goes on the wire with the request's headers echoed as received.
    raw = response.to_bytes()
    assert raw.startswith(b"SIP/2.0 400 " + response.reason.encode() + b"\r\n")
    assert b"\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKtest1\r\n" in raw
    assert raw.endswith(b"\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header_is_named(missing: str) -> None:
    lines = [*COMMON, "CSeq: 1 OPTIONS"]
    lines = [line for line in lines if not line.startswith(missing + ":")]
    error = parse_error(request_with(*lines))
    assert error.reason == f"missing {missing} header"
    assert error.can_respond == (missing != "Via")
    if missing != "Via":
        response = make_error_response(error)
        assert response.reason == f"Missing {missing} header"
        assert missing not in response.headers
        if missing != "To":
            assert response.headers.to_addr().tag  # a fresh tag was added


def test_max_forwards_may_be_absent() -> None:
    request = parse_request(request_with(COMMON[0], *COMMON[2:], "CSeq: 1 OPTIONS"))
    assert request.headers.max_forwards() is None


def test_insufficient_headers_partial_holds_what_parsed() -> None:
    # RFC 4475 3.1.2.? (insuf) idea: only Via and a broken To.
    error = parse_error(request_with(COMMON[0], "To: <sip:bob@example.com", "X-Other: 1"))
    assert error.reason == "missing From header"
    assert error.partial is not None
    assert list(error.partial) == [("Via", COMMON[0][5:]), ("To", "<sip:bob@example.com")]
    # The broken To is echoed as received, without a tag it cannot hold.
    assert make_error_response(error).headers.get("To") == "<sip:bob@example.com"


def test_wrong_sip_version_gets_505() -> None:
    error = parse_error(wire("OPTIONS sip:t@example.com SIP/7.0", *COMMON, "CSeq: 1 OPTIONS"))
    assert (error.status, error.reason, error.can_respond) == (
        505,
        "SIP version not supported",
        True,
    )
    assert make_error_response(error).status == 505


def test_unusable_via_or_ack_cannot_be_answered() -> None:
    bad_via = parse_error(
        request_with("Via: SIP/2.0/UDP [::1;branch=z9hG4bKx", *COMMON[1:], "CSeq: 1 OPTIONS")
    )
    assert bad_via.reason == "unterminated IPv6 reference"
    assert not bad_via.can_respond
    with pytest.raises(ValueError):
        make_error_response(bad_via)
    ack = parse_error(request_with(*COMMON, "CSeq: 1 INVITE", method="ACK"))
    assert ack.method == "ACK" and not ack.can_respond


def test_limits() -> None:
    big = parse_error(request_with(*COMMON, "CSeq: 1 OPTIONS", body=b"x" * 65536))
    assert (big.status, big.reason, big.can_respond) == (513, "message too large", False)
    many = parse_error(
        request_with(*COMMON, "CSeq: 1 OPTIONS", *(f"X-{i}: {i}" for i in range(200)))
    )
    assert many.reason == "too many headers"
    assert many.can_respond
    long = parse_error(request_with(*COMMON, "CSeq: 1 OPTIONS", "X-Long: " + "a" * 8200))
    assert long.reason == "header line too long"
    assert long.can_respond
    small = ParseLimits(max_message_size=200, max_headers=5, max_line_length=60)
    assert parse_error(ALICE_INVITE, small).status == 513


def test_malformed_responses_are_errors_without_answer() -> None:
    for start in ("SIP/2.0 2000 OK", "SIP/2.0 099 Low", "SIP/2.0 OK", "SIP/3.0 200 OK", "SIP/2.0"):
        error = parse_error(wire(start, *COMMON, "CSeq: 1 OPTIONS"))
        assert error.reason == "invalid status line"
        assert not error.can_respond
    error = parse_error(wire("SIP/2.0 200 OK", *COMMON))
    assert (error.reason, error.can_respond) == ("missing CSeq header", False)


@pytest.mark.parametrize("data", [b"", b"\r\n\r\n", b"\r\n", b"garbage", b"\x00\x01\x02\r\n\r\n"])
def test_garbage_is_a_parse_error(data: bytes) -> None:
    error = parse_error(data)
    assert not error.can_respond


# --- identifiers ------------------------------------------------------------------------


def test_branch_tag_and_call_id_generation() -> None:
    branches = {new_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(is_rfc3261_branch(b) and len(b) > 7 + 16 for b in branches)
    assert not is_rfc3261_branch("1234") and not is_rfc3261_branch(None)
    assert new_tag() != new_tag()
    assert new_call_id("[::1]").endswith("@[::1]")
    assert "@" not in new_call_id()
