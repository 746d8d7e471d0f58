"""The .deb under a real systemd: install, start, health, stop, watchdog, purge.

Boots a Debian 12 container with systemd-nspawn (see nspawn.py), installs
``$CALLMETER_DEB`` (built by .ci/system-test) with apt and drives callmeter-worker.service
with systemctl. Needs root, systemd-nspawn, debootstrap and nsenter: without them the tests
are skipped, or fail when CI=true. The tests share one container and run in file order;
the last one purges the package.

Logs (the container's journal, the console, figures.json) go to $CALLMETER_TEST_LOGDIR,
by default ``system-test-logs`` next to the .deb.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.nspawn import Container, apt_mirror, deb_dependencies, ensure_rootfs, wait_for

pytestmark = pytest.mark.system

UNIT = "callmeter-worker.service"
UNIT_PATH = "/lib/systemd/system/callmeter-worker.service"
CONF = "/etc/callmeter/worker.env"
DROPIN = "/etc/systemd/system/callmeter-worker.service.d/50-system-test.conf"
TOKEN = "system-test-token-7f3a9c1e"  # must never show up in the journal
HERE = Path(__file__).resolve().parent

# Service properties that are about running the daemon, not its sandbox: the TLS probe runs
# with all the others (tls_probe.py).
NOT_SANDBOX = {
    "Type",
    "NotifyAccess",
    "WatchdogSec",
    "ExecStart",
    "EnvironmentFile",
    "Restart",
    "RestartSec",
    "RestartPreventExitStatus",
    "TimeoutStartSec",
    "TimeoutStopSec",
}


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"system test cannot run in CI: {why}")
        pytest.skip(why)


def _free_port() -> int:
    """A TCP port free on the host, hence in the container (it shares the host's network)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Scenario:
    """The container, the installed .deb and what the tests measured."""

    def __init__(self, container: Container, deb_in_container: str, logdir: Path) -> None:
        self.c = container
        self.deb = deb_in_container
        self.logdir = logdir
        self.health_port = _free_port()
        self.figures: dict[str, Any] = {}
        self.failed_units_at_boot = self.failed_units()

    def failed_units(self) -> set[str]:
        out = self.c.run(
            ["systemctl", "list-units", "--state=failed", "--plain", "--no-legend"]
        ).stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    def state(self) -> dict[str, str]:
        return self.c.show(
            UNIT,
            "ActiveState",
            "SubState",
            "Result",
            "MainPID",
            "NRestarts",
            "ExecMainCode",
            "ExecMainStatus",
            "ExecMainStartTimestampMonotonic",
            "ActiveEnterTimestampMonotonic",
        )

    def wait_state(self, active: str, timeout: float = 30) -> dict[str, str]:
        def probe() -> dict[str, str] | None:
            state = self.state()
            return state if state["ActiveState"] == active else None

        state = wait_for(probe, timeout)
        assert state is not None, f"{UNIT} not {active} after {timeout} s: {self.state()}"
        return state

    def unit_journal(self) -> str:
        # Both the unit's own lines and systemd's lines about it.
        return self.c.journal("-u", UNIT)

    def start(self) -> dict[str, str]:
        self.c.run(["systemctl", "start", UNIT], check=False, timeout=120)
        return self.wait_state("active")

    def health(self) -> tuple[int, dict[str, Any]]:
        script = (
            "import json, sys, urllib.error, urllib.request\n"
            f"url = 'http://127.0.0.1:{self.health_port}/health'\n"
            "try:\n"
            "    r = urllib.request.urlopen(url, timeout=5)\n"
            "except urllib.error.HTTPError as e:\n"
            "    r = e\n"
            "print(json.dumps({'code': r.status, 'body': json.loads(r.read())}))\n"
        )
        out = self.c.run(["python3", "-c", script]).stdout
        answer = json.loads(out)
        return int(answer["code"]), dict(answer["body"])

    def save_journal(self) -> None:
        self.logdir.mkdir(parents=True, exist_ok=True)
        (self.logdir / "journal.txt").write_text(self.c.journal("-b"), encoding="utf-8")


@pytest.fixture(scope="module")
def scenario() -> Iterator[Scenario]:
    _require(os.geteuid() == 0, "needs root")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "dpkg-deb"):
        _require(shutil.which(tool) is not None, f"needs {tool}")
    deb_env = os.environ.get("CALLMETER_DEB", "")
    _require(bool(deb_env), "CALLMETER_DEB is not set (.ci/system-test builds the .deb)")
    deb = Path(deb_env).resolve()
    assert deb.is_file(), f"CALLMETER_DEB={deb_env}: no such file"
    logdir = Path(os.environ.get("CALLMETER_TEST_LOGDIR", deb.parent / "system-test-logs"))
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)

    started = time.monotonic()
    rootfs = ensure_rootfs(deb_dependencies(deb), apt_mirror(), logdir / "rootfs-build.log")
    rootfs_s = time.monotonic() - started
    in_container = f"/srv/{deb.name}"
    container = Container(
        rootfs, f"cmtest-{os.getpid()}", logdir / "console.log", bind_ro=[(deb, in_container)]
    )
    figures: dict[str, Any] = {
        "rootfs_prepare_s": round(rootfs_s, 1),
        "deb_bytes": deb.stat().st_size,
    }
    try:
        with container:
            figures["container_boot_s"] = round(time.monotonic() - started - rootfs_s, 1)
            # systemd logs every sd_notify message it gets at debug level: proof of
            # READY=1 and STOPPING=1 in the journal.
            container.run(["systemd-analyze", "log-level", "debug"])
            run = Scenario(container, in_container, logdir)
            run.figures = figures
            try:
                yield run
            finally:
                run.save_journal()
                stopping = time.monotonic()
        figures["container_teardown_s"] = round(time.monotonic() - stopping, 1)
    finally:
        figures["total_s"] = round(time.monotonic() - started, 1)
        (logdir / "figures.json").write_text(
            json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        print(f"\nsystem test logs and figures: {logdir}")


def test_install_creates_user_config_and_enables_without_starting(scenario: Scenario) -> None:
    c = scenario.c
    started = time.monotonic()
    result = c.run(
        ["apt-get", "install", "-y", "--no-install-recommends", scenario.deb],
        check=False,
        timeout=300,
    )
    if result.returncode != 0:  # a dependency the cached root file system lacks
        c.run(["apt-get", "update"], timeout=300)
        c.run(["apt-get", "install", "-y", "--no-install-recommends", scenario.deb], timeout=300)
    scenario.figures["apt_install_s"] = round(time.monotonic() - started, 1)

    assert c.run(["getent", "passwd", "callmeter"]).stdout.split(":")[5] == "/var/lib/callmeter"
    assert c.run(["getent", "group", "callmeter"]).returncode == 0
    # worker.env from the template, readable by root and the service group only.
    assert c.run(["stat", "-c", "%a %U %G", CONF]).stdout.split() == ["640", "root", "callmeter"]
    template = c.run(["cat", "/usr/share/callmeter-worker/worker.env"]).stdout
    assert c.run(["cat", CONF]).stdout == template
    # The docs every plan error points to, where the error says (plan.md uncompressed).
    for doc in ("README.md", "plan.md", "architecture.md.gz", "protocol.md.gz"):
        path = f"/usr/share/doc/callmeter-worker/{doc}"
        assert c.run(["test", "-f", path], check=False).returncode == 0, path
    # `callmeter config` reads the unit's environment file, as the service does.
    c.run(["sh", "-c", f"echo SIP_PORT=5090 >> {CONF}"])
    shown = c.run(["callmeter", "config", "--no-token"]).stdout
    assert [line.split()[:3] for line in shown.splitlines() if line.startswith("SIP_PORT")] == [
        ["SIP_PORT", "5090", CONF]
    ], shown
    c.run(["sed", "-i", "/^SIP_PORT=5090$/d", CONF])
    # The shipped unit, as systemd parsed it.
    shipped = c.show(
        UNIT,
        "Type",
        "NotifyAccess",
        "Restart",
        "User",
        "Group",
        "UMask",
        "LimitNOFILE",
        "NoNewPrivileges",
        "ProtectSystem",
        "FragmentPath",
    )
    assert shipped == {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "User": "callmeter",
        "Group": "callmeter",
        "UMask": "0077",
        "LimitNOFILE": "65536",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "FragmentPath": UNIT_PATH,
    }, shipped
    # Enabled for the next boot, but not started: there is no token yet.
    assert c.run(["systemctl", "is-enabled", UNIT], check=False).stdout.strip() == "enabled"
    assert c.run(["systemctl", "is-active", UNIT], check=False).stdout.strip() == "inactive"
    # The plugin cache was rebuilt by the twisted-plugins-cache trigger...
    cache = "/usr/lib/python3/dist-packages/twisted/plugins/dropin.cache"
    assert (
        "callmeter_plugin"
        in c.run(["python3", "-c", f"print(open({cache!r}, 'rb').read())"]).stdout
    )
    # ... and twistd3 knows the plugin.
    assert "callmeter" in c.run(["twistd3", "--help"]).stdout


def test_start_reaches_ready_and_health_answers(scenario: Scenario) -> None:
    c = scenario.c
    # Edit the config the way an administrator does (the file keeps its mode and owner).
    # No traffic leaves the machine: the control plane points at a closed local port.
    c.sh(
        f"cat >> {CONF}",
        input=(
            f"WORKER_TOKEN={TOKEN}\n"
            f"HEALTH_PORT={scenario.health_port}\n"
            "SIP_PORT=0\n"
            f"GATEWAY_URL=ws://127.0.0.1:{_free_port()}/ws\n"
            "ALLOW_INSECURE_GATEWAY=1\n"
        ),
    )
    state = scenario.start()
    assert state["SubState"] == "running"
    # Type=notify: systemd enters "active" only on READY=1, sent by the main process.
    ready_ms = (
        int(state["ActiveEnterTimestampMonotonic"]) - int(state["ExecMainStartTimestampMonotonic"])
    ) / 1000
    scenario.figures["exec_to_ready_ms"] = round(ready_ms)
    journal = scenario.unit_journal()
    main_pid = state["MainPID"]
    assert re.search(rf"Got notification message from PID {main_pid} \(READY=1", journal)
    # The shipped WatchdogSec=30s reaches the worker, which pings at once, then every 15 s.
    assert c.show(UNIT, "WatchdogUSec")["WatchdogUSec"] == "30s"
    assert re.search(rf"Got notification message from PID {main_pid} \(WATCHDOG=1", journal)

    code, body = scenario.health()
    assert code in (200, 503), body
    assert body["status"] in {"OFFLINE", "CONNECTING", "ONLINE", "BUSY", "DRAINING", "ERROR"}
    assert (code == 503) == (body["status"] == "ERROR")
    assert TOKEN not in json.dumps(body)

    # Runs as the dedicated user, in its state directory, with the cache directory made.
    pid = state["MainPID"]
    status = c.run(["cat", f"/proc/{pid}/status"]).stdout
    uid = c.run(["id", "-u", "callmeter"]).stdout.strip()
    assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), status
    assert c.run(["readlink", f"/proc/{pid}/cwd"]).stdout.strip() == "/var/lib/callmeter"
    assert c.run(["stat", "-c", "%U", "/var/cache/callmeter"]).stdout.strip() == "callmeter"


def test_stop_sends_stopping_and_exits_cleanly(scenario: Scenario) -> None:
    c = scenario.c
    pid = scenario.start()["MainPID"]
    started = time.monotonic()
    c.run(["systemctl", "stop", UNIT], timeout=90)
    scenario.figures["stop_s"] = round(time.monotonic() - started, 2)
    state = scenario.wait_state("inactive")
    assert state["Result"] == "success", state
    # Clean: exit status 0, or (Twisted >= 20.3 twistd) the SIGTERM re-raised after the
    # reactor stopped, which systemd counts as success. Not SIGKILL after TimeoutStopSec.
    exit_ = (state["ExecMainCode"], state["ExecMainStatus"])
    assert exit_ in {("1", "0"), ("2", "15")}, state  # CLD_EXITED 0 / CLD_KILLED SIGTERM
    assert scenario.figures["stop_s"] < 10
    journal = scenario.unit_journal() + c.journal("_PID=1")
    assert re.search(rf"Got notification message from PID {pid} \(STOPPING=1", journal)
    assert TOKEN not in c.journal("-b")


def test_watchdog_kills_a_blocked_worker_and_systemd_restarts_it(scenario: Scenario) -> None:
    c = scenario.c
    # A short watchdog keeps the test fast; the mechanism is the shipped unit's.
    c.run(["mkdir", "-p", os.path.dirname(DROPIN)])
    c.write(DROPIN, "[Service]\nWatchdogSec=3s\nRestartSec=1s\n")
    c.run(["systemctl", "daemon-reload"])
    before = scenario.start()
    old_pid, restarts = before["MainPID"], int(before["NRestarts"])
    assert c.show(UNIT, "WatchdogUSec")["WatchdogUSec"] in ("3s", "3000000")

    # A reactor that stops answering: the process is frozen, the WATCHDOG=1 pings stop.
    c.run(["systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", UNIT])
    frozen = time.monotonic()

    def restarted() -> dict[str, str] | None:
        state = scenario.state()
        again = (
            int(state["NRestarts"]) > restarts
            and state["ActiveState"] == "active"
            and state["MainPID"] not in ("0", old_pid)
        )
        return state if again else None

    after = wait_for(restarted, 30)
    assert after is not None, f"not restarted by the watchdog: {scenario.state()}"
    scenario.figures["watchdog_freeze_to_active_again_s"] = round(time.monotonic() - frozen, 1)
    assert int(after["NRestarts"]) == restarts + 1
    journal = scenario.unit_journal()
    assert "Watchdog timeout" in journal, journal[-3000:]
    assert "Failed with result 'watchdog'" in journal, journal[-3000:]
    assert scenario.health()[1]["status"]  # the new process serves /health again

    c.run(["rm", "-rf", os.path.dirname(DROPIN)])
    c.run(["systemctl", "daemon-reload"])


def test_tls_works_in_the_units_sandbox(scenario: Scenario) -> None:
    """The control plane's TLS (pyOpenSSL callbacks) under every hardening option of the unit."""
    c = scenario.c
    unit = c.run(["cat", UNIT_PATH]).stdout
    section = unit.split("[Service]", 1)[1].split("\n[", 1)[0]
    properties = []
    for line in section.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key = line.split("=", 1)[0]
            if key not in NOT_SANDBOX:
                properties += ["-p", line]
    assert any("SystemCallFilter" in p for p in properties)  # the parser found the sandbox
    probe = "/usr/local/lib/callmeter-tls-probe.py"
    c.write(probe, (HERE / "tls_probe.py").read_text(encoding="utf-8"))
    result = c.run(
        [
            "systemd-run",
            "--wait",
            "--pipe",
            "--quiet",
            "--collect",
            *properties,
            "/usr/bin/python3",
            probe,
        ],
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.startswith("TLS OK"), result.stdout


def test_reinstall_keeps_the_edited_config(scenario: Scenario) -> None:
    c = scenario.c
    edited = c.run(["cat", CONF]).stdout
    assert TOKEN in edited
    c.run(["apt-get", "install", "-y", "--reinstall", scenario.deb], timeout=300)
    assert c.run(["cat", CONF]).stdout == edited
    assert c.run(["stat", "-c", "%a %U %G", CONF]).stdout.split() == ["640", "root", "callmeter"]
    # It was running: the upgrade path try-restarts it.
    scenario.wait_state("active")


def test_token_from_a_systemd_credential(scenario: Scenario) -> None:
    """The set-up worker.env documents: the token in a root-only file, via LoadCredential."""
    c = scenario.c
    c.write("/etc/callmeter/worker.token", TOKEN + "\n", mode="0600")
    c.run(["sed", "-i", "/^WORKER_TOKEN=/d", CONF])
    c.run(["mkdir", "-p", os.path.dirname(DROPIN)])
    c.write(DROPIN, "[Service]\nLoadCredential=worker_token:/etc/callmeter/worker.token\n")
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "restart", UNIT], check=False)
    state = scenario.wait_state("active")
    assert state["SubState"] == "running", state
    assert scenario.health()[1]["status"]
    # Without any token the worker refuses to start, with one line and no restart loop.
    c.run(["rm", "-rf", os.path.dirname(DROPIN)])
    c.run(["systemctl", "daemon-reload"])
    c.run(["systemctl", "restart", UNIT], check=False)
    failed = scenario.wait_state("failed")
    assert (failed["ExecMainCode"], failed["ExecMainStatus"]) == ("1", "2"), failed
    assert failed["NRestarts"] == "0", failed  # RestartPreventExitStatus=2
    assert re.search(r"twistd3\[\d+\]: callmeter: WORKER_TOKEN\b.*", scenario.unit_journal())
    assert TOKEN not in c.journal("-b")
    c.run(["systemctl", "reset-failed", UNIT])


def test_callmeter_run_from_the_installed_package(scenario: Scenario) -> None:
    """The .deb's own `callmeter run` (Debian's Twisted, rich...) runs a plan with real RTP."""
    c = scenario.c
    plan = {
        "name": "in-container",
        "duration_s": 5,
        "groups": [
            {"name": "callees", "role": "callee", "count": 2, "user": "in-{i}"},
            {
                "name": "callers",
                "role": "caller",
                "count": 2,
                "user": "out-{i}",
                "call": {"to": "callees", "duration_s": 2, "rate_per_s": 10},
            },
        ],
    }
    c.write("/tmp/plan.json", json.dumps(plan))
    result = c.sh(
        "cd /tmp && SIP_IP=127.0.0.1 SIP_PORT=0 RTP_PORT_MIN=41000 RTP_PORT_MAX=41999 "
        "callmeter run /tmp/plan.json --json --plain",
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(result.stdout)
    assert report["total"]["sip"]["calls"]["established"] == 2
    assert report["total"]["rtp"]["received"]["packets"] > 300


def test_purge_removes_everything(scenario: Scenario) -> None:
    c = scenario.c
    c.run(["apt-get", "purge", "-y", "callmeter-worker"], timeout=300)
    assert c.run(
        ["dpkg-query", "-W", "-f", "${db:Status-Status}", "callmeter-worker"], check=False
    ).stdout.strip() in ("", "not-installed")
    for path in (
        "/etc/callmeter",
        "/var/lib/callmeter",
        "/var/cache/callmeter",
        UNIT_PATH,
        "/etc/systemd/system/multi-user.target.wants/callmeter-worker.service",
        "/usr/lib/python3/dist-packages/twisted/plugins/callmeter_plugin.py",
    ):
        assert c.run(["test", "-e", path], check=False).returncode == 1, f"{path} left behind"
    # The unit was stopped and is gone, and nothing failed on the way.
    assert scenario.failed_units() <= scenario.failed_units_at_boot
    load = c.show(UNIT, "LoadState", "ActiveState")
    assert load == {"LoadState": "not-found", "ActiveState": "inactive"}, load
    # The plugin cache no longer lists the plugin (trigger on removal).
    assert "callmeter" not in c.run(["twistd3", "--help"]).stdout
