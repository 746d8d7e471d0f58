"""Which proxy, if any, the control connection uses: HTTPS_PROXY and NO_PROXY as curl reads them.

Pure functions, no I/O, no name resolution.  The NO_PROXY rules follow curl's documentation
(CURLOPT_NOPROXY(3) and "everything curl", *Proxy environment variables*):

- ``*`` matches every host.  (curl honours it only as the whole value; we honour it as any
  entry of the list, the evident intent of ``NO_PROXY=*,example.com``.)
- A host name entry matches that host and every subdomain of it; a leading dot is optional:
  ``example.com`` and ``.example.com`` both match ``example.com`` and ``www.example.com``, never
  ``nonexample.com`` or ``example.com.org``.  Trailing dots are ignored on both sides, and the
  comparison is case-insensitive.
- An IP address entry matches that address (compared as numbers, so ``::1`` equals
  ``0::1``); a CIDR entry (IPv4 or IPv6, e.g. ``10.0.0.0/8``, ``fd00::/8``) matches the
  addresses inside it, as :mod:`ipaddress` defines "inside".  (curl 7.86+ does the same, except
  that it reads ``/0`` as "this exact address".)  IPv6 entries may be written bare or in
  brackets.
- An entry never matches across kinds: a host name entry never matches an IP address target and
  an address entry never matches a host name (no DNS lookup is made).
- An entry may carry a port (``example.com:8443``, ``[::1]:443``, ``10.0.0.1:443``); it then
  matches that port only.  curl has no such syntax (its entries ignore ports); Go's
  ``x/net/http/httpproxy`` has it, and it is what a user writing a port means.

The proxy URL is ``http://[user[:password]@]host[:port]`` (callmeter.config normalises
HTTPS_PROXY to this form).  Without a port, the port is **1080**: curl's default for every
proxy that is not an HTTPS proxy (CURLOPT_PROXYPORT(3)).  The user name and password are
percent-decoded (RFC 3986 section 2.1), so ``p%40ss`` is the password ``p@ss``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = [
    "DEFAULT_PROXY_PORT",
    "ProxyURL",
    "bypasses_proxy",
    "parse_proxy_url",
    "proxy_for",
]

DEFAULT_PROXY_PORT = 1080
"""curl's default port for an ``http://`` proxy given without one (CURLOPT_PROXYPORT(3))."""

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class ProxyURL:
    """An HTTP CONNECT proxy: where it is, and the basic-auth credentials to give it.

    ``repr`` and ``str`` never show the password.
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def authority(self) -> str:
        """``host:port``, an IPv6 address in brackets (RFC 3986 section 3.2.2)."""
        return _authority(self.host, self.port)

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(user, password) for Proxy-Authorization, or None; a missing password is ``""``."""
        if self.username is None:
            return None
        return (self.username, self.password or "")

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username is not None else ""
        return f"http://{user}{self.authority}"


def parse_proxy_url(url: str) -> ProxyURL:
    """Parse ``http://[user[:password]@]host[:port]``; raise ValueError (without the URL)."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("the proxy URL is not a valid http://host:port URL") from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise ValueError("the proxy URL must be http://[user:password@]host[:port]")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return ProxyURL(
        host=parts.hostname,
        port=port if port is not None else DEFAULT_PROXY_PORT,
        username=username,
        password=password,
    )


def proxy_for(
    https_proxy: str | None, no_proxy: Sequence[str], host: str, port: int
) -> ProxyURL | None:
    """The proxy to reach ``host:port`` through, or None to connect directly."""
    if not https_proxy:
        return None
    if bypasses_proxy(host, port, no_proxy):
        return None
    return parse_proxy_url(https_proxy)


def bypasses_proxy(host: str, port: int, no_proxy: Sequence[str]) -> bool:
    """True when a NO_PROXY entry matches ``host:port`` (rules in the module docstring)."""
    target = _target(host)
    if target is None:
        return False
    for raw in no_proxy:
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        pattern, entry_port = _split_port(entry)
        if pattern is None or (entry_port is not None and entry_port != port):
            continue
        if _matches(pattern, target):
            return True
    return False


# -- helpers ---------------------------------------------------------------------------------


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _target(host: str) -> _Address | str | None:
    """The target as an address, or as a lower-cased name without its trailing dot."""
    name = host.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        pass
    name = name.rstrip(".")
    return name or None


def _split_port(entry: str) -> tuple[str | None, int | None]:
    """``entry`` -> (pattern, port or None); pattern None when the entry cannot be read."""
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            return None, None
        pattern, rest = entry[1:close], entry[close + 1 :]
        if rest.startswith("/"):  # [2001:db8::]/32
            return pattern + rest, None
        if not rest:
            return pattern, None
        if rest.startswith(":"):
            return pattern, _port(rest[1:])
        return None, None
    if entry.count(":") == 1:  # host:port or a.b.c.d:port (a bare IPv6 has several colons)
        pattern, _, text = entry.partition(":")
        return pattern, _port(text)
    return entry, None


def _port(text: str) -> int | None:
    """A port number, or -1 (matches no port) when the text is not one."""
    if text.isdigit() and text.isascii() and 0 < int(text) < 65536:
        return int(text)
    return -1


def _matches(pattern: str, target: _Address | str) -> bool:
    if isinstance(target, str):
        name = pattern.rstrip(".")
        if name.startswith("."):
            name = name[1:]
        if not name:
            return False
        return target == name or target.endswith("." + name)
    if "/" in pattern:
        try:
            network = ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
        return network.version == target.version and target in network
    try:
        return ipaddress.ip_address(pattern) == target
    except ValueError:
        return False
