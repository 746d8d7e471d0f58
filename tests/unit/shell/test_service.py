"""makeService(): the MultiService and what it holds today."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from twisted.application.service import Application, IServiceCollection
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver

from callmeter.config import load_config
from callmeter.control.service import ControlService
from callmeter.health import HealthService
from callmeter.service import WorkerService, makeService
from callmeter.systemd import SystemdService

from .notify_socket import NotifySocket

# Never the default wss://wg.callmeter.io: not even a DNS query may leave the machine.
LOCAL_GATEWAY = {"GATEWAY_URL": "ws://127.0.0.1:9/ws", "ALLOW_INSECURE_GATEWAY": "1"}


def test_make_service_composes_health_then_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify = NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
    config = load_config(
        {"WORKER_TOKEN": "t", "SIP_IP": "127.0.0.1", "HEALTH_PORT": "0", **LOCAL_GATEWAY}
    )
    reactor = MemoryReactorClock()
    worker = makeService(
        config, reactor, environ={"WATCHDOG_USEC": "10000000"}, log_out=io.StringIO()
    )
    assert isinstance(worker, WorkerService)
    children = list(IServiceCollection(worker))
    assert [type(child) for child in children] == [HealthService, ControlService, SystemdService]

    worker.privilegedStartService()
    worker.startService()
    assert notify.messages() == []  # READY=1 waits for the reactor to run
    reactor.run()
    assert reactor.tcpServers[0][0] == 0 and reactor.tcpServers[0][3] == "127.0.0.1"
    # The control plane started first and is connecting to the gateway.
    assert notify.messages() == [f"READY=1\nSTATUS=CONNECTING\nMAINPID={os.getpid()}", "WATCHDOG=1"]
    reactor.advance(5)
    assert notify.messages()[-1] == "WATCHDOG=1" and len(notify.messages()) == 3
    worker.stopService()
    assert notify.messages()[-1] == "STOPPING=1"
    notify.close()


def test_worker_gives_twistd_application_its_log_observer() -> None:
    config = load_config(
        {"WORKER_TOKEN": "t", "SIP_IP": "127.0.0.1", "LOG_FORMAT": "json", **LOCAL_GATEWAY}
    )
    worker = makeService(config, MemoryReactorClock(), environ={}, log_out=io.StringIO())
    application = Application("callmeter")
    worker.setServiceParent(application)
    assert application.getComponent(ILogObserver) is not None
