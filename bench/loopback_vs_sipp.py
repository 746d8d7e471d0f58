"""Loopback calls, ours against SIPp: calls up, packet rate, jitter and CPU per call.

    python bench/loopback_vs_sipp.py                          # 250, 500, 1000 calls (~6 min)
    python bench/loopback_vs_sipp.py --calls 250,500 --hold 10

For each call count N, one after the other (never two at once on this 2-core machine):

* ours: ``callmeter run`` (a subprocess) of the loopback plan with N callers calling N
  callees on 127.0.0.1, G.711 PCMU 20 ms, calls placed at --rate per second and each held
  until every call has been up for --hold seconds; once with --processes 1 and once with one
  process per core.
* SIPp 3.6.1 (run as root: its pcap player sends through a raw socket): ``sipp -sn uas
  -rtp_echo`` answering a UAC that plays a 20 ms PCMU pcap for the same hold
  (bench/sipp/uac_pcap_20ms.xml, the structure of SIPp's uac_pcap; the pcap is written by
  bench/sipp/rtp_pcap.py), with net.core.rmem_default raised to 4 MB for the run
  (TESTBED.md: the echo drops packets at 500 calls with the default buffers), restored after.

Measured:

* CPU: user + system time of every process of the system under test (ours: the
  ``callmeter`` process and its worker processes; SIPp: the UAC and the UAS), sampled every
  0.2 s with psutil and interpolated at the edges of the steady window: from the moment the
  last call was placed plus --settle seconds, for --hold seconds, when all N calls are up and
  nothing is being set up or torn down.  ``CPU per call`` is milliseconds of CPU per second of
  one call.  Ours: the run clock's start is the report's "started" (one process) or the
  arrival of the first 5 s metric window line (several: the windows are on the run clock);
  SIPp: the UAC's start, when its first call leaves.
* Machine cores: the busy CPU of the whole machine over the same window (psutil.cpu_times:
  everything but idle and iowait). Per-process times miss kernel work done for a process in
  another context: during SIPp's runs about 0.35 of a core of softirq (its packets) ran
  outside its processes, while ours was all charged to ours. Nothing else should run.
* Achieved packet rate: ours, received RTP packets (report["total"]["rtp"]["received"],
  both directions) over the packets due: per established call, from the calls CSV, the held
  time (200 OK to BYE) at 50 packets/s, rounded up, for each direction.  SIPp does not count
  RTP: an nftables table counts UDP packets on ``lo`` at the input hook; the packets the UAS
  echoed back (source port = its media port) are those that went UAC -> UAS and were read
  by the UAS, over the packets due (established calls x packets of the pcap).  The echo's
  arrival back at the UAC is not counted: SIPp's UAC never reads it.
* Jitter p95: ours from the report (RFC 3550 interarrival jitter of every stream); SIPp
  does not measure jitter ('-').

Not a test: it prints figures, no verdict.  Per run details go to stderr as JSON lines.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import json
import math
import os
import re
import resource
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
sys.path.insert(0, str(SIPP_DIR))

from rtp_pcap import PACKET_S, write_rtp_pcap  # noqa: E402

PPS = round(1 / PACKET_S)  # packets per second per direction
WINDOW_S = 5.0  # callmeter's metric window: its first line marks 5 s on the run clock
RAMP_UP_S = 0.5  # the plan's ramp-up: nothing registers, calls start when it ends
NOFILE = 65536
RMEM = 4 * 1024 * 1024
NFT_TABLE = "callmeter_bench_lvs"
SAMPLE_S = 0.2


# -- CPU of a set of processes over time --------------------------------------------------


class CpuSampler(threading.Thread):
    """Sample the summed user + system CPU time of some processes every ``SAMPLE_S``."""

    def __init__(self, processes: Callable[[], list[psutil.Process]]) -> None:
        super().__init__(daemon=True)
        self._processes = processes
        self._last: dict[int, float] = {}  # pid -> CPU seconds, kept after it exits
        self.samples: list[tuple[float, float]] = []  # (wall time, CPU seconds)
        self.busy: list[float] = []  # the whole machine's busy CPU seconds at each sample
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(SAMPLE_S)

    def sample(self) -> None:
        for process in self._processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                self._last[process.pid] = times.user + times.system
        machine = psutil.cpu_times()
        self.busy.append(sum(machine) - machine.idle - getattr(machine, "iowait", 0.0))
        self.samples.append((time.time(), sum(self._last.values())))

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def cpu_at(self, when: float, machine: bool = False) -> float:
        """CPU seconds used up to wall time ``when`` (by the processes, or by the machine)."""
        times = [t for t, _ in self.samples]
        index = bisect.bisect_left(times, when)
        if index == 0 or index >= len(times):
            raise ValueError("the steady window is outside the sampled time")
        t0, t1 = times[index - 1], times[index]
        if machine:
            c0, c1 = self.busy[index - 1], self.busy[index]
        else:
            c0, c1 = self.samples[index - 1][1], self.samples[index][1]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0)

    def cores(self, start: float, end: float) -> tuple[float, float]:
        """(CPU seconds, cores) used between two wall times."""
        used = self.cpu_at(end) - self.cpu_at(start)
        return used, used / (end - start)

    def others(self, start: float, end: float) -> float:
        """Cores the rest of the machine used meanwhile (other work disturbs the figures)."""
        machine = self.cpu_at(end, machine=True) - self.cpu_at(start, machine=True)
        return (machine - (self.cpu_at(end) - self.cpu_at(start))) / (end - start)


def saturated(cores: float, others: float, processes: int) -> bool:
    """Out of CPU: each process busy all the time, or the whole machine busy."""
    machine = os.cpu_count() or 1
    return cores > 0.95 * min(processes, machine) or cores + others > 0.95 * machine


def tree(root: psutil.Process) -> Callable[[], list[psutil.Process]]:
    def processes() -> list[psutil.Process]:
        try:
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return [root]

    return processes


def raise_nofile() -> None:
    """In the child before exec: room for 2 sockets per endpoint (RTP, RTCP) and more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= NOFILE:
        return
    try:  # root with CAP_SYS_RESOURCE may raise the hard limit too
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, max(NOFILE, hard)))
    except (ValueError, OSError):  # else up to the hard limit (20,000 in this container)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Timing:
    """One configuration's timeline, relative to the moment calls start being placed."""

    def __init__(self, calls: int, rate: float, hold: float, settle: float) -> None:
        self.calls = calls
        self.placing = calls / rate  # the last call leaves at about this time
        self.steady_start = self.placing + settle
        self.steady_end = self.steady_start + hold
        # Each call lasts long enough that the first one is still up at steady_end, and half a
        # packet time more than a whole number of packets: a stream sends exactly
        # ``packets`` packets however its start and its BYE fall within +-10 ms.
        self.packets = math.ceil((self.steady_end + 0.5) * PPS) + 1
        self.call_s = (self.packets - 0.5) * PACKET_S


# -- ours ---------------------------------------------------------------------------------


def callmeter_command() -> list[str]:
    beside = Path(sys.executable).parent / "callmeter"
    found = str(beside) if beside.exists() else shutil.which("callmeter")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from callmeter.cli import main; sys.exit(main())"]


def loopback_plan(timing: Timing, rate: float) -> dict[str, Any]:
    """examples/loopback.json at ``timing.calls`` calls: N callers call N callees directly."""
    n = timing.calls
    return {
        "name": f"loopback-{n}",
        "description": "bench/loopback_vs_sipp.py: the worker calls itself, G.711 20 ms.",
        "duration_s": math.ceil(RAMP_UP_S + timing.placing + timing.call_s + 2),
        "ramp_up_s": RAMP_UP_S,
        "groups": [
            {
                "name": "callees",
                "role": "callee",
                "count": n,
                "user": "callee-{i:04d}",
                "codecs": ["PCMU"],
            },
            {
                "name": "callers",
                "role": "caller",
                "count": n,
                "user": "caller-{i:04d}",
                "codecs": ["PCMU"],
                "call": {
                    "to": "callees",
                    "duration_s": round(timing.call_s, 3),
                    "rate_per_s": rate,
                    "calls": 1,
                },
            },
        ],
    }


def _read_lines(stream: IO[str], lines: list[tuple[float, str]]) -> None:
    for line in stream:
        lines.append((time.time(), line.rstrip("\n")))


def run_ours(timing: Timing, processes: int, rate: float, work: Path) -> dict[str, Any]:
    n = timing.calls
    tag = f"ours-{n}-p{processes}"
    plan_path, report_path, calls_path = (
        work / f"{tag}.json",
        work / f"{tag}-report.json",
        work / f"{tag}-calls.csv",
    )
    plan_path.write_text(json.dumps(loopback_plan(timing, rate), indent=1))
    env = dict(os.environ)
    env.update(
        {
            "SIP_IP": "127.0.0.1",
            "SIP_PORT": "0",
            "RTP_PORT_MIN": "20000",
            "RTP_PORT_MAX": "59999",
            "MAX_ENDPOINTS": str(max(2 * n, 100)),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "COLUMNS": "300",  # one progress line per window, unwrapped
        }
    )
    command = [
        *callmeter_command(),
        "run",
        str(plan_path),
        "--processes",
        str(processes),
        "--report",
        str(report_path),
        "--calls",
        str(calls_path),
    ]
    udp_before = udp_counters()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=raise_nofile,
    ) as child:
        sampler = CpuSampler(tree(psutil.Process(child.pid)))
        sampler.start()
        assert child.stdout is not None
        reader = threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True)
        reader.start()
        code = child.wait()
        reader.join(5)
        sampler.stop()
    udp = udp_delta(udp_before, udp_counters())
    if code not in (0, 1) or not report_path.exists():
        tail = "\n".join(text for _, text in lines[-15:])
        raise RuntimeError(f"callmeter run exited {code}:\n{tail}")
    report = json.loads(report_path.read_text())

    # callmeter run's plain progress: one line per window, "5.0/65s  up 500 ..." (or the
    # long form "t=5.0/65 s | calls up 500 | ...").
    window_line = re.compile(r"\s*(t=)?\s*[\d.]+/[\d.]+ ?s[ |]")
    windows = [arrived for arrived, text in lines if window_line.match(text)]
    if not windows:
        raise RuntimeError("no metric window line: cannot place the steady window")
    # The run clock's 0 in wall time: one process reports it ("started"); with several, the
    # report's "started" is the coordinator's, before the workers start their clocks, so
    # take the first window line's arrival (late by the printing, 40 to 130 ms at p1).
    by_line = windows[0] - WINDOW_S
    clock0 = float(report["started"]) if processes == 1 else by_line
    calls_start = clock0 + RAMP_UP_S
    start, end = calls_start + timing.steady_start, calls_start + timing.steady_end
    cpu_s, cores = sampler.cores(start, end)

    due, last_up, first_end = _due_packets(calls_path)
    total = report["total"]
    established = total["sip"]["calls"]["established"]
    received = total["rtp"]["received"]["packets"]
    steady_ok = (
        last_up is not None
        and first_end is not None
        and last_up - RAMP_UP_S < timing.steady_start
        and first_end - RAMP_UP_S > timing.steady_end
    )
    row = {
        "system": "ours",
        "calls": n,
        "processes": str(processes),
        "calls_up": established,
        "attempted": total["sip"]["calls"]["attempted"],
        "rate_pct": 100.0 * received / due if due else None,
        "received": received,
        "sent": total["rtp"]["sent"]["packets"],
        "due": due,
        "loss_pct": total["rtp"]["loss_pct"],
        "jitter_p95_ms": total["rtp"]["jitter_ms"]["p95"],
        "jitter_max_ms": total["rtp"]["jitter_ms"]["max"],
        "cores": cores,
        "cpu_ms_per_call_s": 1000.0 * cpu_s / (established * (end - start))
        if established
        else None,
        "steady_s": end - start,
        "other_cores": sampler.others(start, end),
        "saturated": saturated(cores, sampler.others(start, end), processes),
        "steady_ok": steady_ok,
        "line_late_s": by_line - clock0 if processes == 1 else None,
        "udp": udp,
        "exit": code,
    }
    return row


def _due_packets(calls_path: Path) -> tuple[int, float | None, float | None]:
    """Packets due (both directions) from each established call's held time in the calls CSV.

    A caller's stream starts at the 200 OK (start_s + setup_ms) and stops at its BYE (end_s);
    a 20 ms stream sends ceil(held / 20 ms) packets in that time, and its callee as many (the
    plan's call duration is a whole number of packet times and a half, so that a millisecond
    either way does not change the count).
    Also returns the run-clock time the last call came up and the first call ended.
    """
    due = 0
    last_up: float | None = None
    first_end: float | None = None
    with calls_path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["direction"] != "out" or row["final_code"] != "200" or not row["setup_ms"]:
                continue
            up = float(row["start_s"]) + float(row["setup_ms"]) / 1000.0
            ended = float(row["end_s"])
            due += 2 * math.ceil((ended - up) * PPS - 1e-6)
            last_up = up if last_up is None else max(last_up, up)
            first_end = ended if first_end is None else min(first_end, ended)
    return due, last_up, first_end


# -- SIPp ---------------------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_media_port(low: int, exclude: set[int]) -> int:
    """An even port with port and port + 2 free (SIPp's echo binds both)."""
    for port in range(low, low + 2000, 4):
        if port in exclude or port + 2 in exclude:
            continue
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
            ):
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 2))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no free media port pair from {low}")


def sysctl(name: str, value: str | None = None) -> str:
    if value is None:
        return subprocess.run(
            ["sysctl", "-n", name], check=True, capture_output=True, text=True
        ).stdout.strip()
    subprocess.run(["sysctl", "-q", "-w", f"{name}={value}"], check=True)
    return value


@contextlib.contextmanager
def socket_buffers(size: int) -> Iterator[None]:
    """net.core.rmem_default/rmem_max at least ``size`` for the block, restored after."""
    names = ("net.core.rmem_default", "net.core.rmem_max")
    saved = {name: sysctl(name) for name in names}
    try:
        for name in names:
            if int(saved[name]) < size:
                sysctl(name, str(size))
        yield
    finally:
        for name, value in saved.items():
            sysctl(name, value)


@contextlib.contextmanager
def echo_counters(media_port: int) -> Iterator[Callable[[], dict[str, int]]]:
    """An nftables table counting UDP on ``lo`` to and from the UAS's media port."""
    rules = f"""
table inet {NFT_TABLE} {{
  counter to_uas {{}}
  counter from_uas {{}}
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "lo" udp dport {media_port} counter name to_uas
    iifname "lo" udp sport {media_port} counter name from_uas
  }}
}}
"""
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)

    def read() -> dict[str, int]:
        listing = subprocess.run(
            ["nft", "-j", "list", "counters", "table", "inet", NFT_TABLE],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        counts = {}
        for item in json.loads(listing)["nftables"]:
            if "counter" in item:
                counts[item["counter"]["name"]] = int(item["counter"]["packets"])
        return counts

    try:
        yield read
    finally:
        subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], check=False)


def write_scenario(work: Path, timing: Timing) -> tuple[Path, int]:
    pcap = work / f"pcmu-20ms-{timing.calls}.pcap"
    packets = write_rtp_pcap(pcap, timing.packets)
    template = string.Template((SIPP_DIR / "uac_pcap_20ms.xml").read_text(encoding="latin-1"))
    # The pause outlasts the pcap a little: the player thread ends before the BYE kills it.
    scenario = work / f"uac-{timing.calls}.xml"
    scenario.write_text(
        template.substitute(pcap=str(pcap), pause_ms=round(timing.call_s * 1000) + 200),
        encoding="latin-1",
    )
    return scenario, packets


def _stat_rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(encoding="latin-1") as handle:
        lines = [line.rstrip("\n;") for line in handle if line.strip()]
    if not lines:
        return []
    header = lines[0].split(";")
    return [dict(zip(header, line.split(";"), strict=False)) for line in lines[1:]]


def _epoch(field: str) -> float:
    return float(field.split("\t")[-1])  # "date<TAB>time<TAB>epoch"


def run_sipp(timing: Timing, rate: float, sipp: str, work: Path) -> dict[str, Any]:
    n = timing.calls
    scenario, packets = write_scenario(work, timing)
    uas_port, uac_port = free_udp_port(), free_udp_port()
    uas_media = free_media_port(16000, set())
    uac_media = free_media_port(17000, {uas_media})
    stat = work / f"sipp-{n}-stat.csv"
    stat.unlink(missing_ok=True)
    common = ["-i", "127.0.0.1", "-mi", "127.0.0.1", "-nostdin"]
    uas_cmd = [sipp, "-sn", "uas", "-rtp_echo", "-p", str(uas_port), "-mp", str(uas_media)]
    uac_cmd = [
        sipp,
        f"127.0.0.1:{uas_port}",
        "-sf",
        str(scenario),
        "-p",
        str(uac_port),
        "-mp",
        str(uac_media),
        "-r",
        f"{rate:g}",
        "-rp",
        "1000",
        "-m",
        str(n),
        "-l",
        str(n),
        "-timeout",
        f"{math.ceil(timing.placing + timing.call_s + 30)}s",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
    ]
    with socket_buffers(RMEM), echo_counters(uas_media) as counters:
        udp_before = udp_counters()
        log = (work / f"sipp-{n}.log").open("w")
        uas = subprocess.Popen(
            [*uas_cmd, *common],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=raise_nofile,
        )
        try:
            time.sleep(0.5)
            if uas.poll() is not None:
                raise RuntimeError(f"sipp UAS exited {uas.returncode}: see {log.name}")
            launched = time.time()
            uac = subprocess.Popen(
                [*uac_cmd, *common],
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=raise_nofile,
            )
            pair = [psutil.Process(uac.pid), psutil.Process(uas.pid)]
            sampler = CpuSampler(lambda: pair)
            uas_only = CpuSampler(lambda: pair[1:])  # which of the two runs out of CPU
            sampler.start()
            uas_only.start()
            # SIPp's own -timeout did not end a UAC left with one stuck call when 1,000 calls
            # starved it of CPU: end it here, and say so.
            hung = False
            try:
                uac_code = uac.wait(timing.placing + timing.call_s + 20)
            except subprocess.TimeoutExpired:
                hung = True
                uac.terminate()
                try:
                    uac_code = uac.wait(5)
                except subprocess.TimeoutExpired:
                    uac.kill()
                    uac_code = uac.wait()
            time.sleep(0.3)  # the last echoes
            sampler.stop()
            uas_only.stop()
            counts = counters()
        finally:
            uas.terminate()
            try:
                uas.wait(5)
            except subprocess.TimeoutExpired:
                uas.kill()
                uas.wait()
            log.close()
        udp = udp_delta(udp_before, udp_counters())

    rows = _stat_rows(stat)
    if not rows:
        raise RuntimeError(f"sipp UAC exited {uac_code} without statistics: see {log.name}")
    last = rows[-1]
    established = int(last["SuccessfulCall(C)"])
    start, end = launched + timing.steady_start, launched + timing.steady_end
    cpu_s, cores = sampler.cores(start, end)
    uas_cores = uas_only.cores(start, end)[1]
    inside = [r for r in rows if start <= _epoch(r["CurrentTime"]) <= end]
    due = established * packets
    return {
        "system": "SIPp",
        "calls": n,
        "processes": "uac+uas",
        "calls_up": established,
        "attempted": int(last["OutgoingCall(C)"]),
        "failed": int(last["FailedCall(C)"]),
        "rate_pct": 100.0 * counts.get("from_uas", 0) / due if due else None,
        "to_uas": counts.get("to_uas"),
        "echoed": counts.get("from_uas"),
        "due": due,
        "jitter_p95_ms": None,
        "cores": cores,
        "cpu_ms_per_call_s": 1000.0 * cpu_s / (established * (end - start))
        if established
        else None,
        "steady_s": end - start,
        "other_cores": sampler.others(start, end),
        "uac_cores": cores - uas_cores,
        "uas_cores": uas_cores,
        # The UAS echoes in one thread; the UAC has a thread per call.
        "saturated": uas_cores > 0.95 or saturated(cores, sampler.others(start, end), 2),
        "steady_ok": bool(inside) and all(int(r["CurrentCall"]) == n for r in inside),
        "udp": udp,
        "exit": uac_code,
        "uac_hung": hung,
    }


# -- kernel UDP counters (diagnostics) ------------------------------------------------------


def udp_counters() -> dict[str, int]:
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [line for line in lines if line and line[0] == "Udp:"]
    return {key: int(value) for key, value in zip(udp[0][1:], udp[1][1:], strict=True)}


def udp_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = ("InErrors", "RcvbufErrors", "SndbufErrors")
    return {key: after.get(key, 0) - before.get(key, 0) for key in keys}


# -- the table ------------------------------------------------------------------------------


def _fmt(value: float | None, width: int, places: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.{places}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    sipp = {row["calls"]: row for row in rows if row["system"] == "SIPp"}
    header = (
        f"{'system':<6} {'calls':>5} {'processes':>9} {'calls up':>8} {'achieved %':>10} "
        f"{'jitter p95 ms':>13} {'CPU cores':>9} {'CPU ms/call-s':>13} {'ours/SIPp':>9} "
        f"{'machine cores':>13} {'ours/SIPp':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = machine_ratio = None
        reference = sipp.get(row["calls"])
        if (
            row["system"] == "ours"
            and reference is not None
            and row["cpu_ms_per_call_s"]
            and reference["cpu_ms_per_call_s"]
        ):
            ratio = row["cpu_ms_per_call_s"] / reference["cpu_ms_per_call_s"]
            machine_ratio = ratio * machine_share(row) / machine_share(reference)
        flag = "" if row["steady_ok"] else "  (not all calls up through the window)"
        if row["saturated"]:
            flag += "  (CPU-bound)"
        if row.get("uac_hung"):
            flag += "  (UAC hung with calls up: terminated)"
        print(
            f"{row['system']:<6} {row['calls']:>5} {row['processes']:>9} "
            f"{row['calls_up']:>8} {_fmt(row['rate_pct'], 10, 3)} "
            f"{_fmt(row['jitter_p95_ms'], 13, 3)} {row['cores']:9.3f} "
            f"{_fmt(row['cpu_ms_per_call_s'], 13, 3)} {_fmt(ratio, 9, 2)} "
            f"{row['cores'] + row['other_cores']:13.3f} {_fmt(machine_ratio, 9, 2)}{flag}"
        )


def machine_share(row: dict[str, Any]) -> float:
    """The whole machine's busy cores over the system's own (>= 1 when nothing else ran)."""
    return float(row["cores"] + row["other_cores"]) / row["cores"]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", default="250,500,1000", help="call counts, comma-separated")
    parser.add_argument("--hold", type=float, default=20.0, help="steady seconds measured")
    parser.add_argument("--rate", type=float, default=100.0, help="calls placed per second")
    parser.add_argument("--settle", type=float, default=1.5, help="seconds after the last call")
    parser.add_argument(
        "--processes",
        default=f"1,{os.cpu_count() or 1}",
        help="our process counts, comma-separated (default: 1 and one per core)",
    )
    parser.add_argument("--sipp", default=shutil.which("sipp") or "/usr/bin/sipp")
    parser.add_argument("--no-sipp", action="store_true", help="run ours only")
    parser.add_argument("--work", help="keep plans, reports, pcaps and logs in this directory")
    args = parser.parse_args()
    counts = [int(c) for c in args.calls.split(",")]
    process_counts = sorted({int(p) for p in args.processes.split(",")})
    with_sipp = not args.no_sipp
    if with_sipp and os.geteuid() != 0:
        print(
            "SIPp skipped: its pcap player needs root (raw socket), and so do sysctl and nft",
            file=sys.stderr,
        )
        with_sipp = False
    if with_sipp and not Path(args.sipp).exists():
        print(f"SIPp skipped: {args.sipp} not found", file=sys.stderr)
        with_sipp = False
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="callmeter-lvs-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    for n in counts:
        timing = Timing(n, args.rate, args.hold, args.settle)
        for processes in process_counts:
            rows.append(run_ours(timing, processes, args.rate, work))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        if with_sipp:
            rows.append(run_sipp(timing, args.rate, args.sipp, work))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(
        f"\nloopback G.711 PCMU 20 ms, calls placed at {args.rate:g}/s, CPU over {args.hold:g} s "
        f"with every call up; {time.monotonic() - began:.0f} s in all; files in {work}"
    )
    print_table(rows)
    print(
        "achieved %: ours = RTP packets received (both directions) / due from each call's held "
        "time;\n  SIPp = packets its UAS echoed (nft counter on lo) / due (calls x pcap packets)."
        "\nCPU: user+system of all the system's processes over the steady window; "
        "ms/call-s = ms of CPU per second of one call;\n  CPU-bound: its processes (or the "
        "machine) were busy all the time, so the CPU is what there was, not what it needed."
        "\nmachine cores: the whole machine's busy CPU (/proc/stat) over the same window: "
        "also kernel work done\n  for the system outside its processes (softirq: SIPp's "
        "packets), and anything else that ran."
    )


if __name__ == "__main__":
    main()
