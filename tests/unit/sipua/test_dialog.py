"""Dialogs of RFC 3261 section 12 built from messages: route sets and RFC 2543 peers."""

from __future__ import annotations

from callmeter.sip.dialog import Dialog, target_of
from callmeter.sip.message import SipRequest, make_response
from callmeter.sip.uri import parse_uri


def invite(*headers: tuple[str, str]) -> SipRequest:
    request = SipRequest("INVITE", parse_uri("sip:bob@192.0.2.2"))
    request.headers.add("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1")
    for name, value in headers:
        request.headers.add(name, value)
    request.headers.add("To", "<sip:bob@example.com>")
    request.headers.add("Call-ID", "d-1")
    request.headers.add("CSeq", "7 INVITE")
    return request


FROM = ("From", "<sip:alice@example.com>;tag=a1")
CONTACT = ("Contact", "<sip:alice@192.0.2.1:5070>")
RR = [("Record-Route", "<sip:p2.example.com;lr>"), ("Record-Route", "<sip:p1.example.com;lr>")]


def test_uas_route_set_is_the_record_route_in_order() -> None:
    """12.1.1: the UAS's route set; 12.2.1.1: loose routing keeps the remote target."""
    dialog = Dialog.as_uas(invite(FROM, CONTACT, *RR), "b1")
    bye = dialog.create_request("BYE")
    assert bye.headers.get_all("Route") == [value for _, value in RR]
    assert str(bye.uri) == "sip:alice@192.0.2.1:5070"
    assert target_of(dialog.next_hop()) == ("udp", "p2.example.com", 5060)
    assert bye.headers.cseq().number == 1 and dialog.remote_seq == 7


def test_uac_route_set_is_the_record_route_reversed() -> None:
    request = invite(FROM, CONTACT)
    ok = make_response(request, 200, to_tag="b1")
    for name, value in RR:
        ok.headers.add(name, value)
    ok.headers.add("Contact", "<sip:bob@192.0.2.2:5080>")
    dialog = Dialog.as_uac(request, ok)
    assert [str(r) for r in dialog.route_set] == [RR[1][1], RR[0][1]]
    ack = dialog.create_ack(7)
    assert ack.headers.get_all("Route") == [RR[1][1], RR[0][1]]
    assert ack.headers.cseq().number == 7


def test_strict_router_first_is_the_request_uri() -> None:
    """12.2.1.1: a strict router in front: it is the Request-URI, the target the last Route."""
    dialog = Dialog.as_uas(invite(FROM, CONTACT, ("Record-Route", "<sip:p9.example.com>")), "b1")
    bye = dialog.create_request("BYE")
    assert str(bye.uri) == "sip:p9.example.com"
    assert bye.headers.get_all("Route") == ["<sip:alice@192.0.2.1:5070>"]


def test_rfc_2543_invite_without_from_tag_or_contact() -> None:
    """12.2.2 / 8.2.6.2: a null From tag; no Contact: the From URI is the remote target."""
    dialog = Dialog.as_uas(invite(("From", "<sip:alice@example.com>")), "b1")
    assert dialog.remote_tag == "" and str(dialog.remote_target) == "sip:alice@example.com"
    bye = dialog.create_request("BYE")
    assert bye.headers.to_addr().tag is None and bye.headers.from_addr().tag == "b1"
    assert dialog.id == ("d-1", "b1", "")


def test_rfc_2543_answer_without_to_tag() -> None:
    """12.1.2: a UAC takes a response without To tag (a null tag)."""
    request = invite(FROM, CONTACT)
    ok = make_response(request, 200)
    ok.headers.add("Contact", "<sip:bob@192.0.2.2:5080>")
    dialog = Dialog.as_uac(request, ok)
    assert dialog.remote_tag == ""
    assert dialog.create_request("BYE").headers.to_addr().tag is None
