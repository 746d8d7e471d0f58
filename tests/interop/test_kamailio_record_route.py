"""The route set through a record-routing proxy (RFC 3261 12.1.1, 12.1.2, 16.6, 16.12).

Kamailio 5.6 is registrar (usrloc in memory) and stateful proxy: it ``record_route()``s every
INVITE and relays in-dialog requests on their Route header with ``loose_route()``.  ``callmeter
run`` registers callees there and calls them from callers registered there too, so every INVITE
goes caller -> Kamailio -> callee.  The dialog's later requests must follow the route set:

- the callee's 1xx/2xx copy the INVITE's Record-Route (12.1.1), so the caller's route set is the
  proxy (12.1.2) and its ACK and BYE carry ``Route: <sip:127.0.0.1:PORT;lr>`` to the proxy;
- without that, the caller would send them straight to the callee's Contact and the proxy would
  never see them (the bug this test was written for).

Kamailio logs every request it receives, and every one it loose-routes, by method (xlog); the
counts prove the path.  A re-INVITE is not part of it: callmeter never sends one (it only
answers them), so there is none to trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.interop.kamailio import DOMAIN, start_record_route_proxy, traced_requests

ROOT = Path(__file__).parents[2]
CALLS = 3


def plan(port: int) -> dict[str, object]:
    return {
        "name": "record-route",
        "duration_s": 8,
        "ramp_up_s": 1,
        "registrars": {
            "proxy": {
                "host": "127.0.0.1",
                "port": port,
                "transport": "udp",
                "domain": DOMAIN,
                "expires": 300,
            }
        },
        "groups": [
            {"name": "callees", "role": "callee", "count": CALLS, "registrar": "proxy",
             "user": "2{i:03d}", "codecs": ["PCMU"]},
            {"name": "callers", "role": "caller", "count": CALLS, "registrar": "proxy",
             "user": "1{i:03d}", "codecs": ["PCMU"],
             "call": {"to": "callees", "duration_s": 2, "rate_per_s": 2, "calls": 1}},
        ],
    }  # fmt: skip


def test_ack_and_bye_follow_the_record_route_through_kamailio() -> None:
    work = Path(tempfile.mkdtemp(prefix="callmeter-kamailio-rr-"))
    server = start_record_route_proxy(work)
    try:
        path = work / "plan.json"
        path.write_text(json.dumps(plan(server.port)))
        result = subprocess.run(
            [sys.executable, "-m", "callmeter.cli", "run", str(path), "--json"],
            env={
                **os.environ,
                "SIP_IP": "127.0.0.1",
                "SIP_PORT": "0",
                "RTP_PORT_MIN": "35000",
                "RTP_PORT_MAX": "35999",
            },
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    finally:
        server.stop()
    print(f"\nKamailio log: {server.log}")
    assert result.returncode == 0, result.stderr[-3000:]
    total = json.loads(result.stdout)["total"]
    established = total["sip"]["calls"]["established"]
    assert established == CALLS, total["sip"]
    received, loose = traced_requests(server.log)
    print(f"requests at the proxy: {received}; loose-routed: {loose}")
    # Every call's INVITE came through the proxy (it is the registrar: the only way to a callee).
    assert received.get("INVITE", 0) >= established
    # 12.1.2 / 13.2.2.4: the ACK of each 2xx follows the route set, to the proxy.
    assert loose.get("ACK", 0) >= established, (received, loose)
    # 15.1.1: so does the BYE that ends each call.
    assert loose.get("BYE", 0) >= established, (received, loose)
