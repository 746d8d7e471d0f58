"""WorkerStatus, the log observers, the `callmeter` command and the twistd plugin."""

from __future__ import annotations

import io
import json

import pytest
from twisted.application.service import IServiceMaker
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher

from callmeter import __version__
from callmeter.cli import main
from callmeter.logs import make_observer
from callmeter.options import OPTION_VARIABLES, WorkerOptions
from callmeter.status import WorkerState, WorkerStatus


def test_status_notifies_only_on_change() -> None:
    status = WorkerStatus(Clock())
    seen: list[str] = []
    status.subscribe(lambda s: seen.append(s.summary()))
    status.set_state(WorkerState.CONNECTING)
    status.set_state(WorkerState.CONNECTING)
    status.set_state(WorkerState.ERROR, "connection refused")
    status.set_load(10, "run-1")
    status.set_load(10, "run-1")
    status.set_state(WorkerState.ONLINE)
    assert seen == [
        "CONNECTING",
        "ERROR: connection refused",
        "ERROR: connection refused (run run-1, 10 endpoints)",
        "ONLINE (run run-1, 10 endpoints)",
    ]
    assert status.reason is None


def emit(observer_level: str, fmt: str) -> str:
    out = io.StringIO()
    publisher = LogPublisher(make_observer(observer_level, fmt, out))
    log = Logger(namespace="callmeter.test", observer=publisher)
    log.debug("debug line {n}", n=1)
    log.info("registered {count} endpoints", count=50)
    log.warn("port range {low}-{high} nearly full", low=10000, high=10099)
    return out.getvalue()


def test_text_logs_filter_by_level() -> None:
    text = emit("info", "text")
    assert "debug line" not in text
    assert "[callmeter.test#info] registered 50 endpoints" in text
    assert "nearly full" in text
    assert "debug line 1" in emit("debug", "text")
    assert "registered" not in emit("warn", "text")


def test_json_logs_are_one_object_per_line_with_fields() -> None:
    lines = emit("info", "json").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["level"] for r in records] == ["info", "warn"]
    assert records[0]["message"] == "registered 50 endpoints"
    assert records[0]["count"] == 50
    assert records[0]["namespace"] == "callmeter.test"
    assert records[1]["low"] == 10000 and records[0]["time"].endswith("Z")


def test_json_logs_carry_tracebacks() -> None:
    out = io.StringIO()
    log = Logger(namespace="t", observer=LogPublisher(make_observer("info", "json", out)))
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.failure("boom")
    record = json.loads(out.getvalue())
    assert record["level"] == LogLevel.critical.name
    assert "ZeroDivisionError" in record["traceback"]


def test_cli_version_and_config() -> None:
    out = io.StringIO()
    assert main(["version"], {}, out) == 0
    assert out.getvalue() == f"callmeter-worker {__version__}\n"

    out = io.StringIO()
    env = {"WORKER_TOKEN": "Zq!9secret", "SIP_IP": "127.0.0.1", "LOG_FORMAT": "json"}
    assert main(["config"], env, out) == 0
    assert "Zq!9secret" not in out.getvalue()
    assert "WORKER_TOKEN             (set, from WORKER_TOKEN)" in out.getvalue()
    assert "LOG_FORMAT               json" in out.getvalue()


def test_cli_config_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"], {"WORKER_TOKEN": "x", "HEALTH_PORT": "99999"}, io.StringIO()) == 2
    assert capsys.readouterr().err == (
        "callmeter: HEALTH_PORT='99999' is invalid: a port number 0..65535\n"
    )
    assert main(["config", "--no-token"], {"SIP_IP": "127.0.0.1"}, io.StringIO()) == 0


def test_cli_without_command_prints_help_and_exits_2() -> None:
    out = io.StringIO()
    assert main([], {}, out) == 2
    assert "usage: callmeter" in out.getvalue()


def test_twistd_plugin_is_found_with_its_options() -> None:
    from twisted.plugin import getPlugins

    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    maker = makers["callmeter"]
    options = maker.options()
    options.parseOptions(["--health-port", "4040", "--log-format", "json"])
    assert isinstance(options, WorkerOptions)
    overrides = options.overrides()
    assert overrides["HEALTH_PORT"] == "4040" and overrides["LOG_FORMAT"] == "json"
    assert overrides["SIP_IP"] is None
    assert set(overrides) == set(OPTION_VARIABLES.values())


def test_twistd_plugin_bad_variable_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from twisted.plugins.callmeter_plugin import serviceMaker

    monkeypatch.setenv("WORKER_TOKEN", "x")
    monkeypatch.setenv("RTP_PORT_MIN", "40000")
    monkeypatch.setenv("RTP_PORT_MAX", "30000")
    options = serviceMaker.options()
    options.parseOptions([])
    with pytest.raises(SystemExit) as caught:
        serviceMaker.makeService(options)
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "callmeter: RTP_PORT_MIN=40000..30000 is invalid: "
        "RTP_PORT_MIN must not exceed RTP_PORT_MAX\n"
    )
