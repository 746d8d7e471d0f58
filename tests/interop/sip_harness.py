"""Our SIP stack on real loopback sockets, for interop tests against SIPp and Kamailio."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from callmeter.sip.call import IncomingCall, OutgoingCall
from callmeter.sip.digest import DigestClient
from callmeter.sip.message import SipMessage, SipRequest
from callmeter.sip.registration import Registration
from callmeter.sip.stack import SipStack
from callmeter.sip.transaction import ServerInvite
from callmeter.sip.transport import Origin, SipTransportLayer, Target, TlsSettings
from tests.unit.sipua.sdp_media import SdpOnlyMedia


class TracedLayer(SipTransportLayer):
    """Keeps a text trace of every message in and out, written out when a test fails."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace: list[str] = []

    def received(self, data: bytes, origin: Origin) -> None:
        self.trace.append(
            f"<<< from {origin.transport}:{origin.host}:{origin.port}\n"
            + data.decode(errors="replace")
        )
        super().received(data, origin)

    def send(self, message: SipMessage, target: Target, on_error: Any = None) -> None:
        self.trace.append(
            f">>> to {target.transport}:{target.host}:{target.port}\n"
            + message.to_bytes().decode(errors="replace")
        )
        super().send(message, target, on_error)


class Agent:
    """A stack listening on one transport, with callees answering as ``answer_delay`` says."""

    def __init__(
        self,
        transport: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsSettings | None = None,
        answer_delay: float = 0.0,
    ) -> None:
        self.layer = TracedLayer(reactor, host, self._on_message, tls=tls)
        self.port = self.layer.listen(transport, port)
        self.transport = transport
        self.stack = SipStack(reactor, self.layer, host)
        self.answer_delay = answer_delay
        self.incoming: list[IncomingCall] = []

    def _on_message(self, message: SipMessage, origin: Origin) -> None:
        self.stack.on_message(message, origin)

    def answer_as(self, user: str) -> None:
        def on_invite(request: SipRequest, tx: ServerInvite, origin: Origin) -> IncomingCall:
            call = IncomingCall(
                self.stack,
                SdpOnlyMedia(42000),
                request,
                tx,
                origin,
                user=user,
                answer_delay=self.answer_delay,
            )
            self.incoming.append(call)
            call.start()
            return call

        self.stack.add_endpoint(user, on_invite)

    def call(
        self,
        user: str,
        to_uri: str,
        target: Target,
        password: str | None = None,
        domain: str = "127.0.0.1",
    ) -> OutgoingCall:
        credentials = DigestClient(user, password) if password else None
        call = OutgoingCall(
            self.stack,
            SdpOnlyMedia(),
            user=user,
            from_uri=f"sip:{user}@{domain}",
            to_uri=to_uri,
            target=target,
            credentials=credentials,
            setup_timeout=10,
        )
        return call

    def registration(
        self, user: str, password: str, domain: str, target: Target, expires: int = 300
    ) -> Registration:
        return Registration(
            self.stack,
            f"sip:{user}@{domain}",
            target,
            user=user,
            credentials=DigestClient(user, password),
            expires=expires,
        )

    def close(self) -> defer.Deferred[Any]:
        for call in self.incoming:
            call.hangup()
        self.stack.shutdown()
        return self.layer.close()

    def write_trace(self, path: Path) -> None:
        path.write_text("\n".join(self.layer.trace))


@defer.inlineCallbacks
def wait_for_exit(process: subprocess.Popen[bytes], timeout: float) -> Any:
    """Poll a child process from the reactor; kill it after ``timeout`` seconds."""
    waited = 0.0
    while process.poll() is None and waited < timeout:
        yield deferLater(reactor, 0.1, lambda: None)
        waited += 0.1
    if process.poll() is None:
        process.kill()
        process.wait()
    return process.returncode


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)
