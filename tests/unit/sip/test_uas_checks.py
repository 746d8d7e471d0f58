"""RFC 3261 8.2.2-8.2.3: what the UAS refuses before acting, with the headers the MUSTs ask."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock

from callmeter.sip.message import SipRequest, SipResponse, parse_message
from callmeter.sip.stack import SipStack
from callmeter.sip.transport import Origin
from callmeter.sip.uas_checks import rejection

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def request(
    method: str = "INVITE",
    uri: str = "sip:callee@127.0.0.1:5060",
    extra: str = "",
    body: bytes = b"",
    content_type: str | None = "application/sdp",
    to_tag: str = "",
) -> SipRequest:
    lines = [
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-check-1",
        "Max-Forwards: 70",
        "From: <sip:caller@127.0.0.1>;tag=from-1",
        f"To: <sip:callee@127.0.0.1>{to_tag}",
        "Call-ID: check-1@127.0.0.1",
        f"CSeq: 1 {method}",
        "Contact: <sip:caller@127.0.0.1:5070>",
    ]
    if extra:
        lines.extend(extra.split("\n"))
    if body and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    parsed = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(parsed, SipRequest)
    return parsed


def test_a_plain_invite_with_sdp_goes_on() -> None:
    assert rejection(request(body=SDP)) is None
    assert rejection(request(body=SDP, extra="Accept: application/sdp;q=0.5, text/html")) is None
    assert rejection(request(body=SDP, content_type="Application/SDP; charset=utf-8")) is None


def test_an_unknown_option_tag_in_require_is_420_with_unsupported() -> None:
    """8.2.2.3: MUST respond 420 and MUST list the tags it does not understand."""
    response = rejection(request(body=SDP, extra="Require: 100rel, Foo\nSupported: timer"))
    assert response is not None and response.status == 420
    assert response.headers.get_all("Unsupported") == ["100rel", "Foo"]
    assert response.headers.to_addr().tag  # 8.2.6.2: a UAS adds a To tag


@pytest.mark.parametrize("method", ["ACK", "CANCEL"])
def test_require_is_ignored_on_ack_and_cancel(method: str) -> None:
    assert rejection(request(method, extra="Require: foo")) is None


def test_an_unknown_content_type_is_415_with_accept() -> None:
    """8.2.3: MUST reject with 415 and MUST list the types it accepts."""
    response = rejection(request(body=b"<xml/>", content_type="application/resource-lists+xml"))
    assert response is not None and response.status == 415
    assert response.headers.get("Accept") == "application/sdp"


def test_an_unknown_content_encoding_is_415_with_accept_encoding() -> None:
    response = rejection(request(body=SDP, extra="Content-Encoding: gzip"))
    assert response is not None and response.status == 415
    assert response.headers.get("Accept-Encoding") == "identity"


def test_an_invite_body_without_content_type_is_415() -> None:
    assert rejection(request(body=SDP, content_type=None)).status == 415  # type: ignore[union-attr]


@pytest.mark.parametrize("uri", ["tel:+15551234", "mailto:a@b.test", "urn:service:sos"])
def test_an_unknown_uri_scheme_is_416(uri: str) -> None:
    """8.2.2.1: a Request-URI scheme the UAS does not understand: 416."""
    for method in ("OPTIONS", "INVITE"):
        response = rejection(request(method, uri=uri))
        assert response is not None and response.status == 416


def test_an_invite_that_accepts_no_sdp_is_406() -> None:
    """21.4.7: we can only answer with application/sdp."""
    response = rejection(request(body=SDP, extra="Accept: text/plain"))
    assert response is not None and response.status == 406
    assert rejection(request(body=SDP, extra="Accept: application/sdp;q=0")).status == 406  # type: ignore[union-attr]
    assert rejection(request(body=SDP, extra="Accept: */*")) is None


def test_an_info_body_is_the_dialogs_business() -> None:
    info = request(
        "INFO", body=b"Signal=5\r\n", content_type="application/dtmf-relay", to_tag=";tag=x"
    )
    assert rejection(info) is None


class RecordingTransport:
    ports = {"udp": 5060}

    def __init__(self) -> None:
        self.replies: list[SipResponse] = []

    def send(self, message: Any, target: Any, on_error: Any = None) -> None:
        raise AssertionError("no request expected")

    def reply(self, response: SipResponse, origin: Origin, on_error: Any = None) -> None:
        self.replies.append(response)


def test_the_stack_answers_the_refusal_before_any_endpoint_sees_the_invite() -> None:
    transport = RecordingTransport()
    stack = SipStack(Clock(), transport, "127.0.0.1")  # type: ignore[arg-type]
    seen: list[Any] = []
    stack.add_endpoint("callee", lambda *args: seen.append(args))
    stack.on_message(request(body=SDP, extra="Require: foo"), Origin("udp", "127.0.0.1", 5070))
    assert [r.status for r in transport.replies] == [420]
    assert seen == []
    options = request("OPTIONS", uri="tel:+15551234", body=b"")
    stack.on_message(options, Origin("udp", "127.0.0.1", 5070))
    assert transport.replies[-1].status == 416
