"""A real AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import socket
from pathlib import Path


class NotifySocket:
    """Binds a datagram socket at ``path``; ``messages()`` returns what arrived so far."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(self.path)
        self._socket.setblocking(False)
        self._received: list[str] = []

    def messages(self) -> list[str]:
        while True:
            try:
                self._received.append(self._socket.recv(4096).decode())
            except BlockingIOError:
                return list(self._received)

    def close(self) -> None:
        self._socket.close()
