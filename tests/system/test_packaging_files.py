"""Static checks of the files the .deb ships: the config template and the unit.

No root needed; marked ``system`` so that .ci/system-test runs them with the rest.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from callmeter.config import VARIABLES
from callmeter.plan import PlanError, parse_plan

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "systemd" / "worker.env"
UNIT = ROOT / "systemd" / "callmeter-worker.service"
DEBIAN = ROOT / "debian"
DOC_DIR = "/usr/share/doc/callmeter-worker"


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


def _dh_compress_exclusions() -> list[str]:
    rules = (DEBIAN / "rules").read_text(encoding="utf-8")
    commands = re.findall(r"^\t\s*dh_compress\b(.*)$", rules, re.M)
    assert len(commands) == 1, "expected one dh_compress call in override_dh_compress"
    return re.findall(r"-X\s*(\S+)", commands[0])


def test_docs_are_shipped_and_what_errors_point_at_is_uncompressed() -> None:
    listed = [
        line.strip()
        for line in (DEBIAN / "callmeter-worker.docs").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for doc in listed:
        assert (ROOT / doc).is_file(), f"debian/callmeter-worker.docs lists a missing {doc}"
    shipped = {f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")}
    assert shipped == {"docs/architecture.md", "docs/plan.md", "docs/protocol.md"}
    assert shipped | {"README.md"} <= set(listed)
    # dh_installdocs puts each in /usr/share/doc/callmeter-worker/ under its own name: no two
    # may share one.
    names = [Path(doc).name for doc in listed]
    assert len(names) == len(set(names)), names
    excluded = _dh_compress_exclusions()

    def installed_uncompressed(path: str) -> bool:
        name = path.removeprefix(f"{DOC_DIR}/")
        # dh_compress -X excludes every file whose name contains the pattern.
        return name in names and any(pattern in name for pattern in excluded)

    # The unit's Documentation= and the path plan errors give must open as they are.
    documentation = _unit()["Unit"]["Documentation"].removeprefix("file:")
    assert installed_uncompressed(documentation), (documentation, excluded)
    with pytest.raises(PlanError) as caught:
        parse_plan({"name": "x", "duration_s": 1, "groups": [], "colour": "red"}, max_endpoints=1)
    unknown = next(p for p in caught.value.problems if p.startswith("colour: unknown field"))
    pointed = re.findall(rf"installed as ({re.escape(DOC_DIR)}/\S+?)\)", unknown)
    assert pointed == [f"{DOC_DIR}/plan.md"], unknown
    assert installed_uncompressed(pointed[0]), (pointed, excluded)
    # Every "see docs/....md" of the plan validator names the installed path too (the source
    # with adjacent string literals joined).
    source = (ROOT / "callmeter" / "plan.py").read_text(encoding="utf-8")
    joined = re.sub(r'"\s*\n\s*"', "", source)
    mentions = re.findall(r"see docs/([a-z]+\.md)(, installed as \S+\.md)?", joined)
    assert mentions
    for name, installed in mentions:
        assert installed == f", installed as {DOC_DIR}/{name}", (name, installed)
