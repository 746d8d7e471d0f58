"""The SIP TLS listener's certificate: self-signed for SIP_IP, or SIP_TLS_CERT validated."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from twisted.internet.ssl import PrivateCertificate

from callmeter.config import ConfigError, load_config
from callmeter.sip.tls_cert import self_signed_pem
from callmeter.sip.transport import TlsSettings


@pytest.mark.parametrize("host", ["127.0.0.1", "2001:db8::5", "sip.example.test"])
def test_the_self_signed_certificate_names_the_listening_address(host: str) -> None:
    pem = self_signed_pem(host)
    certificate = x509.load_pem_x509_certificate(pem)
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    try:
        assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(host)]
    except ValueError:
        assert names.get_values_for_type(x509.DNSName) == [host]
    PrivateCertificate.loadPEM(pem)  # certificate and key, as the listener loads them
    assert TlsSettings(server_pem=pem).server_options() is not None


def test_sip_tls_cert_must_hold_a_certificate_and_its_key(tmp_path: Path) -> None:
    good = tmp_path / "sip.pem"
    good.write_bytes(self_signed_pem("127.0.0.1"))
    env = {"SIP_IP": "127.0.0.1", "SIP_TLS_CERT": str(good)}
    config = load_config(env, require_token=False, local_address=lambda _: True)
    assert config.sip_tls_cert == str(good)
    assert TlsSettings(server_cert=config.sip_tls_cert).server_options() is not None
    only_cert = tmp_path / "cert-only.pem"
    only_cert.write_bytes(self_signed_pem("127.0.0.1").split(b"-----BEGIN PRIVATE KEY")[0])
    for path in (only_cert, tmp_path / "missing.pem"):
        with pytest.raises(ConfigError, match="SIP_TLS_CERT"):
            load_config({**env, "SIP_TLS_CERT": str(path)}, require_token=False)
