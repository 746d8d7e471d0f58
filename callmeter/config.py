"""The worker's configuration: environment variables (and twistd options) -> one frozen Config.

Every variable of SPEC.md's configuration table is parsed here, once, at start-up.  A bad value
raises :class:`ConfigError`, whose ``str()`` is the single line the user sees: the variable, the
value it had and what is allowed.  The worker token is a :class:`Secret`: it never appears in a
repr, an error message or a log line, and it can come from a file (systemd's ``LoadCredential=``
puts it in ``$CREDENTIALS_DIRECTORY/worker_token``) instead of the environment.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "VARIABLES",
    "Config",
    "ConfigError",
    "Secret",
    "default_sip_ip",
    "is_local_address",
    "load_config",
]

DEFAULT_GATEWAY_URL = "wss://wg.callmeter.io:443"
CREDENTIAL_NAME = "worker_token"
LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
LOG_FORMATS = ("text", "json")
ENDPOINTS_PER_CORE = 500
"""Default MAX_ENDPOINTS per CPU core, until the engine's benchmark measures this host."""

VARIABLES: dict[str, tuple[str, str]] = {
    "WORKER_TOKEN": (
        "(required for the daemon)",
        "secret that authenticates the worker; "
        "or WORKER_TOKEN_FILE, or $CREDENTIALS_DIRECTORY/worker_token",
    ),
    "GATEWAY_URL": (
        DEFAULT_GATEWAY_URL,
        "control plane endpoint; ws:// only with ALLOW_INSECURE_GATEWAY=1",
    ),
    "ALLOW_INSECURE_GATEWAY": ("0", "1 allows a ws:// (unencrypted) GATEWAY_URL, for tests"),
    "SIP_IP": ("first non-loopback address", "local bind address for SIP and RTP"),
    "SDP_IP": ("SIP_IP", "address written into SDP c= lines (NAT public address)"),
    "EXTERNAL_IP": ("SIP_IP", "address written into Via / Contact (NAT public address)"),
    "SIP_PORT": ("5060", "local SIP port (TLS listens on SIP_PORT + 1, 5061); 0 = any"),
    "SIP_TLS_CERT": (
        "self-signed, made at start",
        "PEM file with the certificate (and chain) and key of the SIP TLS listener",
    ),
    "RTP_PORT_MIN": ("10000", "lowest RTP port (even ports RTP, odd RTCP)"),
    "RTP_PORT_MAX": ("65535", "highest RTP/RTCP port"),
    "HEALTH_BIND": ("127.0.0.1", "address of the health endpoint"),
    "HEALTH_PORT": ("3030", "port of the health endpoint; 0 = any"),
    "HTTPS_PROXY": ("unset", "http://[user:pass@]host:port CONNECT proxy for the control plane"),
    "NO_PROXY": ("unset", "comma-separated hosts, .domain suffixes and CIDRs that bypass it"),
    "TLS_CA_FILE": ("system store", "extra CA bundle (private gateway, TLS-inspecting proxy)"),
    "MAX_ENDPOINTS": (f"{ENDPOINTS_PER_CORE} x CPU cores", "assignments above it are rejected"),
    "LOG_LEVEL": ("info", "one of " + ", ".join(LOG_LEVELS)),
    "LOG_FORMAT": ("text", "text, or json lines (journald friendly)"),
    "MEDIA_CACHE_DIR": ("/var/cache/callmeter", "downloaded and pre-encoded media"),
}
"""Every variable: (default as documented, meaning).  README.md's table is this table."""


class ConfigError(ValueError):
    """One invalid configuration value; ``str()`` is the one line shown to the user."""

    def __init__(self, variable: str, shown_value: str, allowed: str) -> None:
        self.variable = variable
        self.allowed = allowed
        super().__init__(f"{variable}={shown_value} is invalid: {allowed}")


class Secret:
    """A string that never shows itself: repr and str are masked, ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")


@dataclass(frozen=True)
class Config:
    """The parsed configuration.  Build it with :func:`load_config`."""

    worker_token: Secret | None
    token_source: str | None
    gateway_url: str
    allow_insecure_gateway: bool
    sip_ip: str
    sdp_ip: str
    external_ip: str
    sip_port: int
    rtp_port_min: int
    rtp_port_max: int
    health_bind: str
    health_port: int
    https_proxy: str | None = field(repr=False)
    no_proxy: tuple[str, ...]
    tls_ca_file: str | None
    max_endpoints: int
    sip_tls_cert: str | None
    log_level: str
    log_format: str
    media_cache_dir: str

    @property
    def sip_tls_port(self) -> int:
        """The TLS listening port: SIP_PORT + 1 (5061 by default), or any when SIP_PORT is 0."""
        return self.sip_port + 1 if self.sip_port else 0

    def describe(self) -> dict[str, str]:
        """Every setting as displayable text, secrets masked (for `callmeter config`, doctor)."""
        token = "(unset)" if self.worker_token is None else f"(set, from {self.token_source})"
        return {
            "WORKER_TOKEN": token,
            "GATEWAY_URL": self.gateway_url,
            "ALLOW_INSECURE_GATEWAY": "1" if self.allow_insecure_gateway else "0",
            "SIP_IP": self.sip_ip,
            "SDP_IP": self.sdp_ip,
            "EXTERNAL_IP": self.external_ip,
            "SIP_PORT": str(self.sip_port),
            "RTP_PORT_MIN": str(self.rtp_port_min),
            "RTP_PORT_MAX": str(self.rtp_port_max),
            "HEALTH_BIND": self.health_bind,
            "HEALTH_PORT": str(self.health_port),
            "HTTPS_PROXY": _mask_url_password(self.https_proxy) if self.https_proxy else "(unset)",
            "NO_PROXY": ",".join(self.no_proxy) or "(unset)",
            "TLS_CA_FILE": self.tls_ca_file or "(system store)",
            "SIP_TLS_CERT": self.sip_tls_cert or "(self-signed, made at start)",
            "MAX_ENDPOINTS": str(self.max_endpoints),
            "LOG_LEVEL": self.log_level,
            "LOG_FORMAT": self.log_format,
            "MEDIA_CACHE_DIR": self.media_cache_dir,
        }


def load_config(
    environ: Mapping[str, str],
    overrides: Mapping[str, str | None] | None = None,
    *,
    require_token: bool = True,
    local_address: Callable[[str], bool] | None = None,
    cpu_count: int | None = None,
    credential_file: str | None = None,
) -> Config:
    """Parse the environment, with ``overrides`` (twistd options, by variable name) winning.

    Raises :class:`ConfigError` for the first bad value.  ``local_address`` decides whether an
    address belongs to this host (default: try to bind it); tests pass their own.
    ``credential_file`` is read where systemd's ``$CREDENTIALS_DIRECTORY/worker_token`` would be,
    when the environment has none: `callmeter config` passes the file a drop-in's
    ``LoadCredential=worker_token:PATH`` names.
    """
    env = {key: value for key, value in environ.items()}
    for key, value in (overrides or {}).items():
        if value is not None:
            env[key] = value
    is_local = local_address or is_local_address

    token, token_source = _token(env, credential_file)
    if require_token and token is None:
        raise ConfigError(
            "WORKER_TOKEN",
            "(unset)",
            "required: set WORKER_TOKEN, WORKER_TOKEN_FILE, or a systemd credential "
            f"named {CREDENTIAL_NAME}",
        )

    insecure = _boolean(env, "ALLOW_INSECURE_GATEWAY", False)
    gateway_url = _gateway_url(env.get("GATEWAY_URL", DEFAULT_GATEWAY_URL), insecure)

    sip_ip = _sip_ip(env, is_local)
    sdp_ip = _ip_literal(env, "SDP_IP", sip_ip, wildcard_ok=False)
    external_ip = _ip_literal(env, "EXTERNAL_IP", sip_ip, wildcard_ok=False)

    sip_port = _integer(env, "SIP_PORT", 5060, 0, 65534, "a port number 0..65534 (TLS uses +1)")
    rtp_min = _integer(env, "RTP_PORT_MIN", 10000, 1024, 65535, "a port number 1024..65535")
    rtp_max = _integer(env, "RTP_PORT_MAX", 65535, 1024, 65535, "a port number 1024..65535")
    _check_rtp_range(rtp_min, rtp_max)

    health_bind = _ip_literal(env, "HEALTH_BIND", "127.0.0.1", wildcard_ok=True)
    health_port = _integer(env, "HEALTH_PORT", 3030, 0, 65535, "a port number 0..65535")

    cores = cpu_count or os.cpu_count() or 1
    max_endpoints = _integer(
        env, "MAX_ENDPOINTS", ENDPOINTS_PER_CORE * cores, 1, 1_000_000, "an integer 1..1000000"
    )

    return Config(
        worker_token=token,
        token_source=token_source,
        gateway_url=gateway_url,
        allow_insecure_gateway=insecure,
        sip_ip=sip_ip,
        sdp_ip=sdp_ip,
        external_ip=external_ip,
        sip_port=sip_port,
        rtp_port_min=rtp_min,
        rtp_port_max=rtp_max,
        health_bind=health_bind,
        health_port=health_port,
        https_proxy=_proxy_url(env),
        no_proxy=_no_proxy(env),
        tls_ca_file=_ca_file(env),
        max_endpoints=max_endpoints,
        sip_tls_cert=_pem_file(env, "SIP_TLS_CERT", "a readable PEM file: certificate and key"),
        log_level=_choice(env, "LOG_LEVEL", "info", LOG_LEVELS, aliases={"warning": "warn"}),
        log_format=_choice(env, "LOG_FORMAT", "text", LOG_FORMATS),
        media_cache_dir=_absolute_path(env, "MEDIA_CACHE_DIR", "/var/cache/callmeter"),
    )


# -- the worker token ------------------------------------------------------------------------


def _token(
    env: Mapping[str, str], credential_file: str | None = None
) -> tuple[Secret | None, str | None]:
    """WORKER_TOKEN, else WORKER_TOKEN_FILE, else $CREDENTIALS_DIRECTORY/worker_token."""
    if "WORKER_TOKEN" in env:
        return _checked_token(env["WORKER_TOKEN"], "WORKER_TOKEN"), "WORKER_TOKEN"
    path: str | None = env.get("WORKER_TOKEN_FILE")
    variable = "WORKER_TOKEN_FILE"
    if path is None and env.get("CREDENTIALS_DIRECTORY"):
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / CREDENTIAL_NAME
        if candidate.exists():
            path, variable = str(candidate), "CREDENTIALS_DIRECTORY"
    if path is None and credential_file:
        path, variable = credential_file, "CREDENTIALS_DIRECTORY"
    if path is None:
        return None, None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or "not UTF-8 text"
        raise ConfigError(variable, repr(path), f"a readable token file ({reason})") from None
    return _checked_token(text.strip(), "WORKER_TOKEN"), path


def _checked_token(value: str, variable: str) -> Secret:
    shown = f"<hidden, {len(value)} characters>"
    if not value.strip():
        raise ConfigError(variable, shown, "must not be empty")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise ConfigError(variable, shown, "printable ASCII without spaces (an HTTP header value)")
    return Secret(value)


# -- addresses -------------------------------------------------------------------------------


def is_local_address(address: str) -> bool:
    """True when ``address`` can be bound on this host (it is one of its addresses)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError as error:
            if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EINVAL):
                return False
            raise
    return True


def host_addresses() -> list[str]:
    """This host's addresses, IPv4 first, loopback and link-local last."""
    import psutil

    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addresses in psutil.net_if_addrs().values():
        for entry in addresses:
            if entry.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    found.append(ipaddress.ip_address(entry.address.split("%")[0]))
                except ValueError:
                    continue

    def rank(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
        return (int(ip.is_loopback or ip.is_link_local), ip.version)

    return [str(ip) for ip in sorted(found, key=rank)]


def default_sip_ip() -> str:
    """The first non-loopback, non-link-local address; 127.0.0.1 on a host with none."""
    for address in host_addresses():
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_link_local):
            return address
    return "127.0.0.1"


def _sip_ip(env: Mapping[str, str], is_local: Callable[[str], bool]) -> str:
    if not env.get("SIP_IP"):
        return default_sip_ip()
    address = _ip_literal(env, "SIP_IP", "", wildcard_ok=False)
    if not is_local(address):
        raise ConfigError("SIP_IP", repr(env["SIP_IP"]), "must be an address of this host")
    return address


def _ip_literal(env: Mapping[str, str], variable: str, default: str, *, wildcard_ok: bool) -> str:
    raw = env.get(variable) or default
    try:
        ip = ipaddress.ip_address(raw.strip("[]"))
    except ValueError:
        raise ConfigError(variable, repr(raw), "an IPv4 or IPv6 address") from None
    if ip.is_unspecified and not wildcard_ok:
        raise ConfigError(variable, repr(raw), "a specific address (not 0.0.0.0 or ::)")
    return str(ip)


# -- numbers, choices, flags -----------------------------------------------------------------


def _integer(
    env: Mapping[str, str], variable: str, default: int, low: int, high: int, allowed: str
) -> int:
    raw = env.get(variable)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise ConfigError(variable, repr(raw), allowed) from None
    if not low <= value <= high:
        raise ConfigError(variable, repr(raw), allowed)
    return value


def _check_rtp_range(low: int, high: int) -> None:
    """RFC 3550 section 11: RTP on an even port, RTCP on the next (odd) one."""
    shown = f"{low}..{high}"
    if low > high:
        raise ConfigError("RTP_PORT_MIN", shown, "RTP_PORT_MIN must not exceed RTP_PORT_MAX")
    first_even = low + (low % 2)
    if high - low + 1 < 2 or first_even + 1 > high:
        raise ConfigError(
            "RTP_PORT_MIN", shown, "the range must hold at least one even/odd RTP/RTCP pair"
        )


def _choice(
    env: Mapping[str, str],
    variable: str,
    default: str,
    choices: tuple[str, ...],
    aliases: Mapping[str, str] | None = None,
) -> str:
    raw = env.get(variable) or default
    value = raw.strip().lower()
    value = (aliases or {}).get(value, value)
    if value not in choices:
        raise ConfigError(variable, repr(raw), "one of " + ", ".join(choices))
    return value


def _boolean(env: Mapping[str, str], variable: str, default: bool) -> bool:
    raw = env.get(variable)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(variable, repr(raw), "1 or 0 (true/false, yes/no)")


def _absolute_path(env: Mapping[str, str], variable: str, default: str) -> str:
    raw = env.get(variable) or default
    if not os.path.isabs(raw):
        raise ConfigError(variable, repr(raw), "an absolute path")
    return os.path.normpath(raw)


def _pem_file(env: Mapping[str, str], name: str, allowed: str) -> str | None:
    raw = env.get(name)
    if not raw:
        return None
    if not os.path.isfile(raw) or not os.access(raw, os.R_OK):
        raise ConfigError(name, repr(raw), allowed)
    with open(raw, "rb") as handle:
        text = handle.read()
    if b"-----BEGIN CERTIFICATE-----" not in text or b"PRIVATE KEY-----" not in text:
        raise ConfigError(name, repr(raw), allowed)
    return raw


def _ca_file(env: Mapping[str, str]) -> str | None:
    raw = env.get("TLS_CA_FILE")
    if not raw:
        return None
    if not os.path.isfile(raw) or not os.access(raw, os.R_OK):
        raise ConfigError("TLS_CA_FILE", repr(raw), "a readable PEM file of CA certificates")
    return raw


# -- URLs ------------------------------------------------------------------------------------


def _gateway_url(raw: str, insecure: bool) -> str:
    allowed = "a wss://host[:port][/path] URL (ws:// only with ALLOW_INSECURE_GATEWAY=1)"
    parts = _split_url(raw, "GATEWAY_URL", allowed)
    if parts.scheme not in ("wss", "ws") or (parts.scheme == "ws" and not insecure):
        raise ConfigError("GATEWAY_URL", repr(raw), allowed)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError("GATEWAY_URL", repr(raw), "no credentials, query or fragment in the URL")
    return raw


def _proxy_url(env: Mapping[str, str]) -> str | None:
    variable = "HTTPS_PROXY" if "HTTPS_PROXY" in env else "https_proxy"
    raw = env.get(variable)
    if not raw:
        return None
    allowed = "an http://[user:password@]host:port URL of an HTTP CONNECT proxy"
    # curl accepts a bare host:port; so do we.
    url = raw if "://" in raw else f"http://{raw}"
    parts = _split_url(url, variable, allowed, shown=_mask_url_password(raw))
    if parts.scheme != "http" or parts.path not in ("", "/"):
        raise ConfigError(variable, repr(_mask_url_password(raw)), allowed)
    return url


def _split_url(raw: str, variable: str, allowed: str, shown: str | None = None) -> SplitResult:
    shown = repr(shown if shown is not None else raw)
    try:
        parts = urlsplit(raw.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError(variable, shown, allowed) from None
    if not parts.hostname:
        raise ConfigError(variable, shown, allowed)
    return parts


def _mask_url_password(url: str) -> str:
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _no_proxy(env: Mapping[str, str]) -> tuple[str, ...]:
    variable = "NO_PROXY" if "NO_PROXY" in env else "no_proxy"
    raw = env.get(variable, "")
    entries: list[str] = []
    for item in raw.split(","):
        entry = item.strip().lower()
        if not entry:
            continue
        if "/" in entry:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ConfigError(
                    variable, repr(raw), f"{entry!r} is not a valid CIDR (e.g. 10.0.0.0/8)"
                ) from None
        entries.append(entry)
    return tuple(entries)
