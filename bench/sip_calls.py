"""SIP signalling throughput through Kamailio: calls per second one process sustains, CPU per call.

    python bench/sip_calls.py                       # sweep 25, 50, 100, 150 calls/s, 15 s each
    python bench/sip_calls.py --rates 50 --seconds 30

Runs Kamailio 5.6 (Debian) as registrar and proxy with digest auth (tests/interop/kamailio.py's
configuration: 401 on REGISTER, 407 on INVITE, record-route), then for each rate one TestRun of
the real engine: 2 x N endpoints register, callers call callees through Kamailio at the rate,
each call is INVITE/407/INVITE/100/180/200/ACK, held 0.5 s, then BYE/200.  Signalling only:
the SDP is real, no RTP is sent.  Prints a table: achieved calls/s against the rate, failures,
setup time p95, our CPU and Kamailio's CPU in ms per call.  Not a test: figures, no verdict.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twisted.internet import defer, task  # noqa: E402

from callmeter.config import load_config  # noqa: E402
from callmeter.engine.run import TestRun  # noqa: E402
from callmeter.plan import parse_plan  # noqa: E402
from tests.interop.kamailio import DOMAIN, start_kamailio  # noqa: E402
from tests.unit.sipua.sdp_media import SdpOnlyMedia  # noqa: E402

HOLD_S = 0.5


class SignallingOnly(SdpOnlyMedia):
    def results(self) -> list[Any]:
        return []


def plan_for(rate: float, seconds: float, port: int) -> Any:
    callers = max(10, int(rate * 2))
    cycle = callers / rate  # each caller places a call every `cycle` seconds
    return parse_plan(
        {
            "name": f"sip-bench-{rate:g}",
            "duration_s": seconds + 3,
            "ramp_up_s": 2,
            "registrars": {
                "k": {"host": "127.0.0.1", "port": port, "domain": DOMAIN, "expires": 600}
            },
            "groups": [
                {
                    "name": "callees",
                    "role": "callee",
                    "count": callers,
                    "registrar": "k",
                    "user": "2{i:04d}",
                    "password": "secret-2{i:04d}",
                },
                {
                    "name": "callers",
                    "role": "caller",
                    "count": callers,
                    "registrar": "k",
                    "user": "1{i:04d}",
                    "password": "secret-1{i:04d}",
                    "call": {
                        "to": "callees",
                        "duration_s": HOLD_S,
                        "rate_per_s": rate,
                        "calls": None,
                        "pause_s": max(0.0, cycle - HOLD_S - 0.05),
                    },
                },
            ],
        },
        max_endpoints=100_000,
    )


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for one in [process, *process.children(recursive=True)]:
        try:
            times = one.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="25,50,100,150")
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="callmeter-sipbench-"))
    kamailio = start_kamailio(work)
    kam = psutil.Process(kamailio.process.pid)
    rows = []
    try:
        for rate in rates:
            rows.append(measure(rate, args.seconds, kamailio.port, kam))
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        kamailio.stop()
    print(
        f"{'rate/s':>7} {'achieved/s':>10} {'ratio':>6} {'calls':>6} {'failed':>6} "
        f"{'setup p95 ms':>12} {'our CPU ms/call':>15} {'kamailio ms/call':>16} "
        f"{'our cores':>9}"
    )
    for row in rows:
        print(
            f"{row['rate']:7.0f} {row['achieved']:10.1f} {row['achieved'] / row['rate']:6.2f} "
            f"{row['calls']:6d} {row['failed']:6d} {row['setup_p95_ms'] or 0:12.1f} "
            f"{row['our_ms_per_call']:15.2f} {row['kamailio_ms_per_call']:16.2f} "
            f"{row['our_cores']:9.2f}"
        )


def measure(rate: float, seconds: float, port: int, kam: psutil.Process) -> dict[str, Any]:
    config = load_config({"SIP_IP": "127.0.0.1", "SIP_PORT": "0"}, require_token=False)
    plan = plan_for(rate, seconds, port)
    result: dict[str, Any] = {}

    def run(reactor: Any) -> defer.Deferred[None]:
        test = TestRun(plan, config, reactor, lambda group: SignallingOnly())
        marks: dict[str, float] = {}

        def begin() -> None:  # after the ramp-up: registrations done
            marks["our"] = _own_cpu()
            marks["kam"] = cpu_seconds(kam)
            marks["wall"] = reactor.seconds()
            marks["calls"] = test.progress()["calls_established"]

        def end() -> None:
            marks["our_end"] = _own_cpu()
            marks["kam_end"] = cpu_seconds(kam)
            marks["wall_end"] = reactor.seconds()
            marks["calls_end"] = test.progress()["calls_established"]

        reactor.callLater(2.5, begin)
        reactor.callLater(2.5 + seconds - 1, end)

        def done(report: dict[str, Any]) -> None:
            calls = report["total"]["sip"]["calls"]
            window_calls = marks["calls_end"] - marks["calls"]
            wall = marks["wall_end"] - marks["wall"]
            result.update(
                rate=rate,
                calls=calls["established"],
                failed=calls["failed"],
                achieved=window_calls / wall,
                setup_p95_ms=report["total"]["sip"]["setup_time_ms"]["p95"],
                our_ms_per_call=1000 * (marks["our_end"] - marks["our"]) / max(1, window_calls),
                kamailio_ms_per_call=1000
                * (marks["kam_end"] - marks["kam"])
                / max(1, window_calls),
                our_cores=(marks["our_end"] - marks["our"]) / wall,
                failed_by_code=calls["failed_by_code"],
            )

        return test.start().addCallback(done)

    pid = os.fork()
    if pid == 0:  # each rate in a fresh process with a fresh reactor
        with contextlib.suppress(SystemExit):
            task.react(run, [])
        Path(f"/tmp/callmeter-sipbench-{rate:g}.json").write_text(json.dumps(result))
        os._exit(0)
    os.waitpid(pid, 0)
    return dict(json.loads(Path(f"/tmp/callmeter-sipbench-{rate:g}.json").read_text()))


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
