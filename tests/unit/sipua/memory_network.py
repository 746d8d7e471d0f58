"""An in-memory SIP network for user-agent tests: stacks exchange serialized bytes on a Clock.

Every message goes through ``to_bytes()`` and ``parse_message()``, so the tests exercise the
wire format, and can drop or delay messages to test retransmissions.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Clock

from callmeter.sip.message import SipMessage, SipRequest, SipResponse, parse_message
from callmeter.sip.stack import SipStack
from callmeter.sip.transport import Origin, Target, _stamp_via

Filter = Callable[[SipMessage, int], bool]


class MemoryNetwork:
    """Hosts at 127.0.0.1:<port>; ``drop(message, port)`` True drops a message."""

    def __init__(self, clock: Clock, latency: float = 0.01) -> None:
        self.clock = clock
        self.latency = latency
        self.stacks: dict[int, SipStack] = {}
        self.trace: list[tuple[float, int, int, str]] = []
        self.drop: Filter = lambda message, port: False

    def attach(self, port: int, transport: str = "udp") -> SipStack:
        network = self

        class _Transport:
            ports = {transport: port}

            def send(
                self,
                message: SipMessage,
                target: Target,
                on_error: Callable[[str], None] | None = None,
            ) -> None:
                network.deliver(message, port, target.port, target.transport, on_error)

            def reply(
                self,
                response: SipResponse,
                origin: Origin,
                on_error: Callable[[str], None] | None = None,
            ) -> None:
                network.deliver(response, port, origin.port, origin.transport, on_error)

        stack = SipStack(self.clock, _Transport(), "127.0.0.1")
        self.stacks[port] = stack
        return stack

    def deliver(
        self,
        message: SipMessage,
        source: int,
        destination: int,
        transport: str,
        on_error: Callable[[str], None] | None,
    ) -> None:
        data = message.to_bytes()
        first_line = data.split(b"\r\n", 1)[0].decode()
        self.trace.append((self.clock.seconds(), source, destination, first_line))
        receiver = self.stacks.get(destination)
        if receiver is None:
            if on_error is not None:  # as a socket reports it: after the send returned
                self.clock.callLater(0, on_error, "unreachable")
            return
        if self.drop(message, destination):
            return

        def arrive() -> None:
            parsed = parse_message(data)
            origin = Origin(transport, "127.0.0.1", source)
            if isinstance(parsed, SipRequest):
                _stamp_via(parsed.headers, origin)
            receiver.on_message(parsed, origin)

        self.clock.callLater(self.latency, arrive)

    def lines(self) -> list[str]:
        return [line for _, _, _, line in self.trace]
