"""SipTransportLayer on real loopback sockets: UDP, TCP and TLS (trustme), IPv4 and IPv6."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import trustme
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from callmeter.sip.message import SipMessage, SipRequest, SipResponse, make_response, parse_message
from callmeter.sip.transport import Origin, SipTransportLayer, Target, TlsSettings


def options(host: str, port: int, transport: str, branch: str) -> SipRequest:
    bracketed = f"[{host}]" if ":" in host else host
    message = parse_message(
        (
            f"OPTIONS sip:uas@{bracketed}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport.upper()} {bracketed}:9;branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:uac@{bracketed}>;tag=a1\r\n"
            f"To: <sip:uas@{bracketed}>\r\n"
            f"Call-ID: {branch}\r\n"
            "CSeq: 1 OPTIONS\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, SipRequest)
    return message


class Peer:
    """A transport layer that answers every request with 200 and records what it got."""

    def __init__(self, host: str, tls: TlsSettings | None = None) -> None:
        self.requests: list[tuple[SipRequest, Origin]] = []
        self.responses: list[SipResponse] = []
        self.waiting: list[defer.Deferred[None]] = []
        self.layer = SipTransportLayer(reactor, host, self.on_message, tls=tls)

    def on_message(self, message: SipMessage, origin: Origin) -> None:
        if isinstance(message, SipRequest):
            self.requests.append((message, origin))
            self.layer.reply(make_response(message, 200, to_tag="b2"), origin)
        else:
            self.responses.append(message)
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    def next_message(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        d.addTimeout(5, reactor)
        self.waiting.append(d)
        return d


class TransportTests(TestCase):
    timeout = 20

    def make(self, host: str, tls: TlsSettings | None = None) -> Peer:
        peer = Peer(host, tls)
        self.addCleanup(peer.layer.close)
        return peer

    @defer.inlineCallbacks
    def exchange(
        self,
        host: str,
        transport: str,
        tls_uac: TlsSettings | None = None,
        tls_uas: TlsSettings | None = None,
    ) -> Any:
        uas = self.make(host, tls_uas)
        uac = self.make(host, tls_uac)
        port = uas.layer.listen(transport, 0)
        uac.layer.listen(transport, 0)
        errors: list[str] = []
        for number in range(3):
            got = uac.next_message()
            uac.layer.send(
                options(host, port, transport, f"z9hG4bK{transport}{number}"),
                Target(transport, host, port),
                errors.append,
            )
            yield got
        self.assertEqual(errors, [])
        self.assertEqual([r.status for r in uac.responses], [200, 200, 200])
        request, origin = uas.requests[0]
        via = request.headers.top_via()
        self.assertEqual((via.received, via.rport), (host, origin.port))
        return uac, uas

    @defer.inlineCallbacks
    def test_udp_ipv4(self) -> Any:
        uac, uas = yield self.exchange("127.0.0.1", "udp")
        self.assertEqual(uas.requests[0][1].port, uac.layer.ports["udp"])

    @defer.inlineCallbacks
    def test_udp_ipv6(self) -> Any:
        yield self.exchange("::1", "udp")

    @defer.inlineCallbacks
    def test_tcp_reuses_one_connection(self) -> Any:
        uac, uas = yield self.exchange("127.0.0.1", "tcp")
        self.assertEqual(uac.layer.open_streams, 1)
        self.assertEqual(len({id(origin.connection) for _, origin in uas.requests}), 1)

    @defer.inlineCallbacks
    def test_tcp_ipv6(self) -> Any:
        yield self.exchange("::1", "tcp")

    @defer.inlineCallbacks
    def test_tls_with_verification(self) -> Any:
        ca = trustme.CA()
        server_pem = Path(tempfile.mkstemp(suffix=".pem")[1])
        cert = ca.issue_cert("127.0.0.1", "localhost")
        server_pem.write_bytes(
            cert.private_key_pem.bytes() + b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        )
        ca_file = Path(tempfile.mkstemp(suffix=".pem")[1])
        ca.cert_pem.write_to_path(str(ca_file))
        uac, _ = yield self.exchange(
            "127.0.0.1",
            "tls",
            tls_uac=TlsSettings(ca_file=str(ca_file), server_cert=str(server_pem)),
            tls_uas=TlsSettings(server_cert=str(server_pem)),
        )
        self.assertEqual(uac.layer.open_streams, 1)

    @defer.inlineCallbacks
    def test_tls_refuses_an_unknown_ca(self) -> Any:
        trusted, other = trustme.CA(), trustme.CA()
        server_pem = Path(tempfile.mkstemp(suffix=".pem")[1])
        cert = other.issue_cert("127.0.0.1")
        server_pem.write_bytes(cert.private_key_pem.bytes() + cert.cert_chain_pems[0].bytes())
        ca_file = Path(tempfile.mkstemp(suffix=".pem")[1])
        trusted.cert_pem.write_to_path(str(ca_file))
        uas = self.make("127.0.0.1", TlsSettings(server_cert=str(server_pem)))
        uac = self.make("127.0.0.1", TlsSettings(ca_file=str(ca_file)))
        port = uas.layer.listen("tls", 0)
        uac.layer.send(
            options("127.0.0.1", port, "tls", "z9hG4bKbad"), Target("tls", "127.0.0.1", port)
        )
        yield deferLater(reactor, 0.5, lambda: None)
        self.assertEqual(uas.requests, [])
        self.assertEqual(uac.responses, [])

    @defer.inlineCallbacks
    def test_refused_tcp_connection_reports_an_error(self) -> Any:
        uac = self.make("127.0.0.1")
        failed: defer.Deferred[str] = defer.Deferred()
        uac.layer.send(
            options("127.0.0.1", 1, "tcp", "z9hG4bKx"),
            Target("tcp", "127.0.0.1", 1),
            failed.callback,
        )
        reason = yield failed
        self.assertIn("tcp connection to 127.0.0.1:1 failed", reason)
