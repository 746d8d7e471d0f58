"""`callmeter run` as a user runs it: a subprocess, a plan file, exit codes, report, CSV."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[2]
CALLMETER = [sys.executable, "-m", "callmeter.cli"]


def small_plan(tmp_path: Path, **overrides: Any) -> Path:
    plan = {
        "name": "cli-small",
        "duration_s": 6,
        "groups": [
            {"name": "callees", "role": "callee", "count": 4, "user": "in-{i}"},
            {
                "name": "callers",
                "role": "caller",
                "count": 4,
                "user": "out-{i}",
                "codecs": ["PCMA"],
                "call": {"to": "callees", "duration_s": 3, "rate_per_s": 20},
            },
        ],
        **overrides,
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def env() -> dict[str, str]:
    return {
        **os.environ,
        "SIP_IP": "127.0.0.1",
        "SIP_PORT": "0",
        "RTP_PORT_MIN": "30000",
        "RTP_PORT_MAX": "31999",
    }


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CALLMETER, "run", *args],
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_bad_plan_exits_2_naming_the_field(tmp_path: Path) -> None:
    plan = tmp_path / "bad.json"
    plan.write_text(
        json.dumps(
            {
                "name": "bad",
                "duration_s": 5,
                "groups": [{"name": "c", "role": "caller", "count": 0, "call": {"to": "nowhere"}}],
            }
        )
    )
    result = run(str(plan))
    assert result.returncode == 2
    assert "groups[0].count: must be 1..1000000" in result.stderr
    assert "groups[0].call.to: 'nowhere' is neither a group name nor a sip: URI" in result.stderr
    assert result.stdout == ""


def test_unreadable_and_non_json_plans_exit_2(tmp_path: Path) -> None:
    assert run(str(tmp_path / "missing.json")).returncode == 2
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": ')
    result = run(str(broken))
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    result = run(str(small_plan(tmp_path)), "--sip-ip", "10.254.254.254")
    assert result.returncode == 2
    assert "SIP_IP='10.254.254.254' is invalid: must be an address of this host" in result.stderr


def test_a_small_run_passes_with_report_and_calls_csv(tmp_path: Path) -> None:
    report_path, calls_path = tmp_path / "r.json", tmp_path / "calls.csv"
    result = run(
        str(small_plan(tmp_path)), "--report", str(report_path), "--calls", str(calls_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout
    report = json.loads(report_path.read_text())
    total = report["total"]
    assert total["sip"]["calls"] == {
        "attempted": 4,
        "established": 4,
        "failed": 0,
        "failed_by_code": {},
        "causes": {},
    }
    assert total["rtp"]["lost"]["packets"] == 0 and total["rtp"]["loss_pct"] == 0
    # 8 streams (both ends of 4 calls) of ~3 s at 50 packets/s.
    assert 8 * 140 <= total["rtp"]["received"]["packets"] <= 8 * 160
    assert total["rtp"]["mos"]["min"] > 4.0
    assert total["rtp"]["jitter_ms"]["p95"] is not None
    rows = list(csv.DictReader(calls_path.open()))
    assert len(rows) == 8 and {row["direction"] for row in rows} == {"in", "out"}
    assert all(row["final_code"] == "200" for row in rows)
    assert all(row["rtp_stray"] == "0" for row in rows)  # every peer sent from its SDP address


def test_json_output_and_failed_criteria_exit_1(tmp_path: Path) -> None:
    plan = small_plan(tmp_path, **{"pass": {"mos_min": 4.9}})
    result = run(str(plan), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["pass"]["passed"] is False
    failed = [c for c in report["pass"]["criteria"] if not c["passed"]]
    assert [c["criterion"] for c in failed] == ["mos_min"]


def test_interrupt_stops_cleanly_and_still_writes_the_report(tmp_path: Path) -> None:
    plan = small_plan(tmp_path, duration_s=60)
    report_path = tmp_path / "r.json"
    process = subprocess.Popen(
        [*CALLMETER, "run", str(plan), "--report", str(report_path), "--plain"],
        env=env(),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr  # interrupted: never a pass
    assert "interrupted" in stdout
    report = json.loads(report_path.read_text())
    assert report["interrupted"] is True
    assert report["duration_s"] < 15
    assert report["total"]["sip"]["calls"]["established"] == 4
    assert report["groups"]["callers"]["sip"]["calls"]["failed"] == 0


def test_the_readme_loopback_example(tmp_path: Path) -> None:
    """examples/loopback.json, the README's first command: every call up, nothing lost."""
    report_path = tmp_path / "r.json"
    result = run("examples/loopback.json", "--report", str(report_path), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    total = json.loads(report_path.read_text())["total"]
    assert total["sip"]["calls"]["established"] == total["sip"]["calls"]["attempted"] == 25
    assert total["rtp"]["lost"]["packets"] == 0


def test_two_processes_with_calls_across_them(tmp_path: Path) -> None:
    """6 callers, 4 callees over 2 processes: callers 4 and 5 (process 1) call callees 0 and 1
    (process 0), so SIP and RTP cross between the processes; windows and report merge."""
    plan = small_plan(tmp_path)
    data = json.loads(plan.read_text())
    data["groups"][1]["count"] = 6
    plan.write_text(json.dumps(data))
    report_path, calls_path = tmp_path / "r.json", tmp_path / "calls.csv"
    result = run(
        str(plan), "--processes", "2", "--report", str(report_path), "--calls", str(calls_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["processes"] == 2
    assert report["total"]["sip"]["calls"]["established"] == 6
    assert report["groups"]["callees"]["sip"]["calls"]["established"] == 6
    assert report["total"]["rtp"]["lost"]["packets"] == 0
    assert len(list(csv.DictReader(calls_path.open()))) == 12


def write_wav(path: Path, seconds: float = 2.0) -> None:
    import math
    import struct
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 8000)))
                for n in range(int(8000 * seconds))
            )
        )


def test_plan_with_a_media_file_and_one_that_404s(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    wav = tmp_path / "tone.wav"
    write_wav(wav)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        plan = small_plan(tmp_path)
        data = json.loads(plan.read_text())
        data["groups"][1]["media"] = f"{base}/tone.wav"
        data["groups"][0]["media"] = wav.as_uri()
        plan.write_text(json.dumps(data))
        environment = {**env(), "MEDIA_CACHE_DIR": str(tmp_path / "cache")}
        result = subprocess.run(
            [*CALLMETER, "run", str(plan), "--json", "--processes", "1"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        total = json.loads(result.stdout)["total"]
        assert total["sip"]["calls"]["established"] == 4
        assert total["rtp"]["received"]["packets"] > 4 * 2 * 100
        assert list((tmp_path / "cache").rglob("*.json")), "the download is cached"

        data["groups"][1]["media"] = f"{base}/missing.wav"
        plan.write_text(json.dumps(data))
        result = subprocess.run(
            [*CALLMETER, "run", str(plan), "--processes", "1"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
        )
        assert result.returncode == 2
        assert "missing.wav" in result.stderr and "404" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        server.shutdown()


def shortened_example(name: str, tmp_path: Path) -> Path:
    data = json.loads((ROOT / "examples" / name).read_text())
    data["duration_s"] = 7
    for group in data["groups"]:
        group["count"] = 2
        if "call" in group:
            group["call"]["duration_s"] = 3
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_video_example_streams_vp8_and_h264(tmp_path: Path) -> None:
    result = run(str(shortened_example("video.json", tmp_path)), "--json", "--processes", "1")
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)["groups"]
    for name in ("vp8-callers", "h264-callers"):
        figures = groups[name]
        assert figures["sip"]["calls"]["established"] == 2
        # Audio at 50 packets/s plus video (several packets per frame at 25 fps).
        assert figures["rtp"]["received"]["packets"] > 2 * 3 * 60
        assert figures["rtp"]["lost"]["packets"] == 0


def test_mixed_codecs_example_negotiates_per_call(tmp_path: Path) -> None:
    result = run(
        str(shortened_example("mixed-codecs.json", tmp_path)),
        "--json",
        "--calls",
        str(tmp_path / "calls.csv"),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total"]["sip"]["calls"]["established"] == 4
    assert report["total"]["rtp"]["lost"]["packets"] == 0
