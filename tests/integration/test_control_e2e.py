"""Worker and reference gateway over real loopback sockets: TLS (trustme), restart, byte capture.

The worker is ControlService with the in-memory FakeEngine (windows every 0.5 s here); the
gateway is GatewayService with its SQLite file and its thread; the API is called over HTTPS
with treq. Reconnects use a 0.2 s retry policy (the real 5/10/20/40/60 s schedule is asserted
on a Clock in tests/unit/controlclient).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import treq
import trustme
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.pages import notFound
from twisted.web.server import Site
from zope.interface import implementer

from callmeter.config import load_config
from callmeter.control.service import ControlService
from callmeter.engine import Engine
from callmeter.gateway.service import GatewayService
from callmeter.status import WorkerState, WorkerStatus
from tests.unit.controlclient.fakes import FakeEngine, sip_plan

ADMIN = "admin-e2e-token"
TOKENS = {"lab-1": "worker-e2e-token-1"}


class FastRetry:
    """A retry policy for real-time tests: 0.2 s, always."""

    def __init__(self) -> None:
        self.resets = 0

    def __call__(self, attempt: int) -> float:
        return 0.2

    def reset(self) -> None:
        self.resets += 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class _SpyFactory(Factory):
    """Builds the real protocol, with its transport's ``write`` recorded per connection."""

    def __init__(self, inner: IProtocolFactory, connections: list[bytearray]) -> None:
        self.inner = inner
        self.connections = connections

    def buildProtocol(self, addr: Any) -> Any:
        proto = self.inner.buildProtocol(addr)
        assert proto is not None
        buffer = bytearray()
        self.connections.append(buffer)
        make_connection = proto.makeConnection

        def spied(transport: Any) -> None:
            write = transport.write

            def recording_write(data: bytes) -> None:
                buffer.extend(data)
                write(data)

            def recording_write_sequence(chunks: Any) -> None:
                for chunk in chunks:
                    recording_write(chunk)

            transport.write = recording_write
            transport.writeSequence = recording_write_sequence
            make_connection(transport)

        proto.makeConnection = spied  # type: ignore[method-assign]
        return proto


@implementer(IStreamClientEndpoint)
class RecordingEndpoint:
    """Wraps an endpoint and keeps every byte the worker writes, per connection."""

    def __init__(self, inner: IStreamClientEndpoint) -> None:
        self.inner = inner
        self.connections: list[bytearray] = []

    def connect(self, factory: IProtocolFactory) -> Any:
        return self.inner.connect(_SpyFactory(factory, self.connections))


def cancel_autobahn_buckets() -> None:
    """Autobahn's batched timers (txaio) leave an idle bucket call behind on the reactor after
    the timer in it was cancelled (the handshake timeouts); it would fire harmlessly later, but
    trial counts it as a dirty reactor."""
    for call in reactor.getDelayedCalls():
        if "_notify_bucket" in repr(getattr(call, "func", None)):
            call.cancel()


def client_frames(data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
    """Split what a WebSocket client sent into its upgrade head and unmasked frames (RFC 6455
    section 5.2, 5.3)."""
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    frames: list[tuple[int, bytes]] = []
    i = 0
    while i < len(rest):
        opcode = rest[i] & 0x0F
        masked = rest[i + 1] & 0x80
        length = rest[i + 1] & 0x7F
        i += 2
        if length == 126:
            length = int.from_bytes(rest[i : i + 2], "big")
            i += 2
        elif length == 127:
            length = int.from_bytes(rest[i : i + 8], "big")
            i += 8
        assert masked, "client frames are masked (RFC 6455 section 5.3)"
        mask = rest[i : i + 4]
        i += 4
        payload = bytes(b ^ mask[k % 4] for k, b in enumerate(rest[i : i + length]))
        i += length
        frames.append((opcode, payload))
    return head, frames


class ControlEndToEnd(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="callmeter-e2e-"))
        ca = trustme.CA()
        cert = ca.issue_cert("localhost")
        self.key_file = self.dir / "key.pem"
        self.cert_file = self.dir / "cert.pem"
        self.ca_file = self.dir / "ca.pem"
        cert.private_key_pem.write_to_path(str(self.key_file))
        cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.db = str(self.dir / "gateway.sqlite3")
        self.port = free_port()
        trust = Certificate.loadPEM(self.ca_file.read_bytes())
        pool = HTTPConnectionPool(reactor, persistent=False)
        agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust), pool=pool)
        self.http = treq.client.HTTPClient(agent)
        self.addCleanup(cancel_autobahn_buckets)

    # --- the two ends -----------------------------------------------------------------------

    @defer.inlineCallbacks
    def start_gateway(self, tls: bool = True) -> Any:
        if tls:
            listen = (
                f"ssl:{self.port}:interface=127.0.0.1:"
                f"privateKey={self.key_file}:certKey={self.cert_file}"
            )
        else:
            listen = f"tcp:{self.port}:interface=127.0.0.1"
        gateway = GatewayService(listen, self.db, TOKENS, ADMIN, reactor)
        gateway.startService()
        yield gateway.listening
        return gateway

    def start_worker(
        self,
        engine: FakeEngine | Engine,
        *,
        url: str | None = None,
        env: dict[str, str] | None = None,
        endpoint: IStreamClientEndpoint | None = None,
    ) -> tuple[ControlService, WorkerStatus]:
        environ = {
            "WORKER_TOKEN": TOKENS["lab-1"],
            "GATEWAY_URL": url or f"wss://localhost:{self.port}/ws",
            "TLS_CA_FILE": str(self.ca_file),
            "SIP_IP": "127.0.0.1",
            **(env or {}),
        }
        config = load_config(environ, local_address=lambda address: True, cpu_count=1)
        status = WorkerStatus(reactor)
        self.transitions: list[str] = []
        status.subscribe(lambda st: self.transitions.append(st.summary()))
        service = ControlService(
            config,
            status,
            engine,
            reactor,
            worker_name="lab-1",
            endpoint=endpoint,
            retry_policy=FastRetry(),
        )
        service.startService()
        self.addCleanup(service.stopService)
        return service, status

    # --- the API ----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def api(self, method: str, path: str, body: Any = None, tls: bool = True) -> Any:
        scheme = "https://localhost" if tls else "http://127.0.0.1"
        response = yield self.http.request(
            method,
            f"{scheme}:{self.port}/api{path}",
            headers=Headers({b"Authorization": [f"Bearer {ADMIN}".encode()]}),
            data=json.dumps(body).encode() if body is not None else None,
        )
        content = yield response.content()
        return response.code, json.loads(content)

    @defer.inlineCallbacks
    def wait_for(self, check: Any, what: str, timeout: float = 20.0) -> Any:
        waited = 0.0
        while True:
            value = yield check()
            if value:
                return value
            if waited > timeout:
                raise AssertionError(f"timed out waiting for {what}")
            yield deferLater(reactor, 0.05, lambda: None)
            waited += 0.05

    @defer.inlineCallbacks
    def run_state(self, run: str, tls: bool = True) -> Any:
        code, info = yield self.api("GET", f"/runs/{run}", tls=tls)
        assert code == 200
        return info

    # --- tests ------------------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_run_through_the_api_finishes_with_report_over_tls(self) -> Any:
        gateway = yield self.start_gateway()
        self.addCleanup(gateway.stopService)
        engine = FakeEngine(reactor, window_s=0.5, windows=4)
        service, status = self.start_worker(engine)

        @defer.inlineCallbacks
        def online() -> Any:
            code, workers = yield self.api("GET", "/workers")
            return workers[0]["state"] == "ONLINE" and workers[0]["max_endpoints"] > 0

        yield self.wait_for(online, "the worker ONLINE at the gateway")
        self.assertIs(status.state, WorkerState.ONLINE)
        self.assertTrue(status.connected)
        code, reply = yield self.api("POST", "/runs", {"plan": sip_plan(2, 2), "worker": "lab-1"})
        self.assertEqual(code, 201)
        run = reply["id"]

        @defer.inlineCallbacks
        def finished() -> Any:
            info = yield self.run_state(run)
            return info if info["state"] == "finished" else None

        info = yield self.wait_for(finished, "the run's report")
        self.assertEqual(info["windows"], 4)
        self.assertIs(info["report"]["passed"], True)
        code, windows = yield self.api("GET", f"/runs/{run}/windows?after=0")
        self.assertEqual([w["seq"] for w in windows], [1, 2, 3, 4])
        self.assertIn("callers", windows[0]["groups"])

    @defer.inlineCallbacks
    def test_a_media_url_that_404s_is_rejected_as_callmeter_run_refuses_it(self) -> Any:
        """The daemon's engine (the real one) prepares the assignment, fetching its media: a
        404 is a rejection with the very line `callmeter run` prints before it exits 2."""
        web = reactor.listenTCP(0, Site(notFound()), interface="127.0.0.1")
        self.addCleanup(web.stopListening)
        url = f"http://127.0.0.1:{web.getHost().port}/missing.wav"
        plan = sip_plan(2, 2)
        plan["groups"][1]["media"] = url
        media_env = {"MEDIA_CACHE_DIR": str(self.dir / "media"), "SIP_IP": "127.0.0.1"}
        gateway = yield self.start_gateway()
        self.addCleanup(gateway.stopService)
        config = load_config(media_env, require_token=False, cpu_count=1)
        service, status = self.start_worker(Engine(config, reactor), env=media_env)

        @defer.inlineCallbacks
        def online() -> Any:
            code, workers = yield self.api("GET", "/workers")
            return workers and workers[0]["state"] == "ONLINE"

        yield self.wait_for(online, "the worker ONLINE at the gateway")
        code, reply = yield self.api("POST", "/runs", {"plan": plan, "worker": "lab-1"})
        self.assertEqual(code, 201)

        @defer.inlineCallbacks
        def failed() -> Any:
            info = yield self.run_state(reply["id"])
            return info if info["state"] == "failed" else None

        info = yield self.wait_for(failed, "the run rejected")
        reason = f"media: {url}: HTTP 404 Not Found"
        self.assertEqual(info["reason"], f"rejected: {reason}")
        self.assertIs(status.state, WorkerState.ONLINE)

        plan_file = self.dir / "plan.json"
        plan_file.write_text(json.dumps(plan))
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            ["-m", "callmeter.cli", "run", str(plan_file), "--processes", "2", "--plain"],
            env={**os.environ, **media_env, "SIP_PORT": "0"},
            path=str(Path(__file__).parents[2]),
        )
        self.assertEqual(code, 2, err)
        self.assertEqual(err.decode().strip().splitlines()[-1], f"callmeter: {reason}")

    @defer.inlineCallbacks
    def test_gateway_restart_mid_run_loses_no_window(self) -> Any:
        gateway = yield self.start_gateway()
        engine = FakeEngine(reactor, window_s=0.5, windows=10)
        service, status = self.start_worker(engine)
        yield self.wait_for(lambda: defer.succeed(status.state is WorkerState.ONLINE), "ONLINE")
        code, reply = yield self.api("POST", "/runs", {"plan": sip_plan(3, 3), "worker": None})
        run = reply["id"]

        @defer.inlineCallbacks
        def some_windows() -> Any:
            info = yield self.run_state(run)
            return info["windows"] >= 3

        yield self.wait_for(some_windows, "three windows")
        yield gateway.stopService()  # the gateway goes away mid-run
        yield deferLater(reactor, 1.2, lambda: None)
        self.assertIs(status.state, WorkerState.BUSY)
        self.assertFalse(status.connected)
        gateway = yield self.start_gateway()  # same port, same database
        self.addCleanup(gateway.stopService)

        @defer.inlineCallbacks
        def finished() -> Any:
            info = yield self.run_state(run)
            return info if info["state"] == "finished" else None

        info = yield self.wait_for(finished, "the run finished after the restart")
        self.assertEqual(info["windows"], 10)
        code, windows = yield self.api("GET", f"/runs/{run}/windows?after=0")
        self.assertEqual([w["seq"] for w in windows], list(range(1, 11)))
        self.assertFalse(any(w.get("dropped") for w in windows))
        self.assertEqual(list(service.client.spool.runs()), [])

    @defer.inlineCallbacks
    def test_wrong_ca_is_error_with_a_tls_reason(self) -> Any:
        gateway = yield self.start_gateway()
        self.addCleanup(gateway.stopService)
        other = self.dir / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(other))
        engine = FakeEngine(reactor)
        service, status = self.start_worker(engine, env={"TLS_CA_FILE": str(other)})
        yield self.wait_for(
            lambda: defer.succeed(status.state is WorkerState.ERROR), "ERROR", timeout=10
        )
        self.assertIn("TLS", status.reason or "")
        self.assertIn("certificate verify failed", status.reason or "")

    @defer.inlineCallbacks
    def test_no_sip_message_rtp_or_credential_leaves_on_the_control_plane(self) -> Any:
        """Every byte the worker writes during a run whose plan has SIP passwords: the upgrade
        head and every frame, unmasked, hold metrics and status only."""
        gateway = yield self.start_gateway(tls=False)
        self.addCleanup(gateway.stopService)
        recorder = RecordingEndpoint(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port))
        engine = FakeEngine(reactor, window_s=0.5, windows=4)
        url = f"ws://127.0.0.1:{self.port}/ws"
        service, status = self.start_worker(
            engine, url=url, env={"ALLOW_INSECURE_GATEWAY": "1"}, endpoint=recorder
        )
        yield self.wait_for(lambda: defer.succeed(status.state is WorkerState.ONLINE), "ONLINE")
        plan = sip_plan(5, 5)
        code, reply = yield self.api("POST", "/runs", {"plan": plan}, tls=False)
        run = reply["id"]

        @defer.inlineCallbacks
        def finished() -> Any:
            info = yield self.run_state(run, tls=False)
            return info["state"] == "finished"

        yield self.wait_for(finished, "the run's report")
        yield service.stopService()
        self.assertEqual(engine.runs[0].plan, plan)  # the engine had the passwords

        self.assertEqual(len(recorder.connections), 1)
        head, frames = client_frames(bytes(recorder.connections[0]))
        texts = [payload.decode("utf-8") for opcode, payload in frames if opcode == 1]
        types = [json.loads(t)["type"] for t in texts]
        self.assertEqual(set(types), {"hello", "heartbeat", "accepted", "status", "metrics",
                                      "finished"})  # fmt: skip
        self.assertTrue(all(opcode in (1, 8, 9, 10) for opcode, _ in frames))
        everything = head + b"".join(payload for _, payload in frames)
        secrets = [f"s3cret-callee-{i}" for i in range(5)] + [
            f"s3cret-caller-{i}" for i in range(5)
        ]
        for needle in [*secrets, "s3cret", "password", "pbx.test", "registrar", "{i:03d}",
                       "REGISTER", "INVITE", "SIP/2.0", "sip:", "Via:", "CSeq", "m=audio",
                       "RTP/AVP"]:  # fmt: skip
            self.assertNotIn(needle.encode(), everything, needle)
        # No RTP: no frame is binary, and none starts like an RTP version-2 packet.
        self.assertFalse([p for op, p in frames if op == 2])
        # The worker token only in the upgrade request's Authorization header.
        token = TOKENS["lab-1"].encode()
        self.assertIn(b"Authorization: Bearer " + token, head)
        self.assertNotIn(token, b"".join(payload for _, payload in frames))
        self.assertNotIn(token, head.split(b"\r\n")[0])  # not in the request line (URL)

    @defer.inlineCallbacks
    def test_through_tinyproxy(self) -> Any:
        binary = "/usr/sbin/tinyproxy" if os.path.exists("/usr/sbin/tinyproxy") else None
        binary = binary or ("/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None)
        if binary is None:
            from twisted.trial.unittest import SkipTest

            raise SkipTest("tinyproxy is not installed (Debian package: tinyproxy)")
        proxy_port = free_port()
        conf = self.dir / "tinyproxy.conf"
        conf.write_text(
            f"Port {proxy_port}\nListen 127.0.0.1\nTimeout 10\nMaxClients 8\nLogLevel Info\n"
            f"ConnectPort {self.port}\nBasicAuth worker pr0xy-pass\n"
        )
        log = (self.dir / "tinyproxy.log").open("wb")
        process = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=log, stderr=log)

        def stop_proxy() -> None:
            process.terminate()
            process.wait(5)
            log.close()

        self.addCleanup(stop_proxy)

        @defer.inlineCallbacks
        def listening() -> Any:
            yield deferLater(reactor, 0, lambda: None)
            try:
                socket.create_connection(("127.0.0.1", proxy_port), timeout=0.5).close()
            except OSError:
                return False
            return True

        yield self.wait_for(listening, "tinyproxy listening", timeout=10)
        gateway = yield self.start_gateway()
        self.addCleanup(gateway.stopService)
        engine = FakeEngine(reactor, window_s=0.5, windows=3)
        proxy = f"http://worker:pr0xy-pass@127.0.0.1:{proxy_port}"
        service, status = self.start_worker(engine, env={"HTTPS_PROXY": proxy})
        yield self.wait_for(lambda: defer.succeed(status.state is WorkerState.ONLINE), "ONLINE")
        code, reply = yield self.api("POST", "/runs", {"plan": sip_plan(1, 1)})
        run = reply["id"]

        @defer.inlineCallbacks
        def finished() -> Any:
            info = yield self.run_state(run)
            return info if info["state"] == "finished" else None

        info = yield self.wait_for(finished, "the run's report through the proxy")
        self.assertEqual(info["windows"], 3)
        # A proxy refusing the credentials (tinyproxy answers 401): ERROR naming the proxy.
        yield service.stopService()
        bad = f"http://worker:wrong@127.0.0.1:{proxy_port}"
        service2, status2 = self.start_worker(engine, env={"HTTPS_PROXY": bad})
        yield self.wait_for(
            lambda: defer.succeed(status2.state is WorkerState.ERROR), "ERROR", timeout=10
        )
        self.assertIn("rejected the credentials", status2.reason or "")
