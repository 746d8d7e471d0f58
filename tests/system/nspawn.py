"""A Debian 12 (bookworm) container with a real systemd, for the system tests.

TESTBED.md's recipe: a ``debootstrap --variant=minbase`` root file system, cached under
``/var/cache/callmeter-ci/`` (``$CALLMETER_CI_CACHE``) so that later runs reuse it, booted as a
throw-away copy (an overlayfs over it, else ``--ephemeral``) with ``systemd-nspawn -b
--register=no --keep-unit --console=passive`` (the host has no machined or D-Bus, so
``machinectl`` and ``systemd-run -M`` do not work). Commands run inside with
``nsenter -t <container's systemd> -a``. The container shares the host's network.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "CACHE_ROOT",
    "Container",
    "apt_mirror",
    "deb_dependencies",
    "ensure_rootfs",
    "wait_for",
]

CACHE_ROOT = Path(os.environ.get("CALLMETER_CI_CACHE", "/var/cache/callmeter-ci"))
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# debootstrap's own resolver handles no virtual packages (python3-pycparser needs
# python3-ply-lex-3.10): it installs only these, apt installs the rest.
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3")
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, interval: float = 0.2) -> T | None:
    """Call ``probe`` until it returns something other than None/False, or ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def apt_mirror() -> str:
    """The Debian mirror the host's apt already uses for bookworm (deb822 or one-line form)."""
    override = os.environ.get("CALLMETER_MIRROR")
    if override:
        return override
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text(encoding="utf-8").split("\n\n"):
            fields = dict(
                line.split(":", 1)
                for line in stanza.splitlines()
                if ":" in line and not line.startswith("#")
            )
            suites = fields.get("Suites", "").split()
            uris = fields.get("URIs", "").split()
            if SUITE in suites and uris and "security" not in uris[0]:
                return uris[0].rstrip("/")
    one_line = Path("/etc/apt/sources.list")
    if one_line.exists():
        for line in one_line.read_text(encoding="utf-8").splitlines():
            match = re.match(rf"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
            if match and "security" not in match.group(1):
                return match.group(1).rstrip("/")
    return DEFAULT_MIRROR


def deb_dependencies(deb: Path) -> list[str]:
    """Package names in the .deb's Depends/Pre-Depends (first alternative, no versions)."""
    fields = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Depends", "Pre-Depends"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names: set[str] = set()
    for line in fields.splitlines():
        _, _, value = line.partition(":")
        for relation in value.split(","):
            first = relation.split("|")[0].strip()
            name = re.split(r"[\s(:]", first, maxsplit=1)[0]
            if name:
                names.add(name)
    return sorted(names)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_rootfs(
    packages: Iterable[str], mirror: str, log: Path, cache: Path = CACHE_ROOT
) -> Path:
    """The cached bookworm root file system with ``packages`` installed; built on first use.

    The cache key is the suite, the mirror and the package set, so a .deb that gains a
    dependency gets a fresh root file system (the old ones are removed) and every later run
    installs the .deb without touching the network. About 2 minutes and 400 MB the first time.
    ``cache`` is the directory it lives in: a caller with another kind of root file system
    gives its own (only ``cache``'s own older trees are removed).
    """
    wanted = sorted(set(packages) | set(BASE_PACKAGES))
    key = hashlib.sha256("\n".join([SUITE, mirror, *wanted]).encode()).hexdigest()[:12]
    target = cache / f"{SUITE}-{key}"
    with _locked(cache / ".lock"):
        if target.is_dir():
            return target
        scratch = cache / f".{target.name}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        with log.open("a", encoding="utf-8") as out:
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(BASE_PACKAGES),
                    SUITE,
                    str(scratch),
                    mirror,
                ],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
            subprocess.run(
                [
                    "systemd-nspawn",
                    "--quiet",
                    "-D",
                    str(scratch),
                    "--register=no",
                    "--keep-unit",
                    "-E",
                    "DEBIAN_FRONTEND=noninteractive",
                    "-E",
                    f"PATH={CONTAINER_PATH}",
                    "sh",
                    "-ec",
                    'apt-get update; apt-get install -y --no-install-recommends "$@"; '
                    "apt-get clean",
                    "sh",
                    *wanted,
                ],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        scratch.rename(target)
        for old in cache.glob(f"{SUITE}-*"):
            if old != target and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return target


def _children(pid: int) -> Iterator[tuple[int, str]]:
    """(pid, command name) of the processes whose parent is ``pid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == pid:
            yield int(entry.name), comm


class Container:
    """One booted, throw-away copy of a root file system. Use as a context manager."""

    def __init__(
        self,
        rootfs: Path,
        name: str,
        log: Path,
        bind_ro: Sequence[tuple[Path, str]] = (),
        bind: Sequence[tuple[Path, str]] = (),
    ) -> None:
        self.rootfs = rootfs
        self.name = name
        self.log = log
        self.bind_ro = list(bind_ro)
        self.bind = list(bind)  # read-write, e.g. a download cache kept between runs
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        self._overlay: Path | None = None

    def __enter__(self) -> Container:
        try:
            self.boot()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def boot(self, timeout: float = 60) -> None:
        """Boot a throw-away copy: an overlayfs over the cached tree (instant, nothing to copy
        or delete), else nspawn's --ephemeral copy."""
        argv = ["systemd-nspawn", "--quiet", "-b", "-M", self.name, "--register=no"]
        argv += ["--keep-unit", "--console=passive"]
        merged = self._mount_overlay()
        argv += ["-D", str(merged)] if merged else ["-D", str(self.rootfs), "--ephemeral"]
        argv += [f"--bind-ro={source}:{dest}" for source, dest in self.bind_ro]
        argv += [f"--bind={source}:{dest}" for source, dest in self.bind]
        with self.log.open("ab") as out:
            self.nspawn = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        nspawn = self.nspawn

        def init() -> int | None:
            if nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited with {nspawn.returncode}: {self.log}")
            return next((pid for pid, comm in _children(nspawn.pid) if comm == "systemd"), None)

        pid = wait_for(init, timeout)
        if pid is None:
            raise RuntimeError(f"no systemd in the container after {timeout} s: {self.log}")
        self.init_pid = pid

        def booted() -> str | None:
            state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
            return state if state in ("running", "degraded") else None

        if wait_for(booted, timeout) is None:
            raise RuntimeError(f"the container did not finish booting in {timeout} s")

    def shutdown(self, timeout: float = 30) -> None:
        """SIGTERM to systemd-nspawn (a clean halt of the container), SIGKILL if it hangs."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(10)
        self._unmount_overlay()

    def _mount_overlay(self) -> Path | None:
        run_dir = Path(tempfile.mkdtemp(prefix=f".run-{self.name}-", dir=self.rootfs.parent))
        upper, work, merged = run_dir / "upper", run_dir / "work", run_dir / "merged"
        for directory in (upper, work, merged):
            directory.mkdir()
        options = f"lowerdir={self.rootfs},upperdir={upper},workdir={work}"
        mount = ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)]
        if subprocess.run(mount, capture_output=True, check=False).returncode != 0:
            shutil.rmtree(run_dir, ignore_errors=True)
            return None
        self._overlay = run_dir
        return merged

    def _unmount_overlay(self) -> None:
        if self._overlay is None:
            return
        merged = str(self._overlay / "merged")
        if subprocess.run(["umount", merged], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "--lazy", merged], capture_output=True, check=False)
        shutil.rmtree(self._overlay, ignore_errors=True)
        self._overlay = None

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (all its namespaces), with a clean environment."""
        command = [
            "nsenter",
            "-t",
            str(self.init_pid),
            "-a",
            "env",
            "-i",
            f"PATH={CONTAINER_PATH}",
            "LANG=C.UTF-8",
            "DEBIAN_FRONTEND=noninteractive",
            *argv,
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-ec", script], check=check, timeout=timeout, input=input)

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run(["sh", "-ec", f'cat > "$1"; chmod {mode} "$1"', "sh", path], input=text)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """``systemctl show -p ...`` as a dict."""
        out = self.run(["systemctl", "show", unit, *(f"--property={p}" for p in properties)])
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        return self.run(
            ["journalctl", "--no-pager", "-o", "short-precise", *args], check=False
        ).stdout
