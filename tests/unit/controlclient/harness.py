"""Worker and gateway in memory: ControlService's ClientService on a Clock, the gateway's site
behind an endpoint that connects them with ``twisted.test.iosim`` (no sockets).

Autobahn's own timers run through txaio on ``txaio.config.loop``; :func:`clock_loop` points it
at the test's Clock so that they, too, are deterministic and leave nothing on the real reactor.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import txaio
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.test import iosim
from twisted.web.server import Site
from zope.interface import implementer

from callmeter.config import Config, load_config

ADMIN = "admin-token-0123"
TOKENS = {"lab-1": "worker-token-abc", "lab-2": "worker-token-def"}


def worker_config(token: str = TOKENS["lab-1"], max_endpoints: int = 1000) -> Config:
    env = {
        "WORKER_TOKEN": token,
        "GATEWAY_URL": "ws://gw.test:8080/ws",
        "ALLOW_INSECURE_GATEWAY": "1",
        "SIP_IP": "127.0.0.1",
        "MAX_ENDPOINTS": str(max_endpoints),
    }
    return load_config(env, local_address=lambda address: True, cpu_count=1)


@contextmanager
def clock_loop(clock: Clock) -> Iterator[Clock]:
    before = txaio.config.loop  # type: ignore[attr-defined]
    txaio.config.loop = clock  # type: ignore[attr-defined]
    try:
        yield clock
    finally:
        txaio.config.loop = before  # type: ignore[attr-defined]


@implementer(IStreamClientEndpoint)
class MemoryLink:
    """Connects to ``site`` in memory; refuses while ``site`` is None. Records attempt times
    and every byte the worker writes (``worker_bytes``)."""

    def __init__(self, clock: Clock, site: Site | None = None) -> None:
        self.clock = clock
        self.site = site
        self.attempts: list[float] = []
        self.pumps: list[iosim.IOPump] = []
        self.worker_bytes = bytearray()

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        self.attempts.append(self.clock.seconds())
        if self.site is None:
            return fail(ConnectionRefusedError("refused"))
        client = factory.buildProtocol(None)  # type: ignore[arg-type]
        server = self.site.buildProtocol(None)
        client_io = iosim.makeFakeClient(client)
        original = client_io.write

        def write(data: bytes) -> None:
            self.worker_bytes.extend(data)
            original(data)

        client_io.write = write  # type: ignore[method-assign]
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, client_io, greet=False)
        self.pumps.append(pump)
        return succeed(client)

    def flush(self) -> None:
        for pump in self.pumps:
            pump.flush()

    def cut(self) -> None:
        """The network path dies: the connection is lost on both sides."""
        pump = self.pumps.pop()
        pump.clientIO.loseConnection()
        pump.flush()

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Move the clock in steps, moving the bytes after each."""
        self.flush()
        remaining = seconds
        while remaining > 1e-9:
            delta = min(step, remaining)
            self.clock.advance(delta)
            remaining -= delta
            self.flush()
