"""The gateway's HTTP JSON API on ``/api`` (SPEC.md "Reference gateway")::

    GET  /api/workers                     -> [{"id", "name", "state", "last_heartbeat",
                                               "max_endpoints", "active_endpoints", ...}]
    POST /api/runs   {"plan": PLAN, "worker": ID | null}   -> 201 {"id": RUN}
    GET  /api/runs/RUN                    -> {"id", "state", "worker", "windows": N, "report"}
    GET  /api/runs/RUN/windows?after=SEQ  -> [WINDOW, ...]  in order, no gap
    POST /api/runs/RUN/cancel             -> 202

Every call needs ``Authorization: Bearer ADMIN_TOKEN`` (RFC 6750 section 2.1; a missing or
wrong token is a 401 with ``WWW-Authenticate: Bearer``, section 3). Errors are JSON
``{"error": "field: problem"}``: a bad plan is a 400 naming the field.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from callmeter.gateway.server import ApiError, Gateway

__all__ = ["MAX_BODY_BYTES", "ApiResource"]

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body read (a plan is well under this)."""

log = Logger()


class ApiResource(Resource):
    """``/api``: every route in one leaf resource, dispatched on method and path."""

    isLeaf = True

    def __init__(self, gateway: Gateway, admin_token: str) -> None:
        super().__init__()
        self._gateway = gateway
        self._admin_token = admin_token.encode()

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if not self._authorized(request):
            request.setHeader(b"www-authenticate", b'Bearer realm="callmeter-gateway"')
            return self._encode(
                request, 401, {"error": "authorization: a valid admin token needed"}
            )
        path = [segment.decode("utf-8", "replace") for segment in request.postpath or []]
        while path and path[-1] == "":
            path.pop()
        method = (request.method or b"").decode("ascii", "replace")
        handler = self._route(method, path, request)
        if handler is None:
            return self._encode(request, 404, {"error": "path: no such API resource"})
        d = maybeDeferred(handler)
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

        def ok(result: tuple[int, Any]) -> None:
            if not finished[0]:
                self._reply(request, *result)

        def failed(failure: Failure) -> None:
            if failure.check(ApiError):
                error: ApiError = failure.value  # type: ignore[assignment]
                code, body = error.status, {"error": error.message}
            else:
                log.failure("API request {method} {path} failed", failure, method=method, path=path)
                code, body = 500, {"error": "internal error"}
            if not finished[0]:
                self._reply(request, code, body)

        d.addCallbacks(ok, failed)
        return NOT_DONE_YET

    def _authorized(self, request: Request) -> bool:
        header = request.getHeader(b"authorization") or b""
        if not header.startswith(b"Bearer "):
            return False
        return hmac.compare_digest(header[len(b"Bearer ") :].strip(), self._admin_token)

    def _route(self, method: str, path: list[str], request: Request) -> Callable[[], Any] | None:
        gateway = self._gateway
        if path == ["workers"]:
            return self._method(method, "GET", lambda: (200, gateway.workers_json()))
        if path == ["runs"]:
            return self._method(method, "POST", lambda: self._submit(request))
        if len(path) == 2 and path[0] == "runs":
            return self._method(method, "GET", lambda: self._run(path[1]))
        if len(path) == 3 and path[0] == "runs" and path[2] == "windows":
            return self._method(method, "GET", lambda: self._windows(path[1], request))
        if len(path) == 3 and path[0] == "runs" and path[2] == "cancel":
            return self._method(method, "POST", lambda: self._cancel(path[1]))
        return None

    @staticmethod
    def _method(method: str, allowed: str, handler: Callable[[], Any]) -> Callable[[], Any]:
        if method == allowed or (allowed == "GET" and method == "HEAD"):
            return handler

        def refuse() -> None:
            raise ApiError(405, f"method: use {allowed}")

        return refuse

    def _submit(self, request: Request) -> Deferred[tuple[int, Any]]:
        content = request.content
        raw = content.read(MAX_BODY_BYTES + 1) if content is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"body: over {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "body: not a JSON object") from None
        d: Deferred[tuple[int, Any]] = self._gateway.submit(body).addCallback(
            lambda run: (201, {"id": run})
        )
        return d

    def _run(self, run: str) -> Deferred[tuple[int, Any]]:
        def shape(info: dict[str, Any] | None) -> tuple[int, Any]:
            if info is None:
                raise ApiError(404, "run: no such run")
            keys = ("id", "state", "worker", "windows", "report", "reason", "created")
            return 200, {key: info[key] for key in keys}

        d: Deferred[tuple[int, Any]] = self._gateway.store.get_run(run).addCallback(shape)
        return d

    def _windows(self, run: str, request: Request) -> Deferred[tuple[int, Any]]:
        values = (request.args or {}).get(b"after", [b"0"])
        try:
            after = int(values[0])
        except ValueError:
            raise ApiError(400, "after: expected an integer") from None

        def check(info: dict[str, Any] | None) -> Deferred[list[dict[str, Any]]]:
            if info is None:
                raise ApiError(404, "run: no such run")
            return self._gateway.store.windows_after(run, after)

        d: Deferred[tuple[int, Any]] = (
            self._gateway.store.get_run(run).addCallback(check).addCallback(lambda w: (200, w))
        )
        return d

    def _cancel(self, run: str) -> Deferred[tuple[int, Any]]:
        d: Deferred[tuple[int, Any]] = self._gateway.cancel(run).addCallback(
            lambda _: (202, {"id": run, "cancel": "requested"})
        )
        return d

    @staticmethod
    def _encode(request: Request, code: int, body: Any) -> bytes:
        request.setResponseCode(code)
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        return b"" if request.method == b"HEAD" else data

    def _reply(self, request: Request, code: int, body: Any) -> None:
        data = self._encode(request, code, body)
        if data:
            request.write(data)
        request.finish()
