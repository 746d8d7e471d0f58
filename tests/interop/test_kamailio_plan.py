"""`callmeter run` with a plan through Kamailio: digest REGISTER, 407 on INVITE, real RTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.interop.kamailio import DOMAIN, start_kamailio

ROOT = Path(__file__).parents[2]


def test_registrar_plan_through_kamailio() -> None:
    work = Path(tempfile.mkdtemp(prefix="callmeter-kamailio-plan-"))
    server = start_kamailio(work, algorithm="SHA-256")
    try:
        plan = json.loads((ROOT / "examples" / "registrar-auth.json").read_text())
        plan["registrars"]["pbx"]["port"] = server.port
        plan["duration_s"], plan["ramp_up_s"] = 8, 2
        for group in plan["groups"]:
            group["count"] = 4
            if "call" in group:
                group["call"]["duration_s"] = 3
        path = work / "plan.json"
        path.write_text(json.dumps(plan))
        result = subprocess.run(
            [sys.executable, "-m", "callmeter.cli", "run", str(path), "--json", "--processes", "2"],
            env={
                **os.environ,
                "SIP_IP": "127.0.0.1",
                "SIP_PORT": "0",
                "RTP_PORT_MIN": "34000",
                "RTP_PORT_MAX": "34999",
            },
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        print(f"\nKamailio log: {server.log}")
        assert result.returncode == 0, result.stderr[-3000:]
        total = json.loads(result.stdout)["total"]
        assert total["sip"]["register"]["succeeded"] == 8
        assert total["sip"]["register"]["failed"] == 0
        assert total["sip"]["calls"]["established"] == 4
        assert total["rtp"]["lost"]["packets"] == 0
        assert DOMAIN == "test.example"
    finally:
        server.stop()
