"""The README's "Set up on a fresh Debian 12 machine", proven on a fresh Debian 12.

Two throw-away containers (nspawn.py) of a stock bookworm root file system (debootstrap
minbase with systemd and python3, nothing else; cached apart from the system test's under
``$CALLMETER_CI_CACHE/stock``), each with a clean clone of the project (``git archive HEAD``: no
build leftovers, no compiled ``_fastpath`` .so, no .tox) in /root/callmeter-worker and, like a
fresh image, no apt package lists:

1. command 1 of the README's first ``sh`` block (its lines up to the "# 2." comment), verbatim,
   with ``bash -e`` as root from the project directory: apt-get update, the build dependencies,
   dpkg-buildpackage, the .deb, ``callmeter run examples/loopback.json --report report.json``
   (exit 0, PASSED, a report.json that says passed); then every example plan that needs no
   server outside the worker, with the default process count and SIP port;
2. command 2's setup, ``bash .ci/run --only unit`` (apt, its own venv from /usr/bin/python3 with
   tox, ``tox run -e py,debian -- tests/unit``): .ci/run needs nothing but what it installs.

The containers share the host's network: the README runs with its defaults, so SIP port 5060
(and 5061) must be free on the host while it runs; the test checks that first. The host's
locally added CAs (/usr/local/share/ca-certificates: a TLS-inspecting egress proxy) are lent to
the containers, read-only: Debian's ca-certificates includes them once .ci/run installs it.
Downloads (apt's archives, pip's cache) are kept under the cache directory between runs.

``CALLMETER_FRESH_SOURCE`` chooses another source: a commit or tree for ``git archive``, or
``worktree`` for the working tree's tracked and unignored files (to try uncommitted changes).
Logs and figures.json: $CALLMETER_FRESH_LOGDIR (.ci/system-test sets it), else a fresh directory
under /tmp. About 6 minutes with nothing cached, 5 with the caches (2 idle cores). Needs root,
systemd-nspawn, debootstrap, nsenter and git; without them the test is skipped, or fails when
CI=true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.nspawn import CACHE_ROOT, Container, apt_mirror, ensure_rootfs, wait_for

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
STOCK_CACHE = CACHE_ROOT / "stock"
HOST_CAS = Path("/usr/local/share/ca-certificates")
PROJECT = "/root/callmeter-worker"
SOURCE_TAR = "/srv/callmeter-worker.tar"
# What `callmeter run` listens on with its defaults (SIP_PORT, TLS on SIP_PORT + 1).
SIP_PORTS = (("udp", 5060), ("tcp", 5060), ("tcp", 5061))


def _require(condition: bool, why: str) -> None:
    if not condition:
        if os.environ.get("CI") == "true":
            pytest.fail(f"fresh-Debian test cannot run in CI: {why}")
        pytest.skip(why)


def readme_command_1() -> str:
    """Command 1 of the README's first ``sh`` block: its lines up to the "# 2." comment."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"^```sh\n(.*?)^```", text, re.M | re.S)
    assert block is not None, "README.md has no ```sh block"
    lines = block.group(1).splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("# 2.")), None)
    assert end is not None, "the README's first ```sh block has no '# 2.' comment"
    return "\n".join(lines[:end]).strip() + "\n"


def _commands(script: str) -> list[str]:
    return [line for line in script.splitlines() if line.strip() and not line.startswith("#")]


def build_depends() -> list[str]:
    """Package names in debian/control's Build-Depends (first alternatives, no versions)."""
    control = (ROOT / "debian" / "control").read_text(encoding="utf-8")
    field = re.search(r"^Build-Depends:(.*?)(?=^\S)", control, re.M | re.S)
    assert field is not None, "debian/control has no Build-Depends"
    names = []
    for relation in field.group(1).split(","):
        name = re.split(r"[\s(:\[]", relation.split("|")[0].strip(), maxsplit=1)[0]
        if name:
            names.append(name)
    return names


def needs_outside_server(plan: dict[str, Any]) -> str | None:
    """Why a plan cannot run on this machine alone (a registrar, a SIP URI), else None."""
    if plan.get("registrars"):
        hosts = ", ".join(
            f"{name} at {reg.get('host')}:{reg.get('port', 5060)}"
            for name, reg in plan["registrars"].items()
        )
        return f"registers with a registrar ({hosts})"
    for group in plan.get("groups", []):
        target = str(group.get("call", {}).get("to", ""))
        if target.startswith(("sip:", "sips:")):
            return f"group {group.get('name')} calls {target}"
    return None


def clean_source(tar: Path) -> str:
    """Write a clean clone of the project to ``tar`` (under callmeter-worker/); say what it is."""
    git = ["git", "-C", str(ROOT)]
    wanted = os.environ.get("CALLMETER_FRESH_SOURCE") or "HEAD"
    if wanted == "worktree":
        listed = subprocess.run(
            [*git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        ).stdout.decode()
        with tarfile.open(tar, "w") as out:
            for name in sorted(set(filter(None, listed.split("\0")))):
                path = ROOT / name
                if path.is_file() or path.is_symlink():  # a deleted tracked file is skipped
                    out.add(path, arcname=f"callmeter-worker/{name}", recursive=False)
        return "the working tree (tracked and unignored files)"
    subprocess.run(
        [*git, "archive", "--format=tar", "--prefix=callmeter-worker/", "-o", str(tar), wanted],
        check=True,
        capture_output=True,
    )
    name = subprocess.run(
        [*git, "rev-parse", "--short", wanted], check=True, capture_output=True, text=True
    ).stdout.strip()
    return f"git archive {wanted} ({name})"


def _busy_sip_ports() -> list[str]:
    """The default SIP ports that something on the host (hence in the containers) holds."""
    busy = []
    for proto, port in SIP_PORTS:
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, kind) as probe:
            if kind == socket.SOCK_STREAM:  # a listener conflicts, TIME_WAIT does not
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("0.0.0.0", port))
            except OSError:
                busy.append(f"{proto}/{port}")
    return busy


def _require_free_sip_ports() -> None:
    if wait_for(lambda: not _busy_sip_ports(), timeout=15) is None:
        busy = ", ".join(_busy_sip_ports())
        pytest.fail(
            f"{busy} in use on the host: the README's commands run with their defaults "
            "(SIP_PORT 5060) in a container that shares the host's network"
        )


class Fresh:
    """The stock root file system, the clean clone and what the tests measured."""

    def __init__(self, rootfs: Path, source_tar: Path, logdir: Path) -> None:
        self.rootfs = rootfs
        self.source_tar = source_tar
        self.logdir = logdir
        self.figures: dict[str, Any] = {}

    def container(self, role: str) -> Container:
        """A container of the stock tree with the clean clone unpacked (not yet booted)."""
        apt_cache = STOCK_CACHE / f"apt-archives-{role}"  # one each: apt locks it
        pip_cache = STOCK_CACHE / "pip-cache"
        for directory in (apt_cache, pip_cache):
            directory.mkdir(parents=True, exist_ok=True)
        bind_ro = [(self.source_tar, SOURCE_TAR)]
        if HOST_CAS.is_dir() and any(HOST_CAS.iterdir()):
            bind_ro.append((HOST_CAS, str(HOST_CAS)))
        return Container(
            self.rootfs,
            f"cmfresh-{role}-{os.getpid()}",
            self.logdir / f"console-{role}.log",
            bind_ro=bind_ro,
            bind=[(apt_cache, "/var/cache/apt/archives"), (pip_cache, "/root/.cache/pip")],
        )

    def prepare(self, c: Container) -> None:
        """Unpack the clone; forget the package lists, as a fresh image has none."""
        c.sh(f"tar -xf {SOURCE_TAR} -C /root && test -f {PROJECT}/README.md")
        c.sh("rm -rf /var/lib/apt/lists/*")

    def run_logged(
        self, c: Container, step: str, script: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """``script`` (bash) in the project directory as root with HOME=/root and no
        DEBIAN_FRONTEND (as typed in a root shell); output to ``<step>.log``; timed."""
        started = time.monotonic()
        try:
            result = c.run(
                [
                    "env",
                    "-u",
                    "DEBIAN_FRONTEND",
                    "HOME=/root",
                    "bash",
                    "-c",
                    f'cd {PROJECT} && exec bash -c "$1"',
                    "bash",
                    script,
                ],
                check=False,
                timeout=timeout,
            )
        finally:
            self.figures[f"{step}_s"] = round(time.monotonic() - started, 1)
        (self.logdir / f"{step}.log").write_text(
            f"$ {script}\n--- exit {result.returncode}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}",
            encoding="utf-8",
        )
        return result


def _tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    out = "\n".join(result.stdout.splitlines()[-lines:])
    err = "\n".join(result.stderr.splitlines()[-lines:])
    return f"exit {result.returncode}\n--- stdout (tail)\n{out}\n--- stderr (tail)\n{err}"


@pytest.fixture(scope="module")
def fresh() -> Iterator[Fresh]:
    _require(os.geteuid() == 0, "needs root")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "git"):
        _require(shutil.which(tool) is not None, f"needs {tool}")
    _require((ROOT / ".git").exists(), f"{ROOT} is not a git checkout")
    configured = os.environ.get("CALLMETER_FRESH_LOGDIR")
    if configured:
        logdir = Path(configured)
        shutil.rmtree(logdir, ignore_errors=True)
        logdir.mkdir(parents=True)
    else:
        logdir = Path(tempfile.mkdtemp(prefix="callmeter-fresh-debian-"))
    work = Path(tempfile.mkdtemp(prefix="callmeter-fresh-src-"))
    started = time.monotonic()
    figures: dict[str, Any] = {}
    try:
        source_tar = work / "callmeter-worker.tar"
        figures["source"] = clean_source(source_tar)
        rootfs = ensure_rootfs((), apt_mirror(), logdir / "rootfs-build.log", cache=STOCK_CACHE)
        figures["rootfs_prepare_s"] = round(time.monotonic() - started, 1)
        state = Fresh(rootfs, source_tar, logdir)
        state.figures = figures
        yield state
    finally:
        shutil.rmtree(work, ignore_errors=True)
        figures["total_s"] = round(time.monotonic() - started, 1)
        (logdir / "figures.json").write_text(
            json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        print(f"\nfresh-Debian test logs and figures: {logdir}\n{json.dumps(figures)}")


@pytest.fixture(scope="module")
def readme_box(fresh: Fresh) -> Iterator[Container]:
    """The container that command 1 runs in, then the examples."""
    container = fresh.container("readme")
    with container:
        fresh.prepare(container)
        yield container


def test_readme_command_1_installs_what_it_builds_with() -> None:
    """Command 1 starts with apt-get update and installs every Build-Depends (and
    build-essential, which dpkg-buildpackage assumes); the .deb brings what `callmeter run`
    needs through its Depends (proven below by running it)."""
    commands = _commands(readme_command_1())
    assert commands[0] == "apt-get update", commands
    install = next((c for c in commands if c.startswith("apt-get install -y ")), "")
    installed = set(install.split()[3:])
    wanted = {"debhelper" if n == "debhelper-compat" else n for n in build_depends()}
    wanted.add("build-essential")
    assert wanted <= installed, f"missing from the README's apt-get install: {wanted - installed}"


def test_readme_command_1_verbatim(fresh: Fresh, readme_box: Container) -> None:
    script = readme_command_1()
    _require_free_sip_ports()
    result = fresh.run_logged(readme_box, "readme_command_1", f"set -e\n{script}", timeout=1500)
    assert result.returncode == 0, f"README command 1 failed:\n{script}\n{_tail(result)}"
    assert re.search(r"\bPASSED\b", result.stdout + result.stderr), _tail(result)
    report = json.loads(readme_box.run(["cat", f"{PROJECT}/report.json"]).stdout)
    assert report["pass"]["passed"] is True, report["pass"]


def _outside(plan: Path) -> str | None:
    return needs_outside_server(json.loads(plan.read_text(encoding="utf-8")))


#: The examples that need no server outside the worker: all run here.
LOCAL_EXAMPLES = [plan for plan in EXAMPLES if not _outside(plan)]


def test_the_examples_left_out_are_run_against_a_real_server_elsewhere() -> None:
    """Only registrar-auth.json needs a server; tests/interop/test_kamailio_plan.py runs it
    against Kamailio.  A new example that needs one must be run somewhere too."""
    left_out = {plan.name for plan in EXAMPLES if _outside(plan)}
    assert left_out == {"registrar-auth.json"}
    interop = (ROOT / "tests" / "interop" / "test_kamailio_plan.py").read_text(encoding="utf-8")
    assert all(name in interop for name in left_out)
    assert len(LOCAL_EXAMPLES) >= 3


@pytest.mark.parametrize("plan", LOCAL_EXAMPLES, ids=[path.stem for path in LOCAL_EXAMPLES])
def test_example_runs_from_the_project_directory(
    fresh: Fresh, readme_box: Container, plan: Path
) -> None:
    if "readme_command_1_s" not in fresh.figures:
        pytest.skip("README command 1 did not run")
    if readme_box.run(["sh", "-c", "command -v callmeter"], check=False).returncode != 0:
        pytest.fail("callmeter is not installed: README command 1 failed")
    _require_free_sip_ports()
    result = fresh.run_logged(
        readme_box, f"example_{plan.stem}", f"callmeter run examples/{plan.name}", timeout=300
    )
    assert result.returncode == 0, f"callmeter run examples/{plan.name}:\n{_tail(result)}"


def test_ci_run_setup_on_stock_debian(fresh: Fresh) -> None:
    """`.ci/run --only unit` on a stock Debian 12: apt, .ci-venv on /usr/bin/python3, tox."""
    with fresh.container("ci") as c:
        fresh.prepare(c)
        assert c.run(["sh", "-c", "command -v pip pip3 || true"]).stdout == ""
        result = fresh.run_logged(c, "ci_run_only_unit", "bash .ci/run --only unit", timeout=1800)
        assert result.returncode == 0, f"bash .ci/run --only unit:\n{_tail(result, 60)}"
        debian_python = c.run(["/usr/bin/python3", "--version"]).stdout
        for env in ("py", "debian"):
            version = c.run([f"{PROJECT}/.tox/{env}/bin/python", "--version"]).stdout
            assert version == debian_python, (env, version, debian_python)
        tox_python = c.run(["readlink", "-f", f"{PROJECT}/.ci-venv/bin/python"]).stdout
        assert tox_python.strip() == "/usr/bin/python3.11", tox_python
