"""Tests for callmeter.sip.digest: RFC 2617 / RFC 7616 / RFC 8760 digest authentication."""

from __future__ import annotations

import contextlib
import itertools
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.sip.digest import (
    DEFAULT_PREFERENCE,
    SUPPORTED_ALGORITHMS,
    AuthDecision,
    Authorization,
    Challenge,
    DigestClient,
    DigestError,
    DigestVerifier,
    auth_decision,
    compute_response,
    format_authorization,
    format_challenge,
    parse_authorization,
    parse_challenge,
    parse_challenges,
    select_challenge,
)

# --- RFC worked examples ----------------------------------------------------------------------


def test_rfc2617_section_3_5_example() -> None:
    """RFC 2617 section 3.5: Mufasa / "Circle Of Life", MD5, qop=auth."""
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert challenge.algorithm == "MD5"
    assert challenge.qop == ("auth", "auth-int")
    client = DigestClient("Mufasa", "Circle Of Life", cnonce_factory=lambda: "0a4f113b")
    assert client.on_challenge([format_challenge(challenge)]) is AuthDecision.RETRY
    value = client.authorize("GET", "/dir/index.html", realm="testrealm@host.com")
    auth = parse_authorization(value)
    assert auth.response == "6629fae49393a05397450978507c4ef1"
    assert auth.nc == 1
    assert auth.qop == "auth"
    assert auth.opaque == "5ccc069c403ebaf9f0171e9517f40e41"
    assert "nc=00000001" in value
    assert "qop=auth," in value or value.endswith("qop=auth")
    assert 'cnonce="0a4f113b"' in value


RFC7616_CHALLENGES = [
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"',
]
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: str, expected: str) -> None:
    """RFC 7616 section 3.9.1: the same challenge in SHA-256 and MD5, "Circle of Life"."""
    client = DigestClient(
        "Mufasa", "Circle of Life", preference=(algorithm,), cnonce_factory=lambda: RFC7616_CNONCE
    )
    client.on_challenge(RFC7616_CHALLENGES)
    value = client.authorize("GET", "/dir/index.html", realm="http-auth@example.org")
    auth = parse_authorization(value)
    assert auth.algorithm == algorithm
    assert auth.response == expected
    # RFC 7616 quoting: algorithm, qop and nc unquoted, the rest quoted
    assert f"algorithm={algorithm}," in value
    assert "qop=auth," in value
    assert value.endswith("nc=00000001")
    assert 'uri="/dir/index.html"' in value
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in value


def test_strongest_challenge_is_chosen_whatever_the_order() -> None:
    """RFC 8760 section 2.4: SHA-256 and MD5 offered, SHA-256 answered."""
    for values in (RFC7616_CHALLENGES, list(reversed(RFC7616_CHALLENGES))):
        chosen = select_challenge(parse_challenges(values))
        assert chosen.algorithm == "SHA-256"
    md5_only = select_challenge(parse_challenges(values), preference=("MD5",))
    assert md5_only.algorithm == "MD5"


def test_unsupported_only_is_an_error() -> None:
    value = 'Digest realm="r", nonce="n", algorithm=SHA-1024'
    assert parse_challenge(value).algorithm == "SHA-1024"
    with pytest.raises(DigestError):
        select_challenge(parse_challenges(value))
    with pytest.raises(DigestError):
        DigestClient("u", "p").on_challenge([value])
    qop_int_only = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    assert qop_int_only.supported
    assert not parse_challenge('Digest realm="r", nonce="n", qop="other"').supported


def test_rfc2069_compat_without_qop() -> None:
    """No qop in the challenge: response = H(HA1:nonce:HA2), no cnonce or nc sent."""
    client = DigestClient("bob", "zanzibar")
    client.on_challenge('Digest realm="biloxi.com", nonce="dcd98b7102dd", algorithm=MD5')
    value = client.authorize("REGISTER", "sip:biloxi.com", realm="biloxi.com")
    auth = parse_authorization(value)
    assert auth.qop is None and auth.nc is None and auth.cnonce is None
    assert "nc=" not in value and "cnonce" not in value
    import hashlib

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5("bob:biloxi.com:zanzibar")
    ha2 = md5("REGISTER:sip:biloxi.com")
    assert auth.response == md5(f"{ha1}:dcd98b7102dd:{ha2}")


def test_sess_and_auth_int_follow_rfc7616_formulas() -> None:
    import hashlib

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    ha1 = sha(sha("u:r:p") + ":n:c")
    ha2 = sha("INVITE:sip:x@y:" + hashlib.sha256(b"body").hexdigest())
    expected = sha(f"{ha1}:n:0000000a:c:auth-int:{ha2}")
    got = compute_response(
        algorithm="SHA-256-sess",
        username="u",
        password="p",
        realm="r",
        nonce="n",
        method="INVITE",
        uri="sip:x@y",
        qop="auth-int",
        nc=10,
        cnonce="c",
        body=b"body",
    )
    assert got == expected


# --- parsing ----------------------------------------------------------------------------------


def test_parse_is_case_insensitive_any_order_and_keeps_unknown_params() -> None:
    value = (
        'DIGEST  Stale=true ,ALGORITHM=md5-SESS,\tNonce="a\\"b\\\\c", foo="x, y",'
        ' QOP=auth, Realm = "sip.example"  , domain="sip:a sip:b", opaque=""'
    )
    challenge = parse_challenge(value)
    assert challenge == Challenge(
        realm="sip.example",
        nonce='a"b\\c',
        algorithm="MD5-sess",
        qop=("auth",),
        opaque="",
        stale=True,
        domain="sip:a sip:b",
        params=(("foo", "x, y"),),
    )


def test_parse_folded_value_and_several_challenges_in_one_field() -> None:
    value = (
        'Basic realm="x", Digest realm="a",\r\n nonce="1", algorithm=SHA-256,'
        ' Negotiate abc==, Digest realm="a", nonce="1"'
    )
    challenges = parse_challenges(value)
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert parse_challenges(["Basic realm=x", 'Digest realm="r", nonce="n"'])[0].realm == "r"


def test_stale_values() -> None:
    base = 'Digest realm="r", nonce="n"'
    assert not parse_challenge(base).stale
    assert parse_challenge(base + ", stale=TRUE").stale
    assert not parse_challenge(base + ', stale="false"').stale


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Digest realm="r"',
        'Digest nonce="n"',
        'Digest realm="r, nonce="n"',
        'Digest realm="r" nonce="n"',
        'Digest realm="r", nonce="n", realm="s"',
        'Digest realm="r", nonce="n", stale=maybe',
        'Digest realm="r", nonce="n", qop=""',
        'Digest realm="r", nonce=',
        'Digest realm="r", nonce="n"\r\nX: y',
        "Digest abc==",
        '"Digest" realm="r"',
        'Digest=realm="r"',
        'Digest realm="r", nonce="n", ;=',
        'Digest realm="r", nonce="n"' + ", x=y" * 2000,
    ],
)
def test_malformed_challenges_raise_digest_error(value: str) -> None:
    with pytest.raises(DigestError):
        parse_challenge(value)


def test_digest_error_is_a_value_error() -> None:
    assert issubclass(DigestError, ValueError)


_qdtext = st.text(
    alphabet=string.ascii_letters + string.digits + ' \t"\\,=;:/@.-\x01\x7f\u00e9\u4e2d',
    max_size=30,
)
_tokens = st.text(alphabet=string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1)


_KNOWN_CHALLENGE_PARAMS = ("realm", "nonce", "algorithm", "qop", "opaque", "stale", "domain")


@st.composite
def challenges(draw: st.DrawFn) -> Challenge:
    return Challenge(
        realm=draw(_qdtext),
        nonce=draw(_qdtext),
        algorithm=draw(st.sampled_from([*SUPPORTED_ALGORITHMS, "X-Future"])),
        qop=tuple(draw(st.lists(st.sampled_from(["auth", "auth-int", "x-new"]), max_size=3))),
        opaque=draw(st.none() | _qdtext),
        stale=draw(st.booleans()),
        domain=draw(st.none() | _qdtext),
        params=tuple(
            draw(
                st.dictionaries(
                    _tokens.map(str.lower).filter(lambda n: n not in _KNOWN_CHALLENGE_PARAMS),
                    _qdtext,
                    max_size=3,
                )
            ).items()
        ),
    )


@given(st.lists(challenges(), min_size=1, max_size=3), st.booleans())
def test_property_challenges_round_trip(items: list[Challenge], one_field: bool) -> None:
    values = [format_challenge(c) for c in items]
    parsed = parse_challenges(", ".join(values) if one_field else values)
    assert parsed == items


@given(st.text(max_size=200))
def test_fuzz_challenge_parser_raises_only_digest_error(value: str) -> None:
    with contextlib.suppress(DigestError):
        parse_challenges(value)


@given(
    st.lists(
        st.sampled_from(
            ["Digest", " ", ",", "=", '"', "\\", "realm", "nonce", "qop", "stale", "a==", "\t"]
        )
        | st.text(max_size=3),
        max_size=30,
    )
)
def test_fuzz_structured_pieces_only_digest_error(pieces: list[str]) -> None:
    value = "".join(pieces)
    for parse in (parse_challenges, parse_authorization):
        with contextlib.suppress(DigestError):
            parse(value)


def test_authorization_round_trip_and_validation() -> None:
    auth = Authorization(
        username='us"er',
        realm="r",
        nonce="n",
        uri="sip:a@b",
        response="abc",
        algorithm="SHA-256",
        qop="auth",
        nc=255,
        cnonce="c",
        opaque="o",
    )
    value = format_authorization(auth)
    assert "nc=000000ff" in value
    assert parse_authorization(value) == auth
    for bad in (
        'Digest username="u", realm="r", nonce="n", uri="u"',
        'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth',
        'Digest username="u", realm="r", nonce="n", uri="u", response="x", qop=auth, '
        'cnonce="c", nc=1',
        'Basic username="u"',
    ):
        with pytest.raises(DigestError):
            parse_authorization(bad)


# --- client state -----------------------------------------------------------------------------


def _counter() -> itertools.count[int]:
    return itertools.count(1)


def test_nonce_count_increments_and_pre_authorizes() -> None:
    numbers = _counter()
    client = DigestClient("alice", "pw", cnonce_factory=lambda: f"c{next(numbers)}")
    assert client.authorization_headers("REGISTER", "sip:example.test") == []
    client.on_challenge(['Digest realm="example.test", nonce="n1", qop="auth"'])
    headers = [client.authorization_headers("REGISTER", "sip:example.test") for _ in range(3)]
    ncs = [parse_authorization(h[0][1]).nc for h in headers]
    assert ncs == [1, 2, 3]
    assert all(h[0][0] == "Authorization" for h in headers)
    # a new nonce restarts the count
    client.on_challenge(
        ['Digest realm="example.test", nonce="n2", qop="auth", stale=true'],
        sent=[headers[-1][0][1]],
    )
    assert parse_authorization(client.authorize("X", "sip:y", realm="example.test")).nc == 1


def test_proxy_and_registrar_realms_both_answered() -> None:
    client = DigestClient("alice", "pw")
    client.on_challenge(['Digest realm="registrar", nonce="a"'])
    client.on_challenge(['Digest realm="proxy", nonce="b", algorithm=SHA-256'], proxy=True)
    headers = dict(client.authorization_headers("INVITE", "sip:bob@example.test"))
    assert parse_authorization(headers["Authorization"]).realm == "registrar"
    proxy_auth = parse_authorization(headers["Proxy-Authorization"])
    assert (proxy_auth.realm, proxy_auth.algorithm) == ("proxy", "SHA-256")
    assert client.realms == ("registrar", "proxy")
    client.forget("proxy")
    assert list(client.realms) == ["registrar"]
    assert "pw" not in repr(client)


def test_stale_is_retry_not_failure() -> None:
    client = DigestClient("alice", "pw")
    client.on_challenge('Digest realm="r", nonce="n1", qop="auth"')
    sent = client.authorize("REGISTER", "sip:r", realm="r")
    decision = client.on_challenge(
        'Digest realm="r", nonce="n2", qop="auth", stale=TRUE', sent=[sent]
    )
    assert decision is AuthDecision.STALE and decision.retry
    assert parse_authorization(client.authorize("REGISTER", "sip:r", realm="r")).nonce == "n2"


def test_same_nonce_again_is_rejected() -> None:
    client = DigestClient("alice", "wrong")
    client.on_challenge('Digest realm="r", nonce="n1"')
    sent = client.authorize("REGISTER", "sip:r", realm="r")
    decision = client.on_challenge('Digest realm="r", nonce="n1"', sent=[sent])
    assert decision is AuthDecision.REJECTED and not decision.retry


def test_fresh_nonce_refused_with_new_nonce_is_rejected() -> None:
    """Kamailio style: a wrong password gets a 401 with yet another nonce and no stale."""
    client = DigestClient("alice", "wrong")
    client.on_challenge('Digest realm="r", nonce="n1", qop="auth"')
    sent = client.authorize("REGISTER", "sip:r", realm="r")
    decision = client.on_challenge('Digest realm="r", nonce="n2", qop="auth"', sent=[sent])
    assert decision is AuthDecision.REJECTED


def test_expired_nonce_after_several_uses_is_retried_once() -> None:
    client = DigestClient("alice", "pw")
    client.on_challenge('Digest realm="r", nonce="n1"')  # no qop: the client counts uses
    client.authorize("REGISTER", "sip:r", realm="r")
    sent = client.authorize("REGISTER", "sip:r", realm="r")  # second use, pre-authorized
    assert client.on_challenge('Digest realm="r", nonce="n2"', sent=[sent]) is AuthDecision.RETRY
    sent = client.authorize("REGISTER", "sip:r", realm="r")
    assert client.on_challenge('Digest realm="r", nonce="n3"', sent=[sent]) is (
        AuthDecision.REJECTED
    )


def test_auth_decision_function() -> None:
    challenge = Challenge(realm="r", nonce="n2")
    sent = Authorization(username="u", realm="r", nonce="n1", uri="sip:r", response="x")
    assert auth_decision(challenge, None, 0) is AuthDecision.RETRY
    assert auth_decision(challenge, sent, 1) is AuthDecision.REJECTED
    assert auth_decision(challenge, sent, 5) is AuthDecision.RETRY
    stale = Challenge(realm="r", nonce="n1", stale=True)
    assert auth_decision(stale, sent, 1) is AuthDecision.STALE
    same = Challenge(realm="r", nonce="n1")
    assert auth_decision(same, sent, 5) is AuthDecision.REJECTED


def test_client_without_challenge_for_realm() -> None:
    with pytest.raises(DigestError):
        DigestClient("u", "p").authorize("REGISTER", "sip:r", realm="r")
    with pytest.raises(DigestError):
        DigestClient("u", "p").on_challenge('Basic realm="x"')


# --- client against the verifier ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", SUPPORTED_ALGORITHMS)
@pytest.mark.parametrize("qop", [("auth",), ("auth-int",), ()])
def test_round_trip_client_and_verifier(algorithm: str, qop: tuple[str, ...]) -> None:
    nonces = (f"nonce-{i}" for i in itertools.count())
    verifier = DigestVerifier(
        "example.test",
        {"alice": "s3cret"}.get,
        algorithm,
        qop=qop,
        opaque="op",
        nonce_factory=lambda: next(nonces),
    )
    client = DigestClient("alice", "s3cret", preference=SUPPORTED_ALGORITHMS)
    assert client.on_challenge(verifier.challenges()) is AuthDecision.RETRY
    for _ in range(3):
        value = client.authorize("REGISTER", "sip:example.test", realm="example.test", body=b"b")
        result = verifier.verify("REGISTER", value, uri="sip:example.test", body=b"b")
        assert result.ok, result.reason
        assert result.username == "alice"
    value = client.authorize("REGISTER", "sip:example.test", realm="example.test", body=b"b")
    assert not verifier.verify("INVITE", value, body=b"b").ok
    wrong = DigestClient("alice", "guess", preference=SUPPORTED_ALGORITHMS)
    wrong.on_challenge(verifier.challenges())
    bad = wrong.authorize("REGISTER", "sip:example.test", realm="example.test", body=b"b")
    assert verifier.verify("REGISTER", bad, body=b"b").reason == "wrong response"


def test_verifier_offers_several_algorithms_and_client_picks_sha256() -> None:
    verifier = DigestVerifier("r", {"u": "p"}.get, ["SHA-256", "MD5"])
    values = verifier.challenges()
    assert [parse_challenge(v).algorithm for v in values] == ["SHA-256", "MD5"]
    assert len({parse_challenge(v).nonce for v in values}) == 1
    client = DigestClient("u", "p")
    client.on_challenge(values)
    value = client.authorize("REGISTER", "sip:r", realm="r")
    assert parse_authorization(value).algorithm == "SHA-256"
    assert verifier.verify("REGISTER", value).ok


def test_verifier_nonce_policy_replay_and_stale() -> None:
    verifier = DigestVerifier("r", {"u": "p"}.get)
    client = DigestClient("u", "p")
    client.on_challenge(verifier.challenge())
    value = client.authorize("REGISTER", "sip:r", realm="r")
    assert verifier.verify("REGISTER", value).ok
    replay = verifier.verify("REGISTER", value)  # same nc again
    assert not replay.ok and replay.stale
    forged = DigestClient("u", "p")
    forged.on_challenge('Digest realm="r", nonce="never-issued", qop="auth"')
    result = verifier.verify("REGISTER", forged.authorize("REGISTER", "sip:r", realm="r"))
    assert result.stale and not result.ok
    # the stale challenge then gives the client a retry, not a failure
    decision = forged.on_challenge(verifier.challenge(stale=True), sent=[value])
    assert decision is AuthDecision.STALE


def test_verifier_pluggable_nonce_check_and_errors() -> None:
    seen: list[tuple[str, int | None]] = []

    def check(nonce: str, nc: int | None) -> bool:
        seen.append((nonce, nc))
        return nonce == "fixed"

    verifier = DigestVerifier(
        "r", {"u": "p"}.get, "SHA-256", nonce_factory=lambda: "fixed", nonce_check=check
    )
    client = DigestClient("u", "p")
    client.on_challenge(verifier.challenge())
    assert verifier.verify("BYE", client.authorize("BYE", "sip:r", realm="r")).ok
    assert seen == [("fixed", 1)]
    assert verifier.verify("BYE", "garbage").reason
    other = DigestClient("nobody", "p")
    other.on_challenge(verifier.challenge())
    assert verifier.verify("BYE", other.authorize("BYE", "x", realm="r")).reason == "unknown user"
    with pytest.raises(DigestError):
        DigestVerifier("r", {"u": "p"}.get, "SHA-1")


def test_default_preference_prefers_sha() -> None:
    assert DEFAULT_PREFERENCE.index("SHA-256") < DEFAULT_PREFERENCE.index("MD5")


def test_a_response_is_answered_from_the_header_fields_of_its_kind() -> None:
    """RFC 3261 22.2 / 22.3: a 401 carries WWW-Authenticate (answered in Authorization), a
    407 Proxy-Authenticate (answered in Proxy-Authorization); the other kind is ignored."""
    from callmeter.sip.message import SipRequest, SipResponse, make_response, parse_message

    invite = parse_message(
        b"INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n"
        b"From: <sip:alice@example.test>;tag=1\r\nTo: <sip:bob@example.test>\r\n"
        b"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(invite, SipRequest)
    for status, field, answer in (
        (401, "WWW-Authenticate", "Authorization"),
        (407, "Proxy-Authenticate", "Proxy-Authorization"),
    ):
        response: SipResponse = make_response(invite, status, to_tag="t")
        response.headers.add(field, f'Digest realm="{field}", nonce="n"')
        other = "WWW-Authenticate" if status == 407 else "Proxy-Authenticate"
        response.headers.add(other, 'Digest realm="decoy", nonce="d"')
        client = DigestClient("alice", "pw")
        assert client.on_response(response, invite) is AuthDecision.RETRY
        [(name, value)] = client.authorization_headers("INVITE", "sip:bob@example.test")
        assert (name, parse_authorization(value).realm) == (answer, field)
