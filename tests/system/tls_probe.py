"""A TLS handshake the way the worker makes one, run inside the unit's sandbox.

The system test runs this with ``systemd-run`` and every hardening property of
callmeter-worker.service, on Debian 12's python3-openssl/cffi/twisted/service-identity: a
client context from ``twisted.internet.ssl.optionsForClientTLS`` (the wss:// control plane,
SIP over TLS) verifies a self-signed server certificate and its host name, in memory.
pyOpenSSL's callbacks are cffi ``ffi.callback()`` objects, which need write+execute memory on
bookworm: this is what fails under ``MemoryDenyWriteExecute=yes``.

Prints ``TLS OK <version> <cipher>`` and exits 0, or raises.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import ssl

HOST = "gateway.example.test"


class _FakeTLSFactory:
    wrappedFactory = None


class _FakeTLSProtocol:
    """Stands in for the TLSMemoryBIOProtocol that Twisted's verify callback reports to."""

    def __init__(self) -> None:
        self.failure: object = None
        # Newer Twisted asks the factory for ALPN protocols; there are none here.
        self.factory = _FakeTLSFactory()

    def failVerification(self, reason: object) -> None:
        self.failure = reason


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _pump(source: SSL.Connection, sink: SSL.Connection) -> bool:
    try:
        data = source.bio_read(65536)
    except SSL.WantReadError:
        return False
    sink.bio_write(data)
    return True


def main() -> None:
    key_pem, cert_pem = _self_signed()
    server_cert = ssl.PrivateCertificate.loadPEM(key_pem + cert_pem)  # type: ignore[no-untyped-call]
    server_options = server_cert.options()
    client_options = ssl.optionsForClientTLS(HOST, trustRoot=ssl.Certificate.loadPEM(cert_pem))

    server = SSL.Connection(server_options.getContext(), None)
    server.set_accept_state()
    app = _FakeTLSProtocol()
    client = client_options.clientConnectionForTLS(app)  # type: ignore[arg-type]
    client.set_connect_state()

    done = {"client": False, "server": False}
    for _ in range(50):
        for side, connection in (("client", client), ("server", server)):
            if not done[side]:
                try:
                    connection.do_handshake()
                    done[side] = True
                except SSL.WantReadError:
                    pass
        moved = _pump(client, server) | _pump(server, client)
        if all(done.values()) and not moved:
            break
    if not all(done.values()):
        raise SystemExit(f"TLS handshake did not finish: {done}")
    if app.failure is not None:
        raise SystemExit(f"certificate or host name verification failed: {app.failure}")
    print("TLS OK", client.get_protocol_version_name(), client.get_cipher_name())


if __name__ == "__main__":
    main()
