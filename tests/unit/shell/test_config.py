"""callmeter.config: every variable of SPEC.md's table, and a one-line error for each bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callmeter.config import VARIABLES, ConfigError, Secret, is_local_address, load_config

TOKEN = "tok-3c7f1e9a"
LOCAL = {"127.0.0.1", "::1", "127.0.0.2"}


def load(**env: str) -> object:
    env.setdefault("WORKER_TOKEN", TOKEN)
    env.setdefault("SIP_IP", "127.0.0.1")
    return load_config(env, local_address=lambda a: a in LOCAL, cpu_count=2)


def error_line(**env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**env)
    line = str(caught.value)
    assert "\n" not in line
    return line


def test_defaults_match_spec() -> None:
    config = load()
    assert config.gateway_url == "wss://wg.callmeter.io:443"
    assert config.sip_ip == config.sdp_ip == config.external_ip == "127.0.0.1"
    assert (config.sip_port, config.sip_tls_port) == (5060, 5061)
    assert (config.rtp_port_min, config.rtp_port_max) == (10000, 65535)
    assert (config.health_bind, config.health_port) == ("127.0.0.1", 3030)
    assert config.https_proxy is None and config.no_proxy == ()
    assert config.tls_ca_file is None
    assert config.max_endpoints == 1000
    assert (config.log_level, config.log_format) == ("info", "text")
    assert config.media_cache_dir == "/var/cache/callmeter"


def test_every_spec_variable_is_documented_and_described() -> None:
    spec = [
        "WORKER_TOKEN",
        "GATEWAY_URL",
        "SIP_IP",
        "SDP_IP",
        "EXTERNAL_IP",
        "SIP_PORT",
        "RTP_PORT_MIN",
        "RTP_PORT_MAX",
        "HEALTH_BIND",
        "HEALTH_PORT",
        "HTTPS_PROXY",
        "NO_PROXY",
        "TLS_CA_FILE",
        "MAX_ENDPOINTS",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "MEDIA_CACHE_DIR",
    ]
    assert set(spec) <= set(VARIABLES)
    assert set(spec) <= set(load().describe())


def test_values_are_parsed(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load(
        GATEWAY_URL="ws://127.0.0.1:8080/ws",
        ALLOW_INSECURE_GATEWAY="1",
        SIP_IP="::1",
        SDP_IP="203.0.113.10",
        EXTERNAL_IP="[2001:db8::1]",
        SIP_PORT="0",
        RTP_PORT_MIN="20001",
        RTP_PORT_MAX="20003",
        HEALTH_BIND="::",
        HEALTH_PORT="0",
        HTTPS_PROXY="proxy.corp:3128",
        NO_PROXY=" 10.0.0.0/8, .corp ,localhost,",
        TLS_CA_FILE=str(ca),
        MAX_ENDPOINTS="250",
        LOG_LEVEL="WARNING",
        LOG_FORMAT="json",
        MEDIA_CACHE_DIR="/tmp/x/../cache",
    )
    assert config.gateway_url == "ws://127.0.0.1:8080/ws" and config.allow_insecure_gateway
    assert (config.sip_ip, config.sdp_ip, config.external_ip) == (
        "::1",
        "203.0.113.10",
        "2001:db8::1",
    )
    assert (config.sip_port, config.sip_tls_port) == (0, 0)
    assert (config.rtp_port_min, config.rtp_port_max) == (20001, 20003)
    assert config.https_proxy == "http://proxy.corp:3128"
    assert config.no_proxy == ("10.0.0.0/8", ".corp", "localhost")
    assert config.tls_ca_file == str(ca)
    assert (config.max_endpoints, config.log_level, config.log_format) == (250, "warn", "json")
    assert config.media_cache_dir == "/tmp/cache"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SIP_PORT": "70000"}, "SIP_PORT='70000' is invalid: a port number 0..65534"),
        ({"SIP_PORT": "fifty"}, "SIP_PORT='fifty' is invalid"),
        ({"HEALTH_PORT": "-1"}, "HEALTH_PORT='-1' is invalid: a port number 0..65535"),
        (
            {"RTP_PORT_MIN": "30000", "RTP_PORT_MAX": "20000"},
            "RTP_PORT_MIN=30000..20000 is invalid: RTP_PORT_MIN must not exceed RTP_PORT_MAX",
        ),
        (
            {"RTP_PORT_MIN": "20000", "RTP_PORT_MAX": "20000"},
            "RTP_PORT_MIN=20000..20000 is invalid: the range must hold at least one even/odd",
        ),
        ({"RTP_PORT_MIN": "20001", "RTP_PORT_MAX": "20002"}, "at least one even/odd"),
        ({"RTP_PORT_MIN": "80"}, "RTP_PORT_MIN='80' is invalid: a port number 1024..65535"),
        (
            {"SIP_IP": "10.254.254.254"},
            "SIP_IP='10.254.254.254' is invalid: must be an address of this host",
        ),
        ({"SIP_IP": "0.0.0.0"}, "SIP_IP='0.0.0.0' is invalid: a specific address"),
        ({"SIP_IP": "pbx.example"}, "SIP_IP='pbx.example' is invalid: an IPv4 or IPv6 address"),
        ({"SDP_IP": "1.2.3"}, "SDP_IP='1.2.3' is invalid"),
        (
            {"GATEWAY_URL": "ws://gw.example/ws"},
            "GATEWAY_URL='ws://gw.example/ws' is invalid: a wss://host[:port][/path] URL "
            "(ws:// only with ALLOW_INSECURE_GATEWAY=1)",
        ),
        ({"GATEWAY_URL": "https://gw.example"}, "GATEWAY_URL='https://gw.example' is invalid"),
        ({"GATEWAY_URL": "wss://"}, "GATEWAY_URL='wss://' is invalid"),
        ({"GATEWAY_URL": "wss://gw.example:99999"}, "GATEWAY_URL='wss://gw.example:99999'"),
        ({"ALLOW_INSECURE_GATEWAY": "maybe"}, "ALLOW_INSECURE_GATEWAY='maybe' is invalid"),
        ({"HTTPS_PROXY": "socks5://p:1080"}, "HTTPS_PROXY='socks5://p:1080' is invalid"),
        ({"NO_PROXY": "10.0.0.0/33"}, "NO_PROXY='10.0.0.0/33' is invalid: '10.0.0.0/33'"),
        ({"TLS_CA_FILE": "/nonexistent/ca.pem"}, "TLS_CA_FILE='/nonexistent/ca.pem' is invalid"),
        ({"MAX_ENDPOINTS": "0"}, "MAX_ENDPOINTS='0' is invalid: an integer 1..1000000"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is invalid: one of debug, info, warn"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT='xml' is invalid: one of text, json"),
        ({"MEDIA_CACHE_DIR": "cache"}, "MEDIA_CACHE_DIR='cache' is invalid: an absolute path"),
    ],
)
def test_bad_value_is_one_line_naming_variable_value_and_rule(
    env: dict[str, str], expected: str
) -> None:
    assert expected in error_line(**env)


def test_empty_or_missing_token_is_refused_without_echo() -> None:
    assert error_line(WORKER_TOKEN="") == (
        "WORKER_TOKEN=<hidden, 0 characters> is invalid: must not be empty"
    )
    assert "must not be empty" in error_line(WORKER_TOKEN="   ")
    with pytest.raises(ConfigError, match="WORKER_TOKEN=\\(unset\\) is invalid: required"):
        load_config({"SIP_IP": "127.0.0.1"}, local_address=lambda a: True)
    assert load_config({"SIP_IP": "127.0.0.1"}, require_token=False).worker_token is None


def test_token_with_bad_characters_is_refused_and_not_echoed() -> None:
    secret = "abc def-supersecret"
    line = error_line(WORKER_TOKEN=secret)
    assert "supersecret" not in line
    assert "<hidden, 19 characters>" in line


@given(st.text(min_size=0, max_size=40))
def test_token_never_appears_in_repr_str_errors_or_description(suffix: str) -> None:
    token = "Zq!9" + suffix  # a prefix no other setting contains
    env = {"WORKER_TOKEN": token, "SIP_IP": "127.0.0.1"}
    try:
        config = load_config(env, local_address=lambda a: True)
    except ConfigError as error:
        assert token not in str(error) and token not in repr(error)
        return
    assert config.worker_token == Secret(token)
    assert config.worker_token is not None and config.worker_token.reveal() == token
    for text in (repr(config), str(config), repr(config.describe()), str(config.worker_token)):
        assert token not in text


def test_token_from_file_and_from_systemd_credentials(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = load_config({"WORKER_TOKEN_FILE": str(token_file), "SIP_IP": "127.0.0.1"})
    assert config.worker_token == Secret(TOKEN) and config.token_source == str(token_file)

    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "worker_token").write_text(TOKEN)
    config = load_config({"CREDENTIALS_DIRECTORY": str(credentials), "SIP_IP": "127.0.0.1"})
    assert config.worker_token == Secret(TOKEN)
    assert config.describe()["WORKER_TOKEN"] == f"(set, from {credentials / 'worker_token'})"

    with pytest.raises(ConfigError, match="WORKER_TOKEN_FILE='/nonexistent' is invalid"):
        load_config({"WORKER_TOKEN_FILE": "/nonexistent", "SIP_IP": "127.0.0.1"})


def test_environment_token_wins_over_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file")
    config = load(WORKER_TOKEN_FILE=str(token_file))
    assert config.worker_token == Secret(TOKEN)


def test_overrides_win_over_environment() -> None:
    config = load_config(
        {"WORKER_TOKEN": TOKEN, "SIP_IP": "127.0.0.1", "HEALTH_PORT": "3030"},
        {"HEALTH_PORT": "4040", "SIP_PORT": None},
        local_address=lambda a: True,
    )
    assert config.health_port == 4040 and config.sip_port == 5060
    with pytest.raises(ConfigError, match="HEALTH_PORT='x'"):
        load_config({"WORKER_TOKEN": TOKEN}, {"HEALTH_PORT": "x"})


def test_proxy_password_is_masked() -> None:
    config = load(HTTPS_PROXY="http://alice:s3cret@proxy:3128")
    assert config.https_proxy == "http://alice:s3cret@proxy:3128"
    assert "s3cret" not in repr(config)
    assert config.describe()["HTTPS_PROXY"] == "http://alice:***@proxy:3128"
    assert "s3cret" not in error_line(HTTPS_PROXY="ftp://alice:s3cret@proxy:3128")


def test_config_is_frozen() -> None:
    config = load()
    with pytest.raises(AttributeError):
        config.sip_port = 1  # type: ignore[misc]


def test_secret_is_not_pickled() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("x"))


def test_local_address_probe_uses_real_sockets() -> None:
    assert is_local_address("127.0.0.1")
    assert not is_local_address("192.0.2.254") or is_local_address("192.0.2.254")
    assert not is_local_address("198.51.100.77")


def test_default_sip_ip_is_a_bindable_address() -> None:
    config = load_config({"WORKER_TOKEN": TOKEN})
    assert is_local_address(config.sip_ip)


def test_readme_documents_every_variable() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    for variable in VARIABLES:
        assert f"| `{variable}` |" in readme, variable
