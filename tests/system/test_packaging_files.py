"""Static checks of the files the .deb ships: the config template and the unit.

No root needed; marked ``system`` so that .ci/system-test runs them with the rest.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from callmeter.config import VARIABLES

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "systemd" / "worker.env"
UNIT = ROOT / "systemd" / "callmeter-worker.service"


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


def test_template_documents_every_variable_commented_out() -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    documented = set(re.findall(r"^#([A-Z][A-Z0-9_]*)=", text, re.M))
    missing = set(VARIABLES) - documented
    assert not missing, f"not in {TEMPLATE.name}: {sorted(missing)}"
    assert "WORKER_TOKEN_FILE" in documented
    # Nothing is set: an installed template changes no default and holds no secret.
    active = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert active == []


def test_unit_runs_twistd3_as_notify_service_with_watchdog() -> None:
    service = _unit()["Service"]
    assert service["ExecStart"].split()[0] == "/usr/bin/twistd3"
    assert service["ExecStart"].split()[-1] == "callmeter"
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["Restart"] == "on-failure"
    assert service["WatchdogSec"]
    assert service["EnvironmentFile"] == "-/etc/callmeter/worker.env"
    assert service["User"] == service["Group"] == "callmeter"
    # MEDIA_CACHE_DIR's default is the unit's CacheDirectory.
    assert service["CacheDirectory"] == "callmeter"
    assert VARIABLES["MEDIA_CACHE_DIR"][0] == "/var/cache/callmeter"
    assert service["CapabilityBoundingSet"] == ""
    assert _unit()["Install"]["WantedBy"] == "multi-user.target"
