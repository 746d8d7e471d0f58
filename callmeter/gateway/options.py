"""Options of ``twistd callmeter-gateway`` and the secret files they name.

Import-light on purpose: the twistd plugin imports it to build its plugin cache.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.python import usage

__all__ = ["GatewayOptions", "read_admin_token", "read_worker_tokens"]

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
DEFAULT_DB = "callmeter-gateway.sqlite3"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_token(token: str, where: str) -> None:
    if not token or any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
        raise ValueError(f"{where}: the token must be printable ASCII without spaces")


def read_worker_tokens(path: str) -> dict[str, str]:
    """``NAME TOKEN`` per line; blank lines and ``#`` comments ignored. Errors name the line,
    never the token."""
    tokens: dict[str, str] = {}
    seen: set[str] = set()
    text = Path(path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{where}: expected NAME TOKEN")
        name, token = parts
        if not _NAME.fullmatch(name):
            raise ValueError(f"{where}: a worker name is letters, digits, '.', '_', '-'")
        if name in tokens:
            raise ValueError(f"{where}: worker {name} listed twice")
        _check_token(token, where)
        if token in seen:
            raise ValueError(f"{where}: token of {name} is also another worker's")
        seen.add(token)
        tokens[name] = token
    if not tokens:
        raise ValueError(f"{path}: no worker tokens")
    return tokens


def read_admin_token(path: str) -> str:
    token = Path(path).read_text(encoding="utf-8").strip()
    _check_token(token, path)
    return token


class GatewayOptions(usage.Options):
    """The options of ``twistd callmeter-gateway``."""

    optParameters = [
        ["listen", None, DEFAULT_LISTEN, "server endpoint: ssl:PORT:privateKey=..:certKey=.."],
        ["db", None, DEFAULT_DB, "SQLite database of runs, windows and reports"],
        ["worker-tokens", None, None, "file of 'NAME TOKEN' lines, one per worker"],
        ["admin-token-file", None, None, "file holding the API's admin token"],
    ]

    def postOptions(self) -> None:
        for option in ("worker-tokens", "admin-token-file"):
            if not self[option]:
                raise usage.UsageError(f"--{option} is required")
        try:
            self["tokens"] = read_worker_tokens(self["worker-tokens"])
            self["admin-token"] = read_admin_token(self["admin-token-file"])
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise usage.UsageError(str(error)) from None
