"""HTTP Digest authentication for SIP, client (UAC) and server (verifier) sides.

Implements the Digest scheme of RFC 2617 section 3 (with the RFC 2069 compatible form when no
qop is offered), RFC 7616 (SHA-256, ``-sess`` variants, quoting of the Authorization value) and
RFC 8760 (the SIP profile: SHA-256 and SHA-512/256, several challenges in one response) as
RFC 3261 section 22 uses them: the digest-uri is the Request-URI and the method is the SIP
method.

The module works on header *values* (plain strings): the caller takes the WWW-Authenticate or
Proxy-Authenticate values out of a 401/407 response and puts the returned Authorization or
Proxy-Authorization values into the next request. It is sans-IO: no sockets, no clock; nonce
and cnonce sources are injectable so tests are deterministic.

Every malformed input raises :class:`DigestError` (a :class:`ValueError`), never another
exception.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callmeter.sip.message import SipRequest, SipResponse

__all__ = [
    "DEFAULT_PREFERENCE",
    "SUPPORTED_ALGORITHMS",
    "AuthDecision",
    "Authorization",
    "Challenge",
    "DigestClient",
    "DigestError",
    "DigestVerifier",
    "Verification",
    "auth_decision",
    "compute_response",
    "format_authorization",
    "format_challenge",
    "parse_authorization",
    "parse_challenge",
    "parse_challenges",
    "select_challenge",
]


class DigestError(ValueError):
    """A challenge or credentials value that cannot be used (malformed or unsupported)."""


# --- algorithms (RFC 7616 section 3.2, RFC 8760 section 2.2) ------------------------------

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
try:  # SHA-512/256 needs an OpenSSL that provides it; RFC 8760 section 2.2 names it.
    hashlib.new("sha512_256", b"")
except ValueError:  # pragma: no cover - depends on the OpenSSL build
    pass
else:
    _HASHES["SHA-512-256"] = lambda data: hashlib.new("sha512_256", data).hexdigest()

#: Canonical names of every algorithm this module computes.
SUPPORTED_ALGORITHMS: tuple[str, ...] = tuple(
    name for base in _HASHES for name in (base, base + "-sess")
)

#: The client's default order of preference: strongest hash first, plain before -sess.
DEFAULT_PREFERENCE: tuple[str, ...] = tuple(
    name
    for base in ("SHA-512-256", "SHA-256", "MD5")
    if base in _HASHES
    for name in (base, base + "-sess")
)

_CANONICAL = {name.upper(): name for name in SUPPORTED_ALGORITHMS}


def _canonical_algorithm(value: str) -> str:
    """The canonical spelling of a known algorithm name, or ``value`` unchanged."""
    return _CANONICAL.get(value.upper(), value)


def _hash_of(algorithm: str) -> Callable[[bytes], str]:
    base = algorithm[:-5] if algorithm.endswith("-sess") else algorithm
    try:
        return _HASHES[base]
    except KeyError:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}") from None


# --- lexical layer: auth-param lists (RFC 7235 section 2.1, RFC 3261 section 25.1) ----------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_WS_RE = re.compile(r"[ \t]*")
_PARAM_START_RE = re.compile(rf"({_TOKEN})[ \t]*=[ \t]*")
_TOKEN68_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_QUOTED_BODY_RE = re.compile(r'((?:[^"\\\r\n]|\\[^\r\n])*)"')
_UNESCAPE_RE = re.compile(r"\\(.)")
_MAX_VALUE = 8192

Params = tuple[tuple[str, str], ...]


def _unfold(value: str) -> str:
    """Replace header folding by one space (RFC 3261 section 7.3.1) and refuse stray CR/LF."""
    if len(value) > _MAX_VALUE:
        raise DigestError(f"header value longer than {_MAX_VALUE} characters")
    value = _FOLD_RE.sub(" ", value)
    if "\r" in value or "\n" in value or "\x00" in value:
        raise DigestError("CR, LF or NUL in header value")
    return value.strip(" \t")


def _parse_auth_list(value: str) -> list[tuple[str, Params]]:
    """Split a challenge/credentials list into ``(scheme, params)`` items.

    ``1#challenge`` of RFC 7235 section 4.1: a scheme token followed by either a token68 or a
    comma separated list of ``name=token`` / ``name="quoted string"`` parameters; a new
    challenge starts at a list element that is not ``name=``. Parameter names are lower-cased,
    quoted values unescaped; a token68 is stored under the empty name.
    """
    text = _unfold(value)
    pos, end = 0, len(text)
    items: list[tuple[str, list[tuple[str, str]]]] = []

    def skip_ws(p: int) -> int:
        match = _WS_RE.match(text, p)
        assert match is not None
        return match.end()

    def skip_separators(p: int) -> int:
        while True:
            p = skip_ws(p)
            if p < end and text[p] == ",":
                p += 1
                continue
            return p

    pos = skip_separators(pos)
    accepting_params = False
    while pos < end:
        param = _PARAM_START_RE.match(text, pos) if accepting_params else None
        if param is not None:
            name = param.group(1).lower()
            pos = param.end()
            if pos < end and text[pos] == '"':
                body = _QUOTED_BODY_RE.match(text, pos + 1)
                if body is None:
                    raise DigestError(f"unterminated quoted string for {name!r}")
                param_value = _UNESCAPE_RE.sub(r"\1", body.group(1))
                pos = body.end()
            else:
                token = _TOKEN_RE.match(text, pos)
                if token is None:
                    raise DigestError(f"parameter {name!r} has no value at offset {pos}")
                param_value = token.group(0)
                pos = token.end()
            items[-1][1].append((name, param_value))
        else:
            scheme = _TOKEN_RE.match(text, pos)
            if scheme is None:
                raise DigestError(f"expected an authentication scheme at offset {pos}")
            pos = scheme.end()
            items.append((scheme.group(0), []))
            accepting_params = True
            if pos < end and text[pos] not in " \t,":
                raise DigestError(f"unexpected {text[pos]!r} after scheme at offset {pos}")
            pos = skip_ws(pos)
            if pos < end and text[pos] != ",":
                token68 = _TOKEN68_RE.match(text, pos)
                if token68 is None:
                    if _PARAM_START_RE.match(text, pos) is None:
                        raise DigestError(f"expected token68 or auth-param at offset {pos}")
                    continue  # the first auth-param follows
                items[-1][1].append(("", token68.group(0)))
                pos = token68.end()
                accepting_params = False  # a token68 is the whole of its challenge
        pos = skip_ws(pos)
        if pos < end and text[pos] != ",":
            raise DigestError(f"expected ',' at offset {pos}, found {text[pos]!r}")
        pos = skip_separators(pos)
    return [(scheme, tuple(params)) for scheme, params in items]


def _quote(value: str) -> str:
    """A quoted-string for ``value`` (RFC 3261 section 25.1 quoted-pair for ``"`` and ``\\``)."""
    if any(ch in value for ch in "\r\n\x00"):
        raise DigestError("CR, LF or NUL cannot be carried in a quoted string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_unique(params: Params) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in params:
        if name in result:
            raise DigestError(f"parameter {name!r} appears twice")
        result[name] = value
    return result


# --- challenges (RFC 7616 section 3.3) --------------------------------------------------------

_CHALLENGE_KNOWN = ("realm", "domain", "nonce", "opaque", "stale", "algorithm", "qop")


@dataclass(frozen=True)
class Challenge:
    """One ``Digest`` challenge (WWW-Authenticate or Proxy-Authenticate value).

    ``algorithm`` is canonical for known algorithms (``"SHA-256"``) and verbatim otherwise;
    ``qop`` is the offered list in order (empty: RFC 2069 compatible mode); ``params`` keeps
    the parameters this module does not interpret (names lower-cased).
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None
    params: Params = ()

    @property
    def supported(self) -> bool:
        """Whether this module can answer the challenge (algorithm and qop)."""
        if self.algorithm not in SUPPORTED_ALGORITHMS:
            return False
        return not self.qop or any(q in ("auth", "auth-int") for q in self.qop)


def _challenge_from_params(params: Params) -> Challenge:
    values = _check_unique(params)
    if "" in values:
        raise DigestError("Digest challenge must be a parameter list, not a token68")
    if "realm" not in values:
        raise DigestError("Digest challenge without realm")
    if "nonce" not in values:
        raise DigestError("Digest challenge without nonce")
    qop: tuple[str, ...] = ()
    if "qop" in values:
        qop = tuple(q for q in re.split(r"[ \t]*,[ \t]*", values["qop"].strip(" \t")) if q)
        if not qop or not all(_TOKEN_RE.fullmatch(q) for q in qop):
            raise DigestError(f"malformed qop {values['qop']!r}")
        qop = tuple(q.lower() for q in qop)
    stale_value = values.get("stale", "false").lower()
    if stale_value not in ("true", "false"):
        raise DigestError(f"stale must be true or false, not {values['stale']!r}")
    return Challenge(
        realm=values["realm"],
        nonce=values["nonce"],
        algorithm=_canonical_algorithm(values.get("algorithm", "MD5")),
        qop=qop,
        opaque=values.get("opaque"),
        stale=stale_value == "true",
        domain=values.get("domain"),
        params=tuple((n, v) for n, v in params if n not in _CHALLENGE_KNOWN),
    )


def parse_challenges(values: str | Iterable[str]) -> list[Challenge]:
    """Every Digest challenge in one or several header values, in order.

    A 401 may carry several WWW-Authenticate header fields (RFC 8760 section 2.4) and one field
    may list several challenges (RFC 7235 section 4.1); challenges of other schemes are skipped.
    """
    if isinstance(values, str):
        values = [values]
    result: list[Challenge] = []
    for value in values:
        if not isinstance(value, str):
            raise DigestError(f"header value must be str, not {type(value).__name__}")
        for scheme, params in _parse_auth_list(value):
            if scheme.lower() == "digest":
                result.append(_challenge_from_params(params))
    return result


def parse_challenge(value: str) -> Challenge:
    """The single Digest challenge in ``value``; :class:`DigestError` if there is not one."""
    challenges = parse_challenges(value)
    if len(challenges) != 1:
        raise DigestError(f"expected one Digest challenge, found {len(challenges)}")
    return challenges[0]


def format_challenge(challenge: Challenge) -> str:
    """The header value for ``challenge`` (quoting as in RFC 7616 section 3.9.1)."""
    parts = [f"realm={_quote(challenge.realm)}"]
    if challenge.domain is not None:
        parts.append(f"domain={_quote(challenge.domain)}")
    if challenge.qop:
        parts.append(f"qop={_quote(','.join(challenge.qop))}")
    parts.append(f"nonce={_quote(challenge.nonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if not _TOKEN_RE.fullmatch(challenge.algorithm):
        raise DigestError(f"algorithm {challenge.algorithm!r} is not a token")
    parts.append(f"algorithm={challenge.algorithm}")
    if challenge.stale:
        parts.append("stale=TRUE")
    for name, value in challenge.params:
        if not _TOKEN_RE.fullmatch(name) or name.lower() in _CHALLENGE_KNOWN:
            raise DigestError(f"bad extra parameter name {name!r}")
        parts.append(f"{name}={_quote(value)}")
    return "Digest " + ", ".join(parts)


def select_challenge(
    challenges: Iterable[Challenge], preference: Sequence[str] = DEFAULT_PREFERENCE
) -> Challenge:
    """The challenge to answer: the most preferred supported algorithm, topmost on a tie.

    RFC 8760 section 2.4 and RFC 7616 section 3.7: a server lists its algorithms in its order
    of preference (strongest first); the client answers one it supports. ``preference`` is our
    own order (strongest first by default).
    """
    best: Challenge | None = None
    best_rank = len(preference)
    for challenge in challenges:
        if not challenge.supported or challenge.algorithm not in preference:
            continue
        rank = preference.index(challenge.algorithm)
        if rank < best_rank:
            best, best_rank = challenge, rank
    if best is None:
        raise DigestError("no Digest challenge with a supported algorithm and qop")
    return best


# --- credentials (RFC 7616 section 3.4) -------------------------------------------------------

_AUTH_KNOWN = (
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "opaque",
    "qop",
    "nc",
)
_NC_RE = re.compile(r"[0-9a-fA-F]{8}")


@dataclass(frozen=True)
class Authorization:
    """The parsed value of an Authorization or Proxy-Authorization header (Digest scheme)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: int | None = None
    cnonce: str | None = None
    opaque: str | None = None
    #: whether the algorithm parameter was present (it is echoed only when it was challenged)
    algorithm_sent: bool = True
    params: Params = ()


def parse_authorization(value: str) -> Authorization:
    """Parse a Digest Authorization / Proxy-Authorization value (RFC 7616 section 3.4)."""
    items = _parse_auth_list(value)
    if len(items) != 1 or items[0][0].lower() != "digest":
        raise DigestError("expected one Digest credentials value")
    values = _check_unique(items[0][1])
    if "" in values:
        raise DigestError("Digest credentials must be a parameter list")
    for required in ("username", "realm", "nonce", "uri", "response"):
        if required not in values:
            raise DigestError(f"Digest credentials without {required}")
    qop = values.get("qop")
    nc: int | None = None
    if qop is not None:
        qop = qop.lower()
        if "cnonce" not in values or "nc" not in values:
            raise DigestError("qop given without cnonce and nc")
        if not _NC_RE.fullmatch(values["nc"]):
            raise DigestError(f"nc must be 8 hex digits, not {values['nc']!r}")
        nc = int(values["nc"], 16)
    elif "nc" in values:
        raise DigestError("nc given without qop")
    return Authorization(
        username=values["username"],
        realm=values["realm"],
        nonce=values["nonce"],
        uri=values["uri"],
        response=values["response"],
        algorithm=_canonical_algorithm(values.get("algorithm", "MD5")),
        qop=qop,
        nc=nc,
        cnonce=values.get("cnonce"),
        opaque=values.get("opaque"),
        algorithm_sent="algorithm" in values,
        params=tuple((n, v) for n, v in items[0][1] if n not in _AUTH_KNOWN),
    )


def format_authorization(auth: Authorization) -> str:
    """The header value for ``auth``.

    Quoted: username, realm, nonce, uri, response, cnonce, opaque; unquoted: algorithm, qop and
    nc, exactly as in the examples of RFC 7616 section 3.9.1 and RFC 2617 section 3.5.
    """
    parts = [
        f"username={_quote(auth.username)}",
        f"realm={_quote(auth.realm)}",
        f"nonce={_quote(auth.nonce)}",
        f"uri={_quote(auth.uri)}",
        f"response={_quote(auth.response)}",
    ]
    if auth.algorithm_sent:
        parts.append(f"algorithm={auth.algorithm}")
    if auth.cnonce is not None:
        parts.append(f"cnonce={_quote(auth.cnonce)}")
    if auth.opaque is not None:
        parts.append(f"opaque={_quote(auth.opaque)}")
    if auth.qop is not None:
        if auth.nc is None:
            raise DigestError("qop needs a nonce count")
        parts.append(f"qop={auth.qop}")
        parts.append(f"nc={auth.nc:08x}")
    for name, value in auth.params:
        parts.append(f"{name}={_quote(value)}")
    return "Digest " + ", ".join(parts)


# --- the computation (RFC 2617 section 3.2.2, RFC 7616 section 3.4.1-3.4.3) --------------------


def compute_response(
    *,
    algorithm: str,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value: KD(H(A1), nonce ":" [nc ":" cnonce ":" qop ":"] H(A2)).

    A1 = username:realm:password, for ``-sess`` H(A1):nonce:cnonce (RFC 7616 section 3.4.2);
    A2 = method:uri, for qop=auth-int method:uri:H(body) (section 3.4.3). Without qop the
    RFC 2069 form H(H(A1):nonce:H(A2)) is used. Strings are UTF-8 encoded.
    """
    h = _hash_of(algorithm)

    def hs(text: str) -> str:
        return h(text.encode("utf-8"))

    ha1 = hs(f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        if cnonce is None:
            raise DigestError(f"{algorithm} needs a cnonce")
        ha1 = hs(f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = hs(f"{method}:{uri}:{h(body)}")
    elif qop in (None, "auth"):
        ha2 = hs(f"{method}:{uri}")
    else:
        raise DigestError(f"unsupported qop {qop!r}")
    if qop is None:
        return hs(f"{ha1}:{nonce}:{ha2}")
    if nc is None or cnonce is None:
        raise DigestError("qop needs nc and cnonce")
    return hs(f"{ha1}:{nonce}:{nc:08x}:{cnonce}:{qop}:{ha2}")


# --- client side (RFC 3261 section 22.2 and 22.3) ---------------------------------------------


class AuthDecision(enum.Enum):
    """What a user agent does with a 401/407 (see :func:`auth_decision`)."""

    #: first challenge for the realm (or an expired nonce that had worked): retry with credentials
    RETRY = "retry"
    #: stale=true: the password was right, retry with the new nonce (not a failure)
    STALE = "stale"
    #: the credentials were refused: report "401 after auth" as a failure, do not retry
    REJECTED = "rejected"

    @property
    def retry(self) -> bool:
        """Whether the request is to be sent again with credentials."""
        return self is not AuthDecision.REJECTED


def auth_decision(challenge: Challenge, sent: Authorization | None, uses: int) -> AuthDecision:
    """Decide whether a challenge answering an authenticated request means bad credentials.

    ``sent`` is the credentials for this realm that the rejected request carried (None if it
    carried none), ``uses`` how many requests had used that nonce including this one (the nc
    value when qop was in use). The rules:

    - no credentials sent: RETRY (the normal first challenge, RFC 3261 section 22.2);
    - ``stale=true``: STALE, the digest was right but the nonce had expired (RFC 7616 section
      3.3), retry with the new nonce;
    - the same nonce challenged again: REJECTED;
    - a new nonce without stale after the *first* use of the previous one: REJECTED (a fresh
      nonce cannot have expired; servers such as Kamailio send a new nonce with every 401);
    - a new nonce after a nonce that had been used several times: RETRY once (the server
      expired it without saying stale); the retry uses the new nonce for the first time, so a
      second refusal is REJECTED and the loop is bounded.
    """
    if sent is None:
        return AuthDecision.RETRY
    if challenge.stale:
        return AuthDecision.STALE
    if challenge.nonce == sent.nonce or uses <= 1:
        return AuthDecision.REJECTED
    return AuthDecision.RETRY


@dataclass
class _RealmState:
    challenge: Challenge
    proxy: bool
    nc: int = 0


def _default_cnonce() -> str:
    return secrets.token_hex(8)


class DigestClient:
    """Credentials of one user, answering challenges and pre-authorizing later requests.

    The client remembers the last challenge per realm (and whether it came in a 401 or a 407)
    with its nonce count, so that a retried request and later ones (re-REGISTER, BYE) carry
    credentials without another round trip (RFC 3261 section 22.3; RFC 7616 section 3.4:
    nc counts the requests sent with a nonce, as 8 hex digits).
    """

    def __init__(
        self,
        username: str,
        password: str,
        *,
        preference: Sequence[str] = DEFAULT_PREFERENCE,
        cnonce_factory: Callable[[], str] = _default_cnonce,
    ) -> None:
        self.username = username
        self._password = password
        self._preference = tuple(preference)
        self._cnonce_factory = cnonce_factory
        self._realms: OrderedDict[str, _RealmState] = OrderedDict()

    def __repr__(self) -> str:  # never show the password
        return f"<DigestClient username={self.username!r} realms={list(self._realms)}>"

    @property
    def realms(self) -> tuple[str, ...]:
        """The realms for which a challenge is remembered."""
        return tuple(self._realms)

    def forget(self, realm: str | None = None) -> None:
        """Drop the remembered challenge of ``realm`` (all realms when None)."""
        if realm is None:
            self._realms.clear()
        else:
            self._realms.pop(realm, None)

    def on_response(self, response: SipResponse, request: SipRequest) -> AuthDecision:
        """:meth:`on_challenge` for a 401 or 407 ``response`` to ``request``: the challenge
        and credential header fields of its kind (RFC 3261 22.2 and 22.3)."""
        proxy = response.status == 407
        return self.on_challenge(
            response.headers.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate"),
            proxy=proxy,
            sent=request.headers.get_all("Proxy-Authorization" if proxy else "Authorization"),
        )

    def on_challenge(
        self, header_values: str | Iterable[str], *, proxy: bool = False, sent: Iterable[str] = ()
    ) -> AuthDecision:
        """Take in the challenges of a 401 (``proxy=False``) or 407 (``proxy=True``) response.

        ``header_values`` are its WWW-Authenticate / Proxy-Authenticate values; ``sent`` the
        Authorization / Proxy-Authorization values of the request it answers. One challenge is
        kept per realm (the most preferred, :func:`select_challenge`); the result is the worst
        :class:`AuthDecision` over the realms challenged. Raises :class:`DigestError` when no
        challenge can be answered.
        """
        by_realm: dict[str, list[Challenge]] = {}
        for challenge in parse_challenges(header_values):
            by_realm.setdefault(challenge.realm, []).append(challenge)
        if not by_realm:
            raise DigestError("response carries no Digest challenge")
        sent_by_realm: dict[str, Authorization] = {}
        for value in sent:
            try:
                auth = parse_authorization(value)
            except DigestError:
                continue
            sent_by_realm[auth.realm] = auth
        decisions: list[AuthDecision] = []
        chosen: dict[str, Challenge] = {}
        for realm, challenges in by_realm.items():
            challenge = select_challenge(challenges, self._preference)
            previous = sent_by_realm.get(realm)
            decisions.append(auth_decision(challenge, previous, self._uses(realm, previous)))
            chosen[realm] = challenge
        for realm, challenge in chosen.items():
            self._realms[realm] = _RealmState(challenge, proxy)
        for worst in (AuthDecision.REJECTED, AuthDecision.RETRY, AuthDecision.STALE):
            if worst in decisions:
                return worst
        raise AssertionError("unreachable")  # pragma: no cover

    def _uses(self, realm: str, sent: Authorization | None) -> int:
        if sent is None:
            return 0
        if sent.nc is not None:
            return sent.nc
        state = self._realms.get(realm)
        if state is not None and state.challenge.nonce == sent.nonce:
            return state.nc
        return 2  # an older nonce, replaced since: it had been used before

    def authorize(self, method: str, uri: str, *, realm: str, body: bytes = b"") -> str:
        """The credentials value for one request to ``uri`` in ``realm``; advances nc."""
        try:
            state = self._realms[realm]
        except KeyError:
            raise DigestError(f"no challenge remembered for realm {realm!r}") from None
        challenge = state.challenge
        state.nc += 1
        qop: str | None = None
        if challenge.qop:
            if "auth" in challenge.qop:
                qop = "auth"
            elif "auth-int" in challenge.qop:
                qop = "auth-int"
            else:
                raise DigestError(f"no supported qop in {challenge.qop!r}")
        needs_cnonce = qop is not None or challenge.algorithm.endswith("-sess")
        cnonce = self._cnonce_factory() if needs_cnonce else None
        nc = state.nc if qop is not None else None
        response = compute_response(
            algorithm=challenge.algorithm,
            username=self.username,
            password=self._password,
            realm=challenge.realm,
            nonce=challenge.nonce,
            method=method,
            uri=uri,
            qop=qop,
            nc=nc,
            cnonce=cnonce,
            body=body,
        )
        return format_authorization(
            Authorization(
                username=self.username,
                realm=challenge.realm,
                nonce=challenge.nonce,
                uri=uri,
                response=response,
                algorithm=challenge.algorithm,
                qop=qop,
                nc=nc,
                cnonce=cnonce,
                opaque=challenge.opaque,
            )
        )

    def authorization_headers(
        self, method: str, uri: str, body: bytes = b""
    ) -> list[tuple[str, str]]:
        """``(header name, value)`` for every remembered realm: pre-authorization of a request.

        Realms learnt from a 407 give ``Proxy-Authorization``, those from a 401
        ``Authorization`` (RFC 3261 sections 22.2 and 22.3). Empty before any challenge.
        """
        headers: list[tuple[str, str]] = []
        for realm, state in self._realms.items():
            name = "Proxy-Authorization" if state.proxy else "Authorization"
            headers.append((name, self.authorize(method, uri, realm=realm, body=body)))
        return headers


# --- server side ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """The outcome of :meth:`DigestVerifier.verify`.

    ``ok``: the credentials are right. ``stale``: the digest is right but the nonce is not
    acceptable, answer with a new challenge with stale=true. Otherwise the credentials are
    wrong or malformed, ``reason`` says how.
    """

    ok: bool
    stale: bool = False
    username: str | None = None
    reason: str = ""


NonceCheck = Callable[[str, "int | None"], bool]


@dataclass
class _NonceBook:
    """Default nonce policy: nonces we issued, each nc strictly increasing (replay guard)."""

    limit: int = 1024
    seen: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def issue(self, nonce: str) -> None:
        self.seen[nonce] = 0
        while len(self.seen) > self.limit:
            self.seen.popitem(last=False)

    def check(self, nonce: str, nc: int | None) -> bool:
        last = self.seen.get(nonce)
        if last is None:
            return False
        if nc is None:
            return True
        if nc <= last:
            return False
        self.seen[nonce] = nc
        return True


class DigestVerifier:
    """A small server side: issues challenges and checks credentials (tests, test registrar).

    ``password_lookup(username)`` returns the password or None for an unknown user.
    ``algorithm`` is one name or several (one challenge each, in that order, RFC 8760 section
    2.4). ``nonce_check(nonce, nc)`` replaces the default policy (nonces issued by this object,
    nc strictly increasing per nonce) when given.
    """

    def __init__(
        self,
        realm: str,
        password_lookup: Callable[[str], str | None],
        algorithm: str | Sequence[str] = "MD5",
        *,
        qop: Sequence[str] = ("auth",),
        opaque: str | None = None,
        nonce_factory: Callable[[], str] | None = None,
        nonce_check: NonceCheck | None = None,
    ) -> None:
        algorithms = (algorithm,) if isinstance(algorithm, str) else tuple(algorithm)
        for name in algorithms:
            if _canonical_algorithm(name) not in SUPPORTED_ALGORITHMS:
                raise DigestError(f"unsupported digest algorithm {name!r}")
        self.realm = realm
        self.algorithms = tuple(_canonical_algorithm(name) for name in algorithms)
        self.qop = tuple(qop)
        self.opaque = opaque
        self._lookup = password_lookup
        self._nonce_factory = nonce_factory or (lambda: secrets.token_urlsafe(24))
        self._book = _NonceBook()
        self._nonce_check: NonceCheck = nonce_check or self._book.check

    def challenges(self, *, stale: bool = False) -> list[str]:
        """WWW-Authenticate (or Proxy-Authenticate) values: one per algorithm, one new nonce."""
        nonce = self._nonce_factory()
        self._book.issue(nonce)
        return [
            format_challenge(
                Challenge(
                    realm=self.realm,
                    nonce=nonce,
                    algorithm=algorithm,
                    qop=self.qop,
                    opaque=self.opaque,
                    stale=stale,
                )
            )
            for algorithm in self.algorithms
        ]

    def challenge(self, *, stale: bool = False) -> str:
        """The first of :meth:`challenges`: a single challenge value."""
        return self.challenges(stale=stale)[0]

    def verify(
        self, method: str, value: str, *, uri: str | None = None, body: bytes = b""
    ) -> Verification:
        """Check one Authorization value for a request ``method`` (``uri``: its Request-URI)."""
        try:
            auth = parse_authorization(value)
        except DigestError as exc:
            return Verification(ok=False, reason=str(exc))
        if auth.realm != self.realm:
            return Verification(ok=False, username=auth.username, reason="wrong realm")
        if auth.algorithm not in self.algorithms:
            return Verification(ok=False, username=auth.username, reason="algorithm not offered")
        if self.qop and auth.qop not in self.qop:
            return Verification(ok=False, username=auth.username, reason="qop not offered")
        if not self.qop and auth.qop is not None:
            return Verification(ok=False, username=auth.username, reason="qop not offered")
        if uri is not None and auth.uri != uri:
            return Verification(ok=False, username=auth.username, reason="uri mismatch")
        if self.opaque is not None and auth.opaque != self.opaque:
            return Verification(ok=False, username=auth.username, reason="opaque mismatch")
        password = self._lookup(auth.username)
        if password is None:
            return Verification(ok=False, username=auth.username, reason="unknown user")
        try:
            expected = compute_response(
                algorithm=auth.algorithm,
                username=auth.username,
                password=password,
                realm=auth.realm,
                nonce=auth.nonce,
                method=method,
                uri=auth.uri,
                qop=auth.qop,
                nc=auth.nc,
                cnonce=auth.cnonce,
                body=body,
            )
        except DigestError as exc:
            return Verification(ok=False, username=auth.username, reason=str(exc))
        if not hmac.compare_digest(expected.encode(), auth.response.lower().encode()):
            return Verification(ok=False, username=auth.username, reason="wrong response")
        if not self._nonce_check(auth.nonce, auth.nc):
            return Verification(ok=False, stale=True, username=auth.username, reason="stale")
        return Verification(ok=True, username=auth.username)
