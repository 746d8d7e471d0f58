"""/health and /metrics, driven through twisted.web's real request handling in memory."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.web.server import Site

from callmeter import __version__
from callmeter.health import HealthService, StatusCollector, health_site
from callmeter.status import WorkerState, WorkerStatus


def make_site() -> tuple[Site, WorkerStatus, Clock]:
    clock = Clock()
    clock.advance(1000)
    status = WorkerStatus(clock)
    registry = CollectorRegistry()
    registry.register(StatusCollector(status))
    site = health_site(status, registry)
    site.timeOut = None  # no idle-timeout timer on the global reactor from these in-memory requests
    return site, status, clock


def get(site: Site, path: str) -> tuple[int, dict[str, str], bytes]:
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    raw = transport.value()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    code = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        chunks, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2 :]
        body = b"".join(chunks)
    return code, headers, body


def test_health_json_exactly_as_spec() -> None:
    site, status, clock = make_site()
    clock.advance(12.5)
    code, headers, body = get(site, "/health")
    assert code == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "status": "OFFLINE",
        "connected": False,
        "version": __version__,
        "uptime_s": 12.5,
        "active_endpoints": 0,
        "test_run": None,
    }
    status.set_state(WorkerState.BUSY)
    status.set_connected(True)
    status.set_load(120, "run-7")
    code, _, body = get(site, "/health")
    assert code == 200
    assert json.loads(body) | {"uptime_s": 0} == {
        "status": "BUSY",
        "connected": True,
        "version": __version__,
        "uptime_s": 0,
        "active_endpoints": 120,
        "test_run": "run-7",
    }


def test_health_is_503_in_error_with_the_reason() -> None:
    site, status, _ = make_site()
    status.set_state(WorkerState.ERROR, "TLS handshake failed")
    code, _, body = get(site, "/health")
    assert code == 503
    document = json.loads(body)
    assert document["status"] == "ERROR" and document["reason"] == "TLS handshake failed"
    status.set_state(WorkerState.CONNECTING)
    assert get(site, "/health")[0] == 200


def test_metrics_is_prometheus_text() -> None:
    site, status, clock = make_site()
    status.set_state(WorkerState.ONLINE)
    status.set_connected(True)
    status.set_load(42, "r1")
    clock.advance(3)
    code, headers, body = get(site, "/metrics")
    assert code == 200
    assert headers["content-type"].startswith("text/plain")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    assert samples[("callmeter_worker_state", (("state", "ONLINE"),))] == 1.0
    assert samples[("callmeter_worker_state", (("state", "OFFLINE"),))] == 0.0
    assert samples[("callmeter_worker_connected", ())] == 1.0
    assert samples[("callmeter_worker_active_endpoints", ())] == 42.0
    assert samples[("callmeter_worker_uptime_seconds", ())] == 3.0
    assert samples[("callmeter_worker_info", (("version", __version__),))] == 1.0


def test_unknown_path_is_404() -> None:
    site, _, _ = make_site()
    assert get(site, "/nope")[0] == 404


def test_health_service_listens_while_running() -> None:
    site, _, _ = make_site()
    reactor = MemoryReactor()
    service = HealthService(site, 3030, "127.0.0.1", reactor)
    service.privilegedStartService()
    service.startService()
    (port, factory, _backlog, interface) = reactor.tcpServers[0]
    assert (port, factory, interface) == (3030, site, "127.0.0.1")
    service.stopService()
    assert service.listening is None
