"""The control connection's CONNECT tunnel through a real tinyproxy, TLS inside the tunnel.

A stdlib TLS echo server on loopback holds a trustme certificate for ``localhost``; the client
is ``callmeter.control.proxy.gateway_endpoint`` driven by ``task.react`` in a child Python (the
same interpreter as the test run), which prints one JSON line with what happened.  The Twisted
reactor therefore never runs inside pytest.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from .conftest import Tinyproxy, free_loopback_port

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "worker", "s3cret-pass"

CLIENT = r"""
import json, sys, time
from twisted.internet import defer, ssl, task
from twisted.internet.protocol import Factory, Protocol
from callmeter.control.proxy import gateway_endpoint

args = json.loads(sys.argv[1])

class Echo(Protocol):
    def __init__(self):
        self.reply = b""
        self.done = defer.Deferred()
    def connectionMade(self):
        self.transport.write(b"ping through the tunnel\n")
    def dataReceived(self, data):
        self.reply += data
        if self.reply.endswith(b"\n") and not self.done.called:
            self.done.callback(self.reply)
    def connectionLost(self, reason):
        if not self.done.called:
            self.done.errback(reason)

@defer.inlineCallbacks
def main(reactor):
    started = time.monotonic()
    with open(args["ca"]) as pem:
        trust = ssl.Certificate.loadPEM(pem.read())
    tls = ssl.optionsForClientTLS(args["host"], trustRoot=trust)
    endpoint = gateway_endpoint(
        reactor, args["host"], args["port"], tls, args["proxy"], args["no_proxy"], 5.0
    )
    try:
        protocol = yield endpoint.connect(Factory.forProtocol(Echo))
        protocol.done.addTimeout(5.0, reactor)
        reply = yield protocol.done
        protocol.transport.loseConnection()
        result = {"ok": True, "reply": reply.decode(), "seconds": time.monotonic() - started}
    except Exception as error:
        result = {"ok": False, "type": type(error).__name__, "message": str(error),
                  "code": getattr(error, "code", None), "reason": getattr(error, "reason", None)}
    print(json.dumps(result))

task.react(main)
"""


@dataclass
class EchoServer:
    port: int
    ca_file: Path


def _serve(listener: socket.socket, context: ssl.SSLContext) -> None:
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_echo, args=(raw, context), daemon=True).start()


def _echo(raw: socket.socket, context: ssl.SSLContext) -> None:
    raw.settimeout(10)
    try:
        with context.wrap_socket(raw, server_side=True) as conn:
            data = b""
            while not data.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(b"echo: " + data)
    except (OSError, ssl.SSLError):
        return


def _tls_server(tmp_path: Path, name: str) -> Iterator[EchoServer]:
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(name).configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    thread = threading.Thread(target=_serve, args=(listener, context), daemon=True)
    thread.start()
    yield EchoServer(listener.getsockname()[1], ca_file)
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread (Linux)
    listener.close()
    thread.join(timeout=5)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[EchoServer]:
    """A TLS echo server whose certificate names ``localhost``."""
    yield from _tls_server(tmp_path, "localhost")


@pytest.fixture
def impostor(tmp_path: Path) -> Iterator[EchoServer]:
    """A TLS echo server, trusted CA, but its certificate names another host."""
    yield from _tls_server(tmp_path, "other.example")


def run_client(
    server: EchoServer, proxy: str | None, no_proxy: tuple[str, ...] = ()
) -> dict[str, Any]:
    args = {
        "host": "localhost",
        "port": server.port,
        "ca": str(server.ca_file),
        "proxy": proxy,
        "no_proxy": list(no_proxy),
    }
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    completed = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps(args)],
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    lines = completed.stdout.decode().strip().splitlines()
    assert lines, completed.stderr.decode()
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def with_credentials(proxy: Tinyproxy, user: str, password: str) -> str:
    return f"http://{user}:{password}@127.0.0.1:{proxy.port}"


def test_tls_through_the_tunnel_carries_bytes_both_ways(
    tinyproxy: Callable[..., Tinyproxy], gateway: EchoServer
) -> None:
    proxy = tinyproxy(connect_ports=[gateway.port])
    result = run_client(gateway, proxy.url)
    assert result["ok"], result
    assert result["reply"] == "echo: ping through the tunnel\n"
    assert f"CONNECT localhost:{gateway.port} HTTP/1.1" in proxy.log.read_text()
    print(f"connect + CONNECT + TLS + echo through tinyproxy: {result['seconds'] * 1000:.1f} ms")


def test_the_gateway_host_name_is_verified_inside_the_tunnel(
    tinyproxy: Callable[..., Tinyproxy], impostor: EchoServer
) -> None:
    proxy = tinyproxy(connect_ports=[impostor.port])
    result = run_client(impostor, proxy.url)
    assert not result["ok"], result
    assert result["type"] == "VerificationError", result  # from service-identity
    assert "DNSMismatch" in result["message"]
    assert f"CONNECT localhost:{impostor.port} HTTP/1.1" in proxy.log.read_text()


def test_basic_auth_with_the_right_credentials(
    tinyproxy: Callable[..., Tinyproxy], gateway: EchoServer
) -> None:
    proxy = tinyproxy(connect_ports=[gateway.port], basic_auth=(USER, PASSWORD))
    result = run_client(gateway, with_credentials(proxy, USER, PASSWORD))
    assert result["ok"], result
    assert result["reply"] == "echo: ping through the tunnel\n"


def test_basic_auth_with_wrong_credentials(
    tinyproxy: Callable[..., Tinyproxy], gateway: EchoServer
) -> None:
    proxy = tinyproxy(connect_ports=[gateway.port], basic_auth=(USER, PASSWORD))
    result = run_client(gateway, with_credentials(proxy, USER, "wrong-pass"))
    assert result["type"] == "ProxyAuthRequired", result
    # tinyproxy 1.11 answers wrong credentials with "401 Unauthorized", missing ones with 407.
    assert (result["code"], result["reason"]) == (401, "Unauthorized")
    assert result["message"] == f"proxy 127.0.0.1:{proxy.port} rejected the credentials (401)"
    assert "wrong-pass" not in json.dumps(result)


def test_basic_auth_without_credentials(
    tinyproxy: Callable[..., Tinyproxy], gateway: EchoServer
) -> None:
    proxy = tinyproxy(connect_ports=[gateway.port], basic_auth=(USER, PASSWORD))
    result = run_client(gateway, proxy.url)
    assert result["type"] == "ProxyAuthRequired", result
    assert (result["code"], result["reason"]) == (407, "Proxy Authentication Required")
    assert result["message"] == f"proxy 127.0.0.1:{proxy.port} requires authentication (407)"


def test_a_port_the_proxy_does_not_allow_is_refused_with_403(
    tinyproxy: Callable[..., Tinyproxy], gateway: EchoServer
) -> None:
    """tinyproxy 1.11 answers "HTTP/1.1 403 Access violation" to a CONNECT outside ConnectPort."""
    proxy = tinyproxy(connect_ports=[gateway.port + 1])
    result = run_client(gateway, proxy.url)
    assert result["type"] == "ProxyRefused", result
    assert (result["code"], result["reason"]) == (403, "Access violation")
    assert result["message"] == (
        f"proxy 127.0.0.1:{proxy.port} refused CONNECT to localhost:{gateway.port} "
        '(403 Forbidden): "Access violation"'
    )


def test_no_proxy_goes_direct(gateway: EchoServer) -> None:
    dead_proxy = f"http://127.0.0.1:{free_loopback_port()}"
    assert run_client(gateway, dead_proxy)["type"] == "ProxyUnreachable"
    result = run_client(gateway, dead_proxy, no_proxy=("localhost",))
    assert result["ok"], result
