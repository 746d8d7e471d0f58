"""Hypothesis strategies for SIP values and messages, shared by the SIP tests."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from callmeter.sip.headers import CSeq, Headers, Via
from callmeter.sip.message import SipRequest, SipResponse
from callmeter.sip.uri import AbsoluteUri, NameAddr, SipUri, quote_string

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"

tokens = st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=12)
# Any text but surrogates: URI components are escaped as UTF-8 on output.
_NO_SURROGATES = st.characters(blacklist_categories=("Cs",))  # type: ignore[arg-type]
_ONE_LINE = st.characters(
    blacklist_categories=("Cs",),  # type: ignore[arg-type]
    blacklist_characters="\r\n",
)
any_text = st.text(alphabet=_NO_SURROGATES, max_size=12)
line_text = st.text(alphabet=_ONE_LINE, max_size=30)

labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
hostnames = st.lists(labels, min_size=1, max_size=3).map(".".join)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
hosts = st.one_of(hostnames, ipv4, ipv6, st.just("::1"))
ports = st.none() | st.integers(0, 65535)

uri_params = st.lists(
    st.tuples(any_text.filter(bool), st.none() | any_text.filter(bool)), max_size=3
).map(tuple)
uri_headers = st.lists(st.tuples(any_text.filter(bool), any_text), max_size=2).map(tuple)


@st.composite
def _sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | any_text.filter(bool))
    return SipUri(
        host=draw(hosts),
        user=user,
        password=None if user is None else draw(st.none() | any_text),
        port=draw(ports),
        scheme=draw(st.sampled_from(["sip", "sips"])),
        params=draw(uri_params),
        headers=draw(uri_headers),
    )


sip_uris = _sip_uris()
absolute_uris = st.builds(
    AbsoluteUri,
    scheme=st.sampled_from(["tel", "urn", "mailto"]),
    opaque=st.text(alphabet="0123456789+-;=abc:@.", min_size=1, max_size=15),
)
uris = st.one_of(sip_uris, absolute_uris)

header_param_values = st.one_of(
    st.none(), tokens, hosts.filter(lambda h: ":" not in h), line_text.map(quote_string)
)
header_params = st.lists(st.tuples(tokens, header_param_values), max_size=3).map(tuple)

name_addrs = st.builds(NameAddr, uri=uris, display_name=st.none() | line_text, params=header_params)

vias = st.builds(
    Via,
    transport=st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS"]),
    host=hosts,
    port=ports,
    params=st.lists(
        st.one_of(
            st.tuples(st.just("branch"), tokens.map(lambda t: "z9hG4bK" + t)),
            st.tuples(st.just("rport"), st.none() | st.integers(1, 65535).map(str)),
            st.tuples(st.just("received"), st.one_of(ipv4, ipv6)),
            st.tuples(tokens, st.none() | tokens),
        ),
        max_size=4,
    ).map(tuple),
)

methods = st.one_of(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "REGISTER"]), tokens)
# Extension headers: "X-" names can be neither compact forms nor list headers.
extension_headers = st.lists(
    st.tuples(tokens.map(lambda t: "X-" + t), line_text.map(lambda v: v.strip(" \t"))),
    max_size=4,
)
bodies = st.binary(max_size=200)


@st.composite
def _headers(draw: st.DrawFn, method: str) -> Headers:
    headers = Headers()
    for via in draw(st.lists(vias, min_size=1, max_size=3)):
        headers.add("Via", str(via))
    headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    headers.add("From", str(draw(name_addrs)))
    headers.add("To", str(draw(name_addrs)))
    headers.add("Call-ID", draw(tokens) + "@" + draw(hostnames))
    headers.add("CSeq", str(CSeq(draw(st.integers(0, 2**31 - 1)), method)))
    for name, value in draw(extension_headers):
        headers.add(name, value)
    return headers


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    """Valid requests whose headers end with a correct Content-Length."""
    method = draw(methods)
    headers = draw(_headers(method))
    body = draw(bodies)
    headers.add("Content-Length", str(len(body)))
    return SipRequest(method, draw(uris), headers, body)


@st.composite
def responses(draw: st.DrawFn) -> SipResponse:
    """Valid responses whose headers end with a correct Content-Length."""
    headers = draw(_headers(draw(methods)))
    body = draw(bodies)
    headers.add("Content-Length", str(len(body)))
    return SipResponse(draw(st.integers(100, 699)), draw(line_text), headers, body)


messages = st.one_of(requests(), responses())
