"""Time from ``callmeter run`` to its first INVITE on the wire, for a large plan.

    python bench/first_invite.py                      # 2,000 endpoints, 3 runs
    python bench/first_invite.py --endpoints 4000 --runs 5 --source /path/to/other/checkout

The plan has N/2 listening callees (their sockets, their handlers) and N/2 callers that call a
UDP socket of this script, one call per second, so the first INVITE that reaches the socket
marks the end of everything that happens before a test starts: plan validation, media
preparation, worker processes, SIP sockets, endpoints.  Measured from the moment the command is
started (exec) to the datagram's arrival, on one clock.  ``--source`` runs another checkout's
``callmeter`` (its C extension built in place) for a before/after comparison in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plan(endpoints: int, port: int) -> dict[str, object]:
    half = endpoints // 2
    return {
        "name": "first-invite",
        "duration_s": 8,
        "ramp_up_s": 0,
        "groups": [
            {"name": "callees", "role": "callee", "count": half, "user": "in-{i}"},
            {
                "name": "callers",
                "role": "caller",
                "count": endpoints - half,
                "user": "out-{i}",
                "call": {"to": f"sip:sink@127.0.0.1:{port}", "duration_s": 1, "rate_per_s": 1},
            },
        ],
    }


def one_run(source: Path, endpoints: int, processes: int | None) -> float:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(120)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "plan.json"
        path.write_text(json.dumps(plan(endpoints, sink.getsockname()[1])))
        command = [sys.executable, "-m", "callmeter.cli", "run", str(path), "--plain"]
        if processes:
            command += ["--processes", str(processes)]
        env = {
            **os.environ,
            "PYTHONPATH": str(source),
            "SIP_IP": "127.0.0.1",
            "SIP_PORT": "0",
            "RTP_PORT_MIN": "20000",
            "RTP_PORT_MAX": "59999",
            "MAX_ENDPOINTS": str(max(endpoints, 1000)),
        }
        started = time.monotonic()
        process = subprocess.Popen(
            command, env=env, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while True:
                try:
                    data = sink.recv(65535)
                except TimeoutError:
                    raise SystemExit(f"{source}: no INVITE within 120 s") from None
                if data.startswith(b"INVITE "):
                    return time.monotonic() - started
        finally:
            process.terminate()
            process.wait(timeout=60)
            sink.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--source", type=Path, action="append", default=[])
    args = parser.parse_args()
    sources = [ROOT, *args.source]
    figures: dict[Path, list[float]] = {source: [] for source in sources}
    for _ in range(args.runs):  # interleaved: a slow minute hits both alike
        for source in sources:
            figures[source].append(one_run(source, args.endpoints, args.processes))
    base = statistics.median(figures[ROOT])
    print(f"{args.endpoints} endpoints, {args.runs} runs, seconds from exec to first INVITE")
    for source, values in figures.items():
        median = statistics.median(values)
        runs = " ".join(f"{value:.2f}" for value in values)
        print(f"  {source}: median {median:.2f} s ({runs}), {median / base:.2f} x this tree")


if __name__ == "__main__":
    main()
