"""Fixtures of the measurement-honesty tests: three network namespaces and processes in them.

    cm-a-S                     cm-r-S (router, ip_forward=1)                    cm-b-S
    va-S 10.251.1.2/24 ---- ra-S 10.251.1.1/24   rb-S 10.251.2.1/24 ---- vb-S 10.251.2.2/24

``S`` is a random suffix, so parallel runs never share a name; the addresses exist only
inside these namespaces (each endpoint has a route to the other subnet through the router
and nothing else). Every namespace is deleted, and every process started in one is ended,
when the test finishes, also when it fails.

Needs root, ``ip``, ``tshark``/``dumpcap``, and ``nft`` (loss) or ``iptables`` and the
``netfilterqueue`` module (PyPI NetfilterQueue, for the delay program) for the test that
uses them; without them a test is skipped, or fails when ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
A_IP, R_A_IP, R_B_IP, B_IP = "10.251.1.2", "10.251.1.1", "10.251.2.1", "10.251.2.2"
TOOLS = ("ip", "tshark", "dumpcap")  # every test; nft, iptables: the test that uses it
# Where the figures go (one JSON file per test), for the lead's notes.
RESULTS = Path(os.environ.get("CALLMETER_NETNS_RESULTS") or tempfile.gettempdir()) / (
    "callmeter-netns-results"
)

_tables: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The side-by-side tables of the tests that ran, at the end of the output."""
    if _tables:
        terminalreporter.section("measurement honesty: ours vs the truth")
        for table in _tables:
            terminalreporter.write_line(table)


def report(name: str, lines: Sequence[str], figures: dict[str, Any]) -> Path:
    """Print a table (now and in the summary) and write the figures to RESULTS/name.json."""
    table = "\n".join(lines)
    print(table)
    _tables.append(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    _tables.append(f"(figures in {path})")
    return path


def missing_requirements(tools: Sequence[str] = TOOLS, modules: Sequence[str] = ()) -> list[str]:
    """What this machine lacks for a netns test (empty when everything is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    missing += [tool for tool in tools if find_tool(tool) is None]
    missing += [
        f"the {module} module for {sys.executable} (pip NetfilterQueue)"
        for module in modules
        if importlib.util.find_spec(module) is None
    ]
    return missing


def find_tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )


def require(tools: Sequence[str] = (), modules: Sequence[str] = ()) -> None:
    """Skip the test when something is missing, or fail it when ``CI=true``."""
    missing = missing_requirements(tools, modules)
    if missing:
        message = "netns test needs: " + ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def run(args: Sequence[str], input: str | None = None) -> str:
    """Run a command; its stdout. A failure raises with the command's stderr."""
    done = subprocess.run(list(args), input=input, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Netns:
    name: str

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, input: str | None = None) -> str:
        return run(self.argv(*command), input=input)


@dataclass
class Topology:
    suffix: str
    a: Netns
    r: Netns
    b: Netns
    a_if: str
    b_if: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, ns: Netns, command: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """A background process in ``ns`` (stdout and stderr to ``log``); ended at teardown."""
        with log.open("wb") as out:
            process = subprocess.Popen(ns.argv(*command), stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """End one process we started (by its id), escalating to SIGKILL; its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return process.returncode


def build(suffix: str) -> Topology:
    topo = Topology(
        suffix,
        Netns(f"cm-a-{suffix}"),
        Netns(f"cm-r-{suffix}"),
        Netns(f"cm-b-{suffix}"),
        a_if=f"va-{suffix}",
        b_if=f"vb-{suffix}",
    )
    for ns in (topo.a, topo.r, topo.b):
        run(["ip", "netns", "add", ns.name])
        ns.run("ip", "link", "set", "lo", "up")
    for side, ns, ip, router_ip in (("a", topo.a, A_IP, R_A_IP), ("b", topo.b, B_IP, R_B_IP)):
        here, there = f"v{side}-{suffix}", f"r{side}-{suffix}"
        run(["ip", "link", "add", here, "netns", ns.name, "type", "veth", "peer", "name", there,
             "netns", topo.r.name])  # fmt: skip
        ns.run("ip", "addr", "add", f"{ip}/24", "dev", here)
        ns.run("ip", "link", "set", here, "up")
        topo.r.run("ip", "addr", "add", f"{router_ip}/24", "dev", there)
        topo.r.run("ip", "link", "set", there, "up")
        other = "10.251.2.0/24" if side == "a" else "10.251.1.0/24"
        ns.run("ip", "route", "add", other, "via", router_ip)
    topo.r.run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    return topo


def tear_down(topo: Topology) -> None:
    for process in reversed(topo.processes):
        stop(process)
    for ns in (topo.a, topo.r, topo.b):
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, timeout=30)


@pytest.fixture
def topology() -> Iterator[Topology]:
    """The three namespaces, wired and routed; torn down whatever happens."""
    require(TOOLS)
    topo = build(secrets.token_hex(3))
    try:
        yield topo
    finally:
        tear_down(topo)


# --- a call between the two endpoint namespaces -------------------------------------------


def run_call(
    topo: Topology, workdir: Path, seconds: float, rtcp_interval: float = 0.5
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (offerer, in cm-a) calls B (answerer, in cm-b) for ``seconds``; both JSON results."""
    exchange = workdir / "sdp"
    exchange.mkdir(parents=True)
    endpoint = str(HERE / "rtp_endpoint.py")
    common = ["--exchange", str(exchange), "--seconds", str(seconds)]
    common += ["--rtcp-interval", str(rtcp_interval)]
    env_python = [sys.executable, endpoint]
    b = topo.start(
        topo.b,
        [*env_python, "--role", "answer", "--ip", B_IP, "--ports", "40000-40001", *common,
         "--out", str(workdir / "b.json")],
        workdir / "b.log",
    )  # fmt: skip
    a = topo.start(
        topo.a,
        [*env_python, "--role", "offer", "--ip", A_IP, "--ports", "30000-30001", *common,
         "--out", str(workdir / "a.json")],
        workdir / "a.log",
    )  # fmt: skip
    for process, name in ((a, "a"), (b, "b")):
        try:
            process.wait(seconds + 30)
        except subprocess.TimeoutExpired:
            stop(process)
        log = (workdir / f"{name}.log").read_text(errors="replace")
        assert process.returncode == 0, f"endpoint {name} exited {process.returncode}:\n{log}"
    results = []
    for name in ("a", "b"):
        result: dict[str, Any] = json.loads((workdir / f"{name}.json").read_text())
        assert "error" not in result, f"endpoint {name}: {result['error']}"
        results.append(result)
    return results[0], results[1]


# --- tshark -----------------------------------------------------------------------------------


class Capture:
    """``tshark -w`` on an interface inside a namespace, started before and stopped after."""

    def __init__(self, topo: Topology, ns: Netns, interface: str, path: Path) -> None:
        self.path = path
        self.process = topo.start(
            ns, ["tshark", "-n", "-i", interface, "-f", "udp", "-w", str(path)],
            path.with_suffix(".log"),
        )  # fmt: skip
        deadline = time.monotonic() + 15
        log = path.with_suffix(".log")
        while "Capturing on" not in log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tshark did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> Path:
        time.sleep(0.3)  # let the last packets be written
        stop(self.process, signal.SIGINT)
        return self.path


@dataclass(frozen=True)
class TsharkStream:
    """One row of ``tshark -z rtp,streams`` (times in ms)."""

    src: str
    src_port: int
    dst: str
    dst_port: int
    ssrc: int
    packets: int
    lost: int
    min_jitter: float
    mean_jitter: float
    max_jitter: float


def tshark_streams(capture: Path) -> list[TsharkStream]:
    """tshark's RTP stream analysis of a capture (heuristic RTP: no SIP in it)."""
    out = run(["tshark", "-n", "-r", str(capture), "-o", "rtp.heuristic_rtp:TRUE", "-q",
               "-z", "rtp,streams"])  # fmt: skip
    return parse_rtp_streams(out)


def parse_rtp_streams(text: str) -> list[TsharkStream]:
    """Rows of the rtp,streams table: addresses, ports, SSRC (0x...), payload, counts, ms.

    tshark 4.0 prints ``start end src sport dst dport ssrc payload pkts lost (pct%) min
    mean max delta, min mean max jitter, problem``; the payload name can hold spaces, so
    the row is read from both ends.
    """
    streams = []
    for line in text.splitlines():
        fields = line.split()
        ssrc_at = next((i for i, f in enumerate(fields) if f.startswith("0x")), None)
        if ssrc_at is None or ssrc_at < 4:
            continue
        tail = fields[ssrc_at + 1 :]
        if tail and tail[-1] in ("X", "-"):
            tail = tail[:-1]  # the Problem? column
        numbers = [f for f in tail if f.replace(".", "", 1).lstrip("-").isdigit()]
        # pkts, lost, min/mean/max delta, min/mean/max jitter (the lost percentage is "(x%)")
        pkts, lost = int(numbers[-8]), int(numbers[-7])
        min_j, mean_j, max_j = (float(n) for n in numbers[-3:])
        streams.append(
            TsharkStream(
                src=fields[ssrc_at - 4],
                src_port=int(fields[ssrc_at - 3]),
                dst=fields[ssrc_at - 2],
                dst_port=int(fields[ssrc_at - 1]),
                ssrc=int(fields[ssrc_at], 16),
                packets=pkts,
                lost=lost,
                min_jitter=min_j,
                mean_jitter=mean_j,
                max_jitter=max_j,
            )
        )
    return streams


def tshark_rtp_packets(capture: Path, ssrc: int) -> list[tuple[float, int, int]]:
    """``(capture time, seq, rtp timestamp)`` of every packet of ``ssrc`` in capture order."""
    out = run(["tshark", "-n", "-r", str(capture), "-o", "rtp.heuristic_rtp:TRUE",
               "-Y", f"rtp.ssrc == 0x{ssrc:08x}", "-T", "fields", "-e", "frame.time_epoch",
               "-e", "rtp.seq", "-e", "rtp.timestamp"])  # fmt: skip
    rows = []
    for line in out.splitlines():
        t, seq, ts = line.split("\t")
        rows.append((float(t), int(seq), int(ts)))
    return rows
