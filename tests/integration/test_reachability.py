"""Every listening callee answers at its documented address, whatever the process count.

SPEC.md: a group with no registrar listens on SIP_IP:SIP_PORT and is reached as
``sip:USER@SIP_IP:SIP_PORT``; the README adds TLS on SIP_PORT + 1.  A peer outside the worker (a
plain socket UAC written here, nothing of ours) calls every callee of a two-process run over
UDP, TCP and TLS: INVITE, 200, ACK, BYE, 200 (RFC 3261 13, 15).
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from tests.integration.test_cli_run import CALLMETER, ROOT, env

CALLEES = 6


def free_port_pair() -> int:
    """A port P free for UDP and TCP, with P + 1 free for TCP (TLS)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
        if port >= 65534:
            continue
        try:
            for candidate in (port, port + 1):
                with socket.socket() as tcp:
                    tcp.bind(("127.0.0.1", candidate))
            return port
        except OSError:
            continue
    raise AssertionError("no free port pair")


class Uac:
    """Just enough of a UAC to place one call and hang it up, over one transport."""

    def __init__(self, transport: str, port: int) -> None:
        self.transport = transport
        self.target = ("127.0.0.1", port + 1 if transport == "tls" else port)
        self.buffer = b""
        if transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
        else:
            raw = socket.create_connection(self.target, timeout=5)
            if transport == "tls":
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # the worker's self-signed certificate
                raw = context.wrap_socket(raw)
            self.sock = raw
        self.sock.settimeout(5)
        self.local = self.sock.getsockname()

    def send(self, text: str) -> None:
        data = text.encode()
        if self.transport == "udp":
            self.sock.sendto(data, self.target)
        else:
            self.sock.sendall(data)

    def receive(self) -> str:
        if self.transport == "udp":
            return self.sock.recv(65535).decode()
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if sep:
                match = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
                length = int(match.group(1)) if match else 0
                if len(rest) >= length:
                    self.buffer = rest[length:]
                    return (head + sep + rest[:length]).decode()
            chunk = self.sock.recv(65535)
            if not chunk:
                raise AssertionError("connection closed")
            self.buffer += chunk

    def final(self, method: str) -> str:
        """The final response to our ``method`` (provisionals skipped)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = self.receive()
            status = message.split(" ", 2)[1] if message.startswith("SIP/2.0") else ""
            if status and not status.startswith("1") and f" {method}\r\n" in message:
                return message
        raise AssertionError(f"no final response to {method}")

    def request(self, method: str, uri: str, call_id: str, cseq: int, to: str, body: str) -> str:
        via_transport = self.transport.upper()
        host, port = self.local[0], self.local[1]
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{via_transport} {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport",
            "Max-Forwards: 70",
            f"From: <sip:outside@{host}>;tag=outside-{call_id[:8]}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:outside@{host}:{port};transport={self.transport}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body

    def call(self, user: str, sip_port: int, rtp_port: int) -> tuple[str, str]:
        """INVITE, ACK and BYE to ``user``: the INVITE's and the BYE's final status."""
        port = sip_port + 1 if self.transport == "tls" else sip_port
        uri = f"sip:{user}@127.0.0.1:{port}"
        if self.transport != "udp":
            uri += f";transport={self.transport}"
        call_id = uuid.uuid4().hex
        sdp = (
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
        to = f"<sip:{user}@127.0.0.1>"
        self.send(self.request("INVITE", uri, call_id, 1, to, sdp))
        answer = self.final("INVITE")
        status = answer.split(" ", 2)[1]
        if status != "200":
            return status, ""
        to_header = re.search(r"(?im)^(?:to|t)\s*:\s*(.+)$", answer)
        assert to_header is not None
        dialog_to = to_header.group(1).strip()
        self.send(self.request("ACK", uri, call_id, 1, dialog_to, ""))
        self.send(self.request("BYE", uri, call_id, 2, dialog_to, ""))
        bye = self.final("BYE")
        return status, bye.split(" ", 2)[1]

    def close(self) -> None:
        self.sock.close()


def wait_until(probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_every_callee_of_a_two_process_run_answers_over_udp_tcp_and_tls(tmp_path: Path) -> None:
    port = free_port_pair()
    plan = tmp_path / "callees.json"
    plan.write_text(
        json.dumps(
            {
                "name": "reachable",
                "duration_s": 20,
                "groups": [
                    {"name": "phones", "role": "callee", "count": CALLEES, "user": "phone-{i}"},
                    # A caller group too, so that both processes have endpoints.
                    {
                        "name": "callers",
                        "role": "caller",
                        "count": 2,
                        "user": "c-{i}",
                        "call": {"to": "phones", "duration_s": 2, "rate_per_s": 5},
                    },
                ],
                # The outside UAC sends no RTP: its calls are about signalling.
                "pass": {"call_success_pct_min": 100, "media_required": False},
            }
        )
    )
    report_path = tmp_path / "r.json"
    process = subprocess.Popen(
        [*CALLMETER, "run", str(plan), "--processes", "2", "--plain", "--report", str(report_path)],
        env={**env(), "SIP_PORT": str(port)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    rtp_sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp_sink.bind(("127.0.0.1", 0))
    try:

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port + 1), timeout=0.5).close()
                return True
            except OSError:
                return process.poll() is not None

        wait_until(listening, 30)
        assert process.poll() is None, process.communicate()
        results: dict[tuple[str, int], tuple[str, str]] = {}
        for transport in ("udp", "tcp", "tls"):
            uac = Uac(transport, port)
            try:
                for index in range(CALLEES):
                    results[(transport, index)] = uac.call(
                        f"phone-{index}", port, rtp_sink.getsockname()[1]
                    )
            finally:
                uac.close()
        assert results == {key: ("200", "200") for key in results}, results
        assert len(results) == 3 * CALLEES
    finally:
        stdout, stderr = process.communicate(timeout=60)
        rtp_sink.close()
    assert process.returncode == 0, stdout + stderr
    report = json.loads(report_path.read_text())
    phones = report["groups"]["phones"]["sip"]["calls"]
    assert phones["established"] == 3 * CALLEES + 2  # ours, and the plan's own two callers
    assert report["processes"] == 2
