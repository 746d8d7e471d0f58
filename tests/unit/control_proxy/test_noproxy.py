"""NO_PROXY matching as curl documents it (CURLOPT_NOPROXY(3), "everything curl"), and
HTTPS_PROXY parsing with curl's default port."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.control.noproxy import (
    DEFAULT_PROXY_PORT,
    ProxyURL,
    bypasses_proxy,
    parse_proxy_url,
    proxy_for,
)

SEED_NO_PROXY = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
"""The seed's example (worker-networking.txt, "HTTPS Proxies")."""

CASES = [
    # host, port, NO_PROXY entries, bypasses?
    # curl: "ample.com" matches ample.com, ample.com:80 and www.ample.com ...
    ("ample.com", 443, ["ample.com"], True),
    ("ample.com", 80, ["ample.com"], True),
    ("www.ample.com", 443, ["ample.com"], True),
    # ... but not www.example.com or ample.com.org
    ("www.example.com", 443, ["ample.com"], False),
    ("ample.com.org", 443, ["ample.com"], False),
    # ".example.com matches both www.example.com and home.example.com but not nonexample.com"
    ("www.example.com", 443, [".example.com"], True),
    ("home.example.com", 443, [".example.com"], True),
    ("nonexample.com", 443, [".example.com"], False),
    # the leading dot is optional both ways (curl ignores it)
    ("example.com", 443, [".example.com"], True),
    ("a.b.example.com", 443, ["example.com"], True),
    # case-insensitive, trailing dots ignored
    ("WWW.Example.COM", 443, ["example.com"], True),
    ("www.example.com", 443, ["EXAMPLE.com"], True),
    ("www.example.com.", 443, ["example.com"], True),
    ("www.example.com", 443, ["example.com."], True),
    # "*" matches every host
    ("gateway.example.net", 443, ["*"], True),
    ("10.1.2.3", 443, ["*"], True),
    ("::1", 443, ["*"], True),
    # IPv4 literals, compared as addresses
    ("10.1.2.3", 443, ["10.1.2.3"], True),
    ("10.1.2.4", 443, ["10.1.2.3"], False),
    # IPv6, bare or in brackets, compared as numbers ("::1" equals "0:0::1")
    ("::1", 443, ["::1"], True),
    ("[::1]", 443, ["::1"], True),
    ("::1", 443, ["[::1]"], True),
    ("::1", 443, ["0:0::1"], True),
    ("::2", 443, ["::1"], False),
    # CIDR ("192.168.0.0/16 would match all addresses starting with 192.168")
    ("192.168.7.9", 443, ["192.168.0.0/16"], True),
    ("192.169.0.1", 443, ["192.168.0.0/16"], False),
    ("172.31.255.255", 443, list(SEED_NO_PROXY), True),
    ("172.32.0.0", 443, list(SEED_NO_PROXY), False),
    ("10.200.0.1", 443, list(SEED_NO_PROXY), True),
    ("2001:db8::5", 443, ["2001:db8::/32"], True),
    ("[2001:db8::5]", 443, ["[2001:db8::]/32"], True),
    ("2001:db9::1", 443, ["2001:db8::/32"], False),
    ("10.0.0.1", 443, ["::/0"], False),  # an IPv6 network holds no IPv4 address
    # no DNS: a name never matches an address entry, an address never a name entry
    ("localhost", 443, ["127.0.0.1"], False),
    ("127.0.0.1", 443, ["localhost"], False),
    ("gw.example.com", 443, list(SEED_NO_PROXY), False),
    # entries with a port match that port only
    ("example.com", 443, ["example.com:443"], True),
    ("example.com", 8443, ["example.com:443"], False),
    ("www.example.com", 443, [".example.com:443"], True),
    ("::1", 443, ["[::1]:443"], True),
    ("::1", 444, ["[::1]:443"], False),
    ("10.0.0.1", 443, ["10.0.0.1:8080"], False),
    ("10.0.0.1", 8080, ["10.0.0.1:8080"], True),
    ("example.com", 443, ["example.com:notaport"], False),
    # empty list and empty entries: the proxy is used
    ("example.com", 443, [], False),
    ("example.com", 443, ["", " "], False),
    ("example.com", 443, ["", "example.com"], True),
    # several entries: any one may match
    ("gw.internal", 443, ["example.com", "internal", "10.0.0.0/8"], True),
]


@pytest.mark.parametrize(("host", "port", "no_proxy", "expected"), CASES)
def test_curl_documented_behaviour(
    host: str, port: int, no_proxy: list[str], expected: bool
) -> None:
    assert bypasses_proxy(host, port, no_proxy) is expected


# -- properties ------------------------------------------------------------------------------

ipv4_networks = st.builds(
    lambda address, prefix: ipaddress.IPv4Network((address, prefix), strict=False),
    st.integers(0, 2**32 - 1),
    st.integers(0, 32),
)
ipv6_networks = st.builds(
    lambda address, prefix: ipaddress.IPv6Network((address, prefix), strict=False),
    st.integers(0, 2**128 - 1),
    st.integers(0, 128),
)
addresses = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
names = st.lists(labels, min_size=1, max_size=4).map(".".join)


@given(address=addresses, network=st.one_of(ipv4_networks, ipv6_networks))
def test_cidr_entry_matches_exactly_what_ipaddress_contains(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
) -> None:
    inside = address.version == network.version and address in network
    assert bypasses_proxy(str(address), 443, [str(network)]) is inside


@given(network=st.one_of(ipv4_networks, ipv6_networks), data=st.data())
def test_every_address_of_a_cidr_matches_it(
    network: ipaddress.IPv4Network | ipaddress.IPv6Network, data: st.DataObject
) -> None:
    offset = data.draw(st.integers(0, network.num_addresses - 1))
    address = network.network_address + offset
    assert bypasses_proxy(str(address), 443, [str(network)])


@given(
    host=st.one_of(names, addresses.map(str)),
    port=st.integers(1, 65535),
    others=st.lists(st.one_of(names, addresses.map(str)), max_size=3),
    position=st.integers(0, 3),
)
def test_star_always_bypasses(host: str, port: int, others: list[str], position: int) -> None:
    entries = list(others)
    entries.insert(min(position, len(entries)), "*")
    assert bypasses_proxy(host, port, entries)


@given(domain=names, sub=names, dot=st.booleans(), port=st.integers(1, 65535))
def test_a_domain_entry_matches_itself_and_its_subdomains(
    domain: str, sub: str, dot: bool, port: int
) -> None:
    entry = ("." if dot else "") + domain
    assert bypasses_proxy(domain, port, [entry])
    assert bypasses_proxy(f"{sub}.{domain}", port, [entry])


@given(domain=names, prefix=labels)
def test_a_domain_entry_does_not_match_a_longer_label(domain: str, prefix: str) -> None:
    assert not bypasses_proxy(prefix + domain, 443, [domain, "." + domain])


# -- the proxy URL ---------------------------------------------------------------------------


def test_proxy_url_defaults_to_curls_port_1080() -> None:
    assert DEFAULT_PROXY_PORT == 1080
    assert parse_proxy_url("http://proxy.corp.example.com") == ProxyURL(
        "proxy.corp.example.com", 1080
    )


def test_proxy_url_with_port_and_percent_encoded_credentials() -> None:
    proxy = parse_proxy_url("http://svc%2Dworker:p%40ss%3Aword@Proxy.Corp:8080")
    assert (proxy.host, proxy.port) == ("proxy.corp", 8080)
    assert proxy.credentials == ("svc-worker", "p@ss:word")
    assert proxy.authority == "proxy.corp:8080"


def test_proxy_url_user_without_password_sends_an_empty_password() -> None:
    assert parse_proxy_url("http://alice@proxy:3128").credentials == ("alice", "")
    assert parse_proxy_url("http://proxy:3128").credentials is None


def test_proxy_url_ipv6_host_is_bracketed_in_the_authority() -> None:
    proxy = parse_proxy_url("http://[2001:db8::1]:3128")
    assert proxy.host == "2001:db8::1"
    assert proxy.authority == "[2001:db8::1]:3128"


def test_proxy_url_never_shows_the_password() -> None:
    proxy = parse_proxy_url("http://alice:s3cr3t@proxy:3128")
    assert "s3cr3t" not in repr(proxy)
    assert "s3cr3t" not in str(proxy)
    assert str(proxy) == "http://alice:***@proxy:3128"


@pytest.mark.parametrize("url", ["https://proxy:3128", "socks5://proxy:1080", "http://:3128"])
def test_proxy_url_rejects_what_is_not_an_http_proxy(url: str) -> None:
    with pytest.raises(ValueError):
        parse_proxy_url(url)


def test_proxy_for_applies_no_proxy() -> None:
    url = "http://proxy:3128"
    assert proxy_for(None, (), "gw.example.com", 443) is None
    assert proxy_for(url, (".example.com",), "gw.example.com", 443) is None
    assert proxy_for(url, (".example.org",), "gw.example.com", 443) == ProxyURL("proxy", 3128)
    assert proxy_for(url, SEED_NO_PROXY, "192.168.1.10", 443) is None
    assert proxy_for(url, SEED_NO_PROXY, "203.0.113.5", 443) == ProxyURL("proxy", 3128)
