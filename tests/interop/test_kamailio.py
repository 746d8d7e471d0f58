"""Interop with Kamailio 5.6 as registrar and proxy: REGISTER with digest (MD5 and SHA-256),
calls between our endpoints through it (407 on INVITE), a wrong password, and SIP over TLS."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import trustme
from twisted.internet import defer
from twisted.trial.unittest import TestCase

from callmeter.sip.call import CallEnd, CallFailed
from callmeter.sip.registration import RegistrationFailed
from callmeter.sip.transport import Target, TlsSettings
from tests.interop.kamailio import DOMAIN, Kamailio, start_kamailio
from tests.interop.sip_harness import Agent, sleep


class KamailioTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="callmeter-kamailio-"))

    def kamailio(self, **kwargs: Any) -> Kamailio:
        server = start_kamailio(self.work, **kwargs)
        self.addCleanup(server.stop)
        return server

    def agent(self, transport: str = "udp", **kwargs: Any) -> Agent:
        agent = Agent(transport, **kwargs)
        self.addCleanup(agent.close)

        def keep_trace() -> None:
            path = self.work / f"callmeter-{transport}.trace"
            agent.write_trace(path)
            print(f"\nSIP trace: {path}; Kamailio log: {self.work / 'kamailio.log'}")

        self.addCleanup(keep_trace)
        return agent

    @defer.inlineCallbacks
    def register_and_call(
        self, algorithm: str, calls: int = 1, transport: str = "udp", tls: TlsSettings | None = None
    ) -> Any:
        server = self.kamailio(
            algorithm=algorithm, tls_cert=self.tls_cert if transport == "tls" else None
        )
        port = server.tls_port if transport == "tls" else server.port
        assert port is not None
        target = Target(transport, "127.0.0.1", port)
        agent = self.agent(transport, tls=tls)
        callers = [f"1{n:03d}" for n in range(calls)]
        callees = [f"2{n:03d}" for n in range(calls)]
        registrations = []
        for user in callers + callees:
            agent.answer_as(user)
            registration = agent.registration(user, f"secret-{user}", DOMAIN, target)
            registrations.append(registration)
        times = yield defer.gatherResults([r.start() for r in registrations], consumeErrors=True)
        self.assertTrue(all(t > 0 for t in times))
        established = yield defer.gatherResults(
            [
                self.one_call(agent, caller, callee, target)
                for caller, callee in zip(callers, callees, strict=True)
            ],
            consumeErrors=True,
        )
        self.assertEqual(len(established), calls)
        yield defer.gatherResults([r.stop() for r in registrations])
        return agent, established

    @defer.inlineCallbacks
    def one_call(self, agent: Agent, caller: str, callee: str, target: Target) -> Any:
        call = agent.call(
            caller, f"sip:{callee}@{DOMAIN}", target, password=f"secret-{caller}", domain=DOMAIN
        )
        yield call.start()
        yield sleep(0.2)
        how = yield call.hangup()
        self.assertEqual(how, CallEnd.LOCAL_BYE)
        return call

    @defer.inlineCallbacks
    def test_md5_register_and_call_through_kamailio(self) -> Any:
        agent, calls = yield self.register_and_call("MD5")
        call = calls[0]
        self.assertEqual(call.times.final_code, 200)
        self.assertIsNotNone(call.times.pdd_ms)
        # The INVITE was challenged (407) and sent again with Proxy-Authorization.
        sent = "\n".join(agent.layer.trace)
        self.assertIn("SIP/2.0 407", sent)
        self.assertIn("Proxy-Authorization: Digest", sent)
        self.assertIn("Record-Route:", sent)
        self.assertEqual(agent.incoming[0].times.end, CallEnd.REMOTE_BYE)

    @defer.inlineCallbacks
    def test_sha256_register_and_call_through_kamailio(self) -> Any:
        agent, _ = yield self.register_and_call("SHA-256")
        self.assertIn("algorithm=SHA-256", "\n".join(agent.layer.trace))

    @defer.inlineCallbacks
    def test_hundred_calls_through_kamailio_over_udp(self) -> Any:
        _, calls = yield self.register_and_call("MD5", calls=100)
        self.assertEqual(sum(c.times.final_code == 200 for c in calls), 100)

    @defer.inlineCallbacks
    def test_wrong_password_is_a_clear_401_failure(self) -> Any:
        server = self.kamailio()
        agent = self.agent()
        target = Target("udp", "127.0.0.1", server.port)
        registration = agent.registration("1000", "wrong", DOMAIN, target)
        with self.assertRaises(RegistrationFailed) as caught:
            yield registration.start()
        self.assertEqual(caught.exception.code, 401)
        self.assertIn("credentials rejected", caught.exception.reason)
        call = agent.call("1000", f"sip:2000@{DOMAIN}", target, password="wrong", domain=DOMAIN)
        with self.assertRaises(CallFailed) as failed:
            yield call.start()
        self.assertEqual(failed.exception.code, 407)

    @defer.inlineCallbacks
    def test_register_and_call_over_tls(self) -> Any:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        pem = self.work / "server.pem"
        pem.write_bytes(
            cert.private_key_pem.bytes() + b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        )
        self.tls_cert = pem
        ca_file = self.work / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        agent, calls = yield self.register_and_call(
            "SHA-256",
            transport="tls",
            tls=TlsSettings(ca_file=str(ca_file), server_cert=str(pem)),
        )
        self.assertEqual(calls[0].times.final_code, 200)
        self.assertIn("SIP/2.0/TLS", "\n".join(agent.layer.trace))

    tls_cert: Path | None = None
