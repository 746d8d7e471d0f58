"""Interop with SIPp 3.6.1 (Debian's sip-tester): its built-in uas and uac scenarios.

Debian builds SIPp without TLS (``sipp -h`` lists no TLS transport), so TLS interop runs
against Kamailio's tls module instead (test_kamailio.py).  On failure each test writes our side's
message trace and SIPp's message log next to the test's temporary directory and names them.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from callmeter.sip.call import CallEnd
from callmeter.sip.transport import Target
from tests.interop.conftest import free_loopback_port, require_binary
from tests.interop.sip_harness import Agent, sleep, wait_for_exit

SIPP_TRANSPORT = {"udp": "u1", "tcp": "t1"}


class SippTests(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.sipp = require_binary("sipp")
        self.work = Path(tempfile.mkdtemp(prefix="callmeter-sipp-"))

    def start_sipp(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.work / "sipp.out").open("wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [
                self.sipp,
                *args,
                "-nostdin",
                "-trace_msg",
                "-message_file",
                str(self.work / "sipp-messages.log"),
                "-trace_err",
                "-error_file",
                str(self.work / "sipp-errors.log"),
            ],
            cwd=self.work,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            if process.poll() is None:
                process.kill()
                process.wait()

        self.addCleanup(stop)
        return process

    def agent(self, transport: str, **kwargs: Any) -> Agent:
        agent = Agent(transport, **kwargs)
        self.addCleanup(agent.close)
        self.addCleanup(self.keep_trace_on_failure, agent)
        return agent

    def keep_trace_on_failure(self, agent: Agent) -> None:
        """Write both sides' traces; pytest shows this output only for a failing test."""
        path = self.work / f"callmeter-{agent.transport}.trace"
        agent.write_trace(path)
        print(f"\nSIP traces: {path} and {self.work / 'sipp-messages.log'}")

    @defer.inlineCallbacks
    def uac_against_sipp_uas(self, transport: str, calls: int) -> Any:
        port = free_loopback_port()
        sipp = self.start_sipp(
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            SIPP_TRANSPORT[transport],
            "-m",
            str(calls),
        )
        yield sleep(0.5)
        ours = self.agent(transport)
        established = []
        for _ in range(calls):
            call = ours.call(
                "alice", f"sip:service@127.0.0.1:{port}", Target(transport, "127.0.0.1", port)
            )
            yield call.start()
            established.append(call)
            yield sleep(0.1)
            how = yield call.hangup()
            self.assertEqual(how, CallEnd.LOCAL_BYE)
        code = yield wait_for_exit(sipp, 10)
        self.assertEqual(code, 0, (self.work / "sipp.out").read_text(errors="replace"))
        for call in established:
            self.assertIsNotNone(call.times.setup_ms)
            self.assertIsNotNone(call.times.pdd_ms)  # SIPp's uas sends 180 Ringing
            self.assertEqual(call.times.final_code, 200)
            self.assertEqual(call.media.negotiated_codec, "PCMU")  # type: ignore[attr-defined]

    def test_our_uac_calls_sipp_uas_over_udp(self) -> Any:
        return self.uac_against_sipp_uas("udp", 5)

    def test_our_uac_calls_sipp_uas_over_tcp(self) -> Any:
        return self.uac_against_sipp_uas("tcp", 5)

    @defer.inlineCallbacks
    def sipp_uac_against_our_uas(self, transport: str, calls: int) -> Any:
        ours = self.agent(transport, answer_delay=0.05)
        ours.answer_as("bob")
        sipp = self.start_sipp(
            "-sn",
            "uac",
            f"127.0.0.1:{ours.port}",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_loopback_port()),
            "-t",
            SIPP_TRANSPORT[transport],
            "-m",
            str(calls),
            "-r",
            "10",
            "-l",
            "5",
            "-d",
            "200",
        )
        code = yield wait_for_exit(sipp, 30)
        self.assertEqual(code, 0, (self.work / "sipp.out").read_text(errors="replace"))
        self.assertEqual(len(ours.incoming), calls)
        yield sleep(0.2)
        self.assertEqual([call.times.end for call in ours.incoming], [CallEnd.REMOTE_BYE] * calls)
        self.assertTrue(all(call.times.confirmed is not None for call in ours.incoming))

    def test_sipp_uac_calls_our_uas_over_udp(self) -> Any:
        return self.sipp_uac_against_our_uas("udp", 10)

    def test_sipp_uac_calls_our_uas_over_tcp(self) -> Any:
        return self.sipp_uac_against_our_uas("tcp", 10)
