"""SIP URIs and name-addr values (RFC 3261 sections 19.1, 20.10, 25.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from callmeter.sip.uri import (
    AbsoluteUri,
    NameAddr,
    SipParseError,
    SipUri,
    parse_name_addr,
    parse_sip_uri,
    parse_uri,
    quote_string,
    split_outside_quotes,
    unquote_string,
)
from tests.unit.sip.strategies import name_addrs, sip_uris, uris

# --- RFC 3261 section 19.1.3: the examples ------------------------------------------


def test_rfc_example_simple() -> None:
    assert parse_uri("sip:alice@atlanta.com") == SipUri(host="atlanta.com", user="alice")


def test_rfc_example_password_and_transport() -> None:
    uri = parse_sip_uri("sip:alice:secretword@atlanta.com;transport=tcp")
    assert (uri.user, uri.password, uri.host) == ("alice", "secretword", "atlanta.com")
    assert uri.transport == "tcp"
    assert str(uri) == "sip:alice:secretword@atlanta.com;transport=tcp"


def test_rfc_example_sips_with_headers_decodes_escapes() -> None:
    uri = parse_sip_uri("sips:alice@atlanta.com?subject=project%20x&priority=urgent")
    assert uri.scheme == "sips"
    assert uri.headers == (("subject", "project x"), ("priority", "urgent"))
    assert str(uri) == "sips:alice@atlanta.com?subject=project%20x&priority=urgent"


def test_rfc_example_telephone_user_with_password() -> None:
    uri = parse_sip_uri("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert (uri.user, uri.password) == ("+1-212-555-1212", "1234")
    assert uri.get_param("user") == "phone"


def test_rfc_example_ipv4_host_and_no_user() -> None:
    assert parse_uri("sip:alice@192.0.2.4") == SipUri(host="192.0.2.4", user="alice")
    uri = parse_sip_uri("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com")
    assert uri.user is None
    assert uri.get_param("method") == "REGISTER"
    assert uri.headers == (("to", "alice@atlanta.com"),)


def test_rfc_example_semicolon_in_user_part() -> None:
    # The user part may carry ';' (user-unreserved): the host starts after '@'.
    uri = parse_sip_uri("sip:alice;day=tuesday@atlanta.com")
    assert uri.user == "alice;day=tuesday"
    assert uri.params == ()
    assert str(uri) == "sip:alice;day=tuesday@atlanta.com"


# --- hosts, ports, IPv6 -------------------------------------------------------------


def test_ipv6_literal_is_stored_bare_and_written_bracketed() -> None:
    uri = parse_sip_uri("sip:alice@[::1]:5070;transport=tcp")
    assert (uri.host, uri.port) == ("::1", 5070)
    assert uri.host_port == "[::1]:5070"
    assert str(uri) == "sip:alice@[::1]:5070;transport=tcp"
    assert str(SipUri(host="2001:db8::10")) == "sip:[2001:db8::10]"


def test_ipv6_maddr_parameter() -> None:
    uri = parse_sip_uri("sip:[2001:db8::1];maddr=[2001:db8::2];lr")
    assert uri.maddr == "[2001:db8::2]"
    assert uri.lr


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@host.com",
        "sip:host.com:99999",
        "sip:host.com:",
        "sip:host.com:12a",
        "sip:[::1",
        "sip:[zz::1]",
        "sip:[::1%eth0]",
        "sip:[::1]x",
        "sip:a b@host.com",
        "sip:host.com;;lr",
        "sip:host.com?noequals",
        "sip:%G1@host.com",
        "sip:%FF@host.com",
        "sip:-host.com",
        "sip:host .com",
        "alice@atlanta.com",
        "1sip:alice@atlanta.com",
        "tel:",
        "tel:has space",
    ],
)
def test_malformed_uris_raise_sip_parse_error(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_uri(text)


# --- escaping (RFC 3261 19.1.2, RFC 4475 3.1.1.1 esc01 idea) ------------------------


def test_escaped_user_is_decoded_and_equal_to_unescaped() -> None:
    assert parse_uri("sip:%61lice@atlanta.com") == parse_uri("sip:alice@atlanta.com")


def test_user_characters_outside_the_grammar_are_escaped_on_output() -> None:
    uri = SipUri(host="example.com", user="sip:user@x y", password="p:w")
    text = str(uri)
    assert text == "sip:sip%3Auser%40x%20y:p%3Aw@example.com"
    assert parse_uri(text) == uri


def test_escaped_nul_and_utf8_in_user() -> None:
    uri = parse_sip_uri("sip:null-%00-null@example.com")
    assert uri.user == "null-\x00-null"
    assert parse_sip_uri("sip:j%C3%BCrgen@example.com").user == "jürgen"


# --- parameters ---------------------------------------------------------------------


def test_flag_parameter_has_no_value() -> None:
    uri = parse_sip_uri("sip:proxy.example.com;lr;transport=TLS")
    assert uri.params == (("lr", None), ("transport", "TLS"))
    assert uri.has_param("LR") and uri.get_param("lr") is None
    assert uri.transport == "tls"


def test_with_param_replaces_in_place_and_without_param_removes() -> None:
    uri = parse_sip_uri("sip:a@b.com;transport=udp;lr")
    assert str(uri.with_param("Transport", "tcp")) == "sip:a@b.com;Transport=tcp;lr"
    assert str(uri.with_param("ob")) == "sip:a@b.com;transport=udp;lr;ob"
    assert str(uri.without_param("lr")) == "sip:a@b.com;transport=udp"
    assert str(uri) == "sip:a@b.com;transport=udp;lr"  # frozen: unchanged


def test_other_schemes_are_kept_opaque() -> None:
    uri = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert uri == AbsoluteUri("tel", "+1-201-555-0123;phone-context=example.com")
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"
    with pytest.raises(SipParseError):
        parse_sip_uri("tel:+1-201-555-0123")


# --- name-addr (RFC 3261 section 20.10, 20.20, 20.39) ------------------------------


def test_name_addr_with_quoted_display_name_and_tag() -> None:
    value = parse_name_addr('"A. G. Bell" <sip:agb@bell-telephone.com> ;tag=a48s')
    assert value.display_name == "A. G. Bell"
    assert value.uri == SipUri(host="bell-telephone.com", user="agb")
    assert value.tag == "a48s"
    assert str(value) == '"A. G. Bell" <sip:agb@bell-telephone.com>;tag=a48s'


def test_name_addr_token_display_name() -> None:
    value = parse_name_addr("Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8")
    assert value.display_name == "Anonymous"
    assert value.tag == "hyh8"


def test_addr_spec_parameters_belong_to_the_header() -> None:
    value = parse_name_addr("sip:+12125551212@phone2net.com;tag=887s")
    assert value.display_name is None
    assert value.uri == SipUri(host="phone2net.com", user="+12125551212")
    assert value.params == (("tag", "887s"),)


def test_uri_parameters_inside_brackets_stay_with_the_uri() -> None:
    value = parse_name_addr("<sip:alice@pc33.atlanta.com;transport=tcp>;expires=60;q=0.7")
    assert isinstance(value.uri, SipUri)
    assert value.uri.transport == "tcp"
    assert value.expires == 60
    assert value.get_param("q") == "0.7"


def test_contact_examples_with_lws_and_mailto() -> None:
    watson = parse_name_addr(
        '"Mr. Watson" <sip:watson@worcester.bell-telephone.com>;q=0.7; expires=3600'
    )
    assert watson.expires == 3600
    mail = parse_name_addr('"Mr. Watson" <mailto:watson@bell-telephone.com> ;q=0.1')
    assert mail.uri == AbsoluteUri("mailto", "watson@bell-telephone.com")


def test_display_name_without_space_before_bracket() -> None:
    # RFC 4475 3.1.1.6 (lwsdisp) idea.
    value = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert value.display_name == "caller"
    assert value.tag == "323"


def test_escaped_quotes_and_backslashes_in_display_name() -> None:
    value = parse_name_addr(r'"\"Bob\" \\ jr; \,x" <sip:bob@example.com>')
    assert value.display_name == '"Bob" \\ jr; ,x'
    assert parse_name_addr(str(value)) == value


def test_quoted_parameter_value_with_brackets() -> None:
    text = '<sip:alice@[::1]:5060;transport=tcp>;+sip.instance="<urn:uuid:f81d4fae>";reg-id=1'
    value = parse_name_addr(text)
    assert value.get_param("+sip.instance") == '"<urn:uuid:f81d4fae>"'
    assert isinstance(value.uri, SipUri) and value.uri.host == "::1"
    assert str(value) == text


def test_addr_spec_with_quoted_parameter_containing_bracket() -> None:
    value = parse_name_addr('sip:a@b.com;x="<y>"')
    assert value.uri == SipUri(host="b.com", user="a")
    assert value.get_param("x") == '"<y>"'


def test_with_tag() -> None:
    value = parse_name_addr("<sip:bob@biloxi.com>")
    assert str(value.with_tag("a6c85cf")) == "<sip:bob@biloxi.com>;tag=a6c85cf"
    assert value.with_tag("1").without_param("TAG") == value


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Bob <sip:bob@example.com>',  # unbalanced quote (RFC 4475 quotbal)
        "<sip:bob@example.com",
        "Bob <sip:bob@example.com> junk",
        "Bell, Alexander <sip:a.g.bell@bell-tel.com>",  # unquoted non-token display
        '"Bob" sip:bob@example.com',
        "<sip:bob@example.com>;=x",
        "<sip:bob@example.com>;tag=",
        "<sip:bob@example.com>;tag=a b",
        "*",
        "<sip:bob@example.com>;expires=soon",
    ],
)
def test_malformed_name_addrs_raise_sip_parse_error(text: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(text).expires  # noqa: B018


def test_quoted_string_helpers() -> None:
    assert quote_string('a"b\\c') == r'"a\"b\\c"'
    assert unquote_string(r'"a\"b\\c"') == 'a"b\\c'
    with pytest.raises(SipParseError):
        unquote_string('"abc" x"')
    assert split_outside_quotes('a;b="c;d";e', ";") == ["a", 'b="c;d"', "e"]
    with pytest.raises(SipParseError):
        split_outside_quotes('a;b="c;d', ";")


# --- properties ---------------------------------------------------------------------


@given(sip_uris)
def test_sip_uri_round_trip(uri: SipUri) -> None:
    assert parse_uri(str(uri)) == uri


@settings(max_examples=100)
@given(uris)
def test_any_uri_round_trip(uri: SipUri | AbsoluteUri) -> None:
    assert parse_uri(str(uri)) == uri


@given(name_addrs)
def test_name_addr_round_trip(value: NameAddr) -> None:
    assert parse_name_addr(str(value)) == value
