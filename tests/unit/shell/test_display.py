"""What ``callmeter run`` prints: the live line, plain progress lines and the summary fit the
width (80 columns, a log file's), name every failure cause, and never call an interrupted run a
pass."""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from callmeter.display import Display, live_line, summary_lines

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
README = Path(__file__).parents[3] / "README.md"


def _spread(mean: float | None, p95: float | None, top: float | None) -> dict[str, Any]:
    return {"mean": mean, "p95": p95, "max": top}


def figures(
    sent: int,
    received: int,
    *,
    calls: int = 25,
    setup: float | None = None,
    pdd: float | None = None,
    jitter: float = 0.27,
    rtt: float = 0.67,
) -> dict[str, Any]:
    """One group's figures in the report's shape (MetricSet.as_report)."""
    return {
        "sip": {
            "register": {
                "attempted": 0,
                "succeeded": 0,
                "failed": 0,
                "time_ms": {"p50": None, "p95": None, "max": None},
                "failed_by_code": {},
                "causes": {},
            },
            "calls": {
                "attempted": calls,
                "established": calls,
                "failed": 0,
                "failed_by_code": {},
                "causes": {},
            },
            "setup_time_ms": {"p50": setup, "p95": setup, "max": setup},
            "pdd_ms": {"p50": pdd, "p95": pdd, "max": pdd},
        },
        "rtp": {
            "sent": {"packets": sent, "bytes": sent * 172},
            "received": {"packets": received, "bytes": received * 172},
            "lost": {"packets": 0},
            "loss_pct": 0.0,
            "jitter_ms": _spread(0.1, jitter, jitter),
            "rtt_ms": _spread(0.5, rtt, rtt),
            "mos": {"mean": 4.385, "min": 4.385},
        },
    }


def loopback_report() -> dict[str, Any]:
    """The figures of the README's loopback run (examples/loopback.json: 20 s, 2 processes)."""
    total = figures(37544, 37544, setup=202.701, pdd=1.305, jitter=0.202, rtt=0.574)
    total["rtp"]["emodel"] = {
        "PCMU": {
            "ie": 0.0,
            "bpl": 25.1,
            "plc": True,
            "source": "G.113 App. I: G.711 with App. I PLC",
            "provisional": False,
        }
    }
    return {
        "plan": "loopback",
        "run": "local",
        "started": 1796402188.961,
        "duration_s": 20.006,
        "endpoints": 50,
        "processes": 2,
        "windows": 4,
        "interrupted": False,
        "groups": {
            "callees": figures(18775, 18769, jitter=0.202, rtt=0.574),
            "callers": figures(18769, 18775, setup=202.701, pdd=1.305, jitter=0.2, rtt=0.443),
        },
        "total": total,
        "pass": {
            "passed": True,
            "criteria": [
                {
                    "criterion": "every stream received media",
                    "limit": 0,
                    "value": 0,
                    "passed": True,
                },
                {
                    "criterion": "setup_time_ms_p95_max",
                    "limit": 500.0,
                    "value": 202.701,
                    "passed": True,
                },
                {"criterion": "loss_pct_max", "limit": 0.1, "value": 0.0, "passed": True},
                {"criterion": "jitter_ms_p95_max", "limit": 5.0, "value": 0.202, "passed": True},
                {"criterion": "mos_min", "limit": 4.0, "value": 4.385, "passed": True},
            ],
        },
    }


def failing_report() -> dict[str, Any]:
    """Registrations that got no answer or were rejected, calls that failed."""
    report = loopback_report()
    for part in (report["groups"]["callers"], report["total"]):
        part["sip"]["register"].update(
            attempted=25,
            succeeded=19,
            failed=6,
            time_ms={"p50": 12.0, "p95": 35.25, "max": 40.0},
            failed_by_code={"401": 2, "408": 4},
            causes={
                "no answer from 127.0.0.1:5060 over UDP": 4,
                "401 Unauthorized from 127.0.0.1:5060 (credentials rejected)": 2,
            },
        )
        part["sip"]["calls"].update(
            established=22, failed=3, failed_by_code={"486": 3}, causes={"486 Busy Here": 3}
        )
    report["pass"]["passed"] = False
    report["pass"]["criteria"].append(
        {"criterion": "every call established", "limit": 25, "value": 22, "passed": False}
    )
    return report


def render(report: dict[str, Any], *, plain: bool = False, width: int = 80) -> str:
    """The summary as the terminal (or, plain, the log file) gets it, escape codes and all."""
    out = io.StringIO()
    display = Display(out, plain=plain, width=width, terminal=not plain)
    display.start(report["plan"], report.get("endpoints", 0), 20)
    display.summary(report)
    return out.getvalue()


def lines_of(text: str) -> list[str]:
    """What a terminal shows: escape codes out, a carriage return starts the line again."""
    return [part for line in ANSI.sub("", text).split("\n") for part in line.split("\r")]


def assert_fits(text: str, width: int = 80) -> None:
    too_long = [line for line in lines_of(text) if len(line) > width]
    assert not too_long, too_long


def test_the_summary_fits_80_columns_and_names_every_figure() -> None:
    text = render(loopback_report())
    assert_fits(text)
    shown = ANSI.sub("", text)
    for expected in (
        "callmeter run 'loopback': 20.0 s of 20 s, 50 endpoints, 2 processes",
        "callers  calls 25/25 established, 0 failed, setup p95 202.7 ms, PDD p95 1.3 ms",
        "         RTP 37,544 sent, 37,544 received, 0 lost (0.000 %)",
        "         jitter p95 0.20 ms, RTT p95 0.57 ms, MOS 4.38 (min 4.38)",
        "  ok   setup_time_ms_p95_max: 202.701 (limit 500)",
    ):
        assert expected in shown.splitlines(), expected
    assert lines_of(text)[-2] == "PASSED"  # the last line (then the final newline)
    # A callee group measures no setup time: no "-" figures for it.
    callees = [line for line in shown.splitlines() if line.startswith("callees")]
    assert callees == ["callees  calls 25/25 established, 0 failed"]


def test_the_summary_is_the_same_on_a_wide_terminal_in_a_log_and_fits_a_narrow_one() -> None:
    def summary(text: str) -> list[str]:
        lines = lines_of(text)
        return lines[
            lines.index("callmeter run 'loopback': 20.0 s of 20 s, 50 endpoints, 2 processes") :
        ]

    at_80 = summary(render(loopback_report()))
    assert summary(render(loopback_report(), width=160)) == at_80
    logged = render(loopback_report(), plain=True)
    assert "\x1b" not in logged
    assert summary(logged) == at_80
    narrow = render(failing_report(), width=50)
    assert_fits(narrow, 50)
    assert "PDD p95 1.3 ms" in ANSI.sub("", narrow)  # flowed to the next line, not cut


def test_failure_causes_one_line_each_with_counts() -> None:
    text = ANSI.sub("", render(failing_report()))
    assert_fits(text)
    lines = text.splitlines()
    assert "callers  registered 19/25, 6 failed, time p95 35.2 ms" in lines
    assert "         calls 22/25 established, 3 failed, setup p95 202.7 ms, PDD p95 1.3 ms" in (
        lines
    )
    # Under the figures (of every group and the total), before the criteria; the total's
    # causes are the callers' again: not repeated.
    start = lines.index("callers: registrations failed")
    assert lines[start - 2].startswith("         jitter p95")
    assert lines[start - 1] == "E-model  PCMU Ie 0 Bpl 25.1 (with PLC)"
    assert lines[start : start + 6] == [
        "callers: registrations failed",
        "  4 x no answer from 127.0.0.1:5060 over UDP",
        "  2 x 401 Unauthorized from 127.0.0.1:5060 (credentials rejected)",
        "callers: calls failed",
        "  3 x 486 Busy Here",
        "  ok   every stream received media: 0 (limit 0)",
    ]
    assert "  FAIL every call established: 22 (limit 25)" in lines
    assert lines[-1] == "FAILED"


def test_streams_without_media_and_packets_that_are_not_audio_are_named() -> None:
    """Missing media is never shown as perfect: the count, the kinds, the likely cause; and
    events, comfort noise and other SSRCs appear as what they are."""
    report = loopback_report()
    rtp = report["total"]["rtp"]
    rtp.update(streams=50, without_media=3, no_media=2, stopped=1, loss_pct=None)
    rtp["no_media_hint"] = (
        "3 of 50 streams without media: 2 got no RTP and no RTCP: check SDP_IP / EXTERNAL_IP"
    )
    rtp["received"].update(events=12, cn=3, other_ssrc=12)
    rtp["emodel"]["PCMU"].update(plc=False, bpl=4.3, provisional=True)
    lines = summary_lines(report, 80, 20)
    assert all(len(line) <= 80 for line in lines)
    assert lines[8:10] == [
        "         RTP 37,544 sent, 37,544 received, 0 lost (- %), 12 events,",
        "         3 comfort noise, 12 from other SSRCs",
    ]
    assert "         3 of 50 streams without media, no media 2, stopped 1" in lines
    assert "E-model  PCMU Ie 0 Bpl 4.3 (without PLC, provisional)" in lines
    assert lines[lines.index("E-model  PCMU Ie 0 Bpl 4.3 (without PLC, provisional)") + 1] == (
        "media: 3 of 50 streams without media: 2 got no RTP and no RTCP: check SDP_IP /"
    )


def test_a_report_with_a_total_alone_shows_its_causes() -> None:
    report = failing_report()
    report.pop("groups")
    lines = summary_lines(report, 80, 20)
    assert "total: registrations failed" in lines and "  3 x 486 Busy Here" in lines


def test_a_long_cause_is_continued_on_indented_lines_never_cut() -> None:
    report = failing_report()
    cause = "transport error to [2001:db8::1]:5060 over TLS (refused or unreachable) " * 2
    report["groups"]["callers"]["sip"]["calls"]["causes"] = {cause.strip(): 1_000_000}
    text = ANSI.sub("", render(report))
    assert_fits(text)
    flat = " ".join(line.strip() for line in text.splitlines())
    assert f"calls failed 1,000,000 x {cause.strip()}" in flat
    assert "[2001:db8::1]" in text  # not taken for markup


def test_an_older_report_without_causes_shows_its_codes() -> None:
    report = failing_report()
    for part in (*report["groups"].values(), report["total"]):
        for what in ("register", "calls"):
            part["sip"][what].pop("causes")
    report.pop("interrupted")
    text = ANSI.sub("", render(report))
    assert_fits(text)
    lines = text.splitlines()
    assert lines[lines.index("callers: calls failed") + 1] == "  3 x 486"
    assert lines[lines.index("callers: registrations failed") + 1] == "  4 x 408"
    assert lines[-1] == "FAILED"
    del report["total"]["sip"]["calls"]["failed_by_code"]
    del report["groups"]["callers"]["sip"]
    assert summary_lines(report, 80, 20)[-1] == "FAILED"  # whatever is missing


def test_an_interrupted_run_is_never_a_pass() -> None:
    report = loopback_report()
    report["interrupted"] = True
    report["duration_s"] = 4.012
    # Even a report that (wrongly) says passed: the summary says INTERRUPTED.
    for plain in (False, True):
        text = ANSI.sub("", render(report, plain=plain))
        assert "PASSED" not in text
        assert text.splitlines()[-1] == "INTERRUPTED (after 4.0 s of 20 s): not a pass"
    report["pass"]["passed"] = False
    lines = summary_lines(report, 80)  # no plan duration known
    assert lines[-1] == "INTERRUPTED (after 4.0 s): not a pass"


def window(seq: int, register_failed: int = 0, calls_failed: int = 0) -> dict[str, Any]:
    total = figures(500 * seq, 500 * seq)
    total["sip"]["register"]["failed"] = register_failed
    total["sip"]["calls"]["failed"] = calls_failed
    return {"seq": seq, "start": 5.0 * seq, "end": 5.0 * (seq + 1), "groups": {}, "total": total}


def state(elapsed: float, failures: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "elapsed_s": elapsed,
        "registered": 44,
        "to_register": 50,
        "calls_up": 20,
        "calls_attempted": 25,
        "calls_established": 22,
        "failures": failures,
        **more,
    }


def test_plain_progress_is_one_line_per_window_without_escape_codes() -> None:
    out = io.StringIO()
    display = Display(out, plain=True)
    display.start("loopback", 50, 20)
    for tick in range(1, 16):
        windowed = window(tick // 5, register_failed=2, calls_failed=1) if tick % 5 == 0 else None
        display.progress(state(float(tick), failures=3 * (tick // 5)), windowed)
    display.stop()
    text = out.getvalue()
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "callmeter run: plan 'loopback', 50 endpoints, 20 s"
    assert len(lines) == 4  # the plan, then windows at 5, 10, 15 s
    assert lines[1].startswith("5.0/20s ") and lines[3].startswith("15.0/20s ")
    # Every figure, however long the line (a log file's line is never cut).
    assert lines[3] == (
        "15.0/20s  reg 44/50  reg fail 6  up 20  est 22/25  call fail 3  jit 0.27ms  loss 0.00%  "
        "MOS 4.38"
    )  # the failures: the windows' sums, as the state has no counts of its own


def test_plain_lines_keep_one_form_when_a_window_has_no_rtp_figures() -> None:
    """The last window of a run often has no jitter or MOS (no stream sampled): its line
    keeps the form of the others (it switched to the long 't=... | ...' form)."""
    out = io.StringIO()
    display = Display(out, plain=True)
    display.start("small", 8, 6)
    empty = {"total": {"sip": {}, "rtp": {"jitter_ms": {"p95": None}, "mos": {"mean": None}}}}
    display.progress({**state(5.0), "to_register": 0, "registered": 0}, window(1))
    display.progress({**state(6.0), "to_register": 0, "registered": 0, "calls_up": 0}, empty)
    first, last = out.getvalue().splitlines()[1:]
    assert first.startswith("5.0/6s  up 20  est 22/25") and last.startswith("6.0/6s  up 0  est")


def test_the_live_line_is_redrawn_in_place_within_the_terminal_width() -> None:
    out = io.StringIO()
    display = Display(out, plain=False, width=80, terminal=True)
    display.start("loopback", 50, 20)
    display.progress(state(1.0), None)
    display.progress(state(5.0, register_failed=4, calls_failed=2), window(1, 3, 1))
    display.progress(state(6.0, register_failed=4, calls_failed=2), None)
    display.stop()
    display.console.print("interrupted: hanging up")  # what the runner prints on Ctrl-C
    display.progress(state(7.0, register_failed=5, calls_failed=2), None)  # a new live line
    display.summary(failing_report())
    text = out.getvalue()
    assert_fits(text, 80)
    drawn = lines_of(text)
    # The run's own counts (register_failed, calls_failed) when the state has them.
    assert any("reg fail 4" in line and "call fail 2" in line for line in drawn)
    assert any("reg fail 5" in line for line in drawn)
    assert "starting..." in drawn
    assert "interrupted: hanging up" in drawn
    assert drawn[-2] == "FAILED"


def test_the_live_line_keeps_the_most_important_figures_as_the_terminal_narrows() -> None:
    now = state(12.34, register_failed=2, calls_failed=0)
    rtp = window(2)["total"]["rtp"]
    wide = live_line(now, rtp, (2, 0), 20, 200)
    assert wide.startswith("t=12.3/20 s | registered 44/50 | reg fail 2 | calls up 20")
    at_80 = live_line(now, rtp, (2, 0), 20, 79)
    assert len(at_80) <= 79
    assert "reg fail 2" in at_80 and "call fail 0" in at_80 and "MOS 4.38" in at_80
    at_30 = live_line(now, rtp, (2, 0), 20, 30)
    assert at_30.startswith("12.3/20s") and "reg fail 2" in at_30 and len(at_30) <= 30
    assert live_line(now, rtp, (2, 0), 20, 5) == "12.3…"


NUMBER = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
)
CAUSE = st.text(min_size=1, max_size=200)
GROUP = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True)


@st.composite
def random_reports(draw: st.DrawFn) -> dict[str, Any]:
    def group() -> dict[str, Any]:
        part = figures(0, 0)
        for what in ("register", "calls"):
            for key in part["sip"][what]:
                if key not in ("causes", "failed_by_code", "time_ms"):
                    part["sip"][what][key] = draw(NUMBER)
            part["sip"][what]["causes"] = draw(st.dictionaries(CAUSE, NUMBER, max_size=3))
        for key in ("setup_time_ms", "pdd_ms"):
            part["sip"][key]["p95"] = draw(NUMBER)
        for key in ("sent", "received", "lost"):
            part["rtp"][key]["packets"] = draw(NUMBER)
        part["rtp"]["loss_pct"] = draw(NUMBER)
        for key in ("jitter_ms", "rtt_ms"):
            part["rtp"][key]["p95"] = draw(NUMBER)
        part["rtp"]["mos"] = {"mean": draw(NUMBER), "min": draw(NUMBER)}
        return part

    names = draw(st.lists(GROUP, min_size=0, max_size=4, unique=True))
    report = copy.deepcopy(loopback_report())
    report.update(
        plan=draw(GROUP),
        duration_s=draw(NUMBER),
        endpoints=draw(NUMBER),
        processes=draw(NUMBER),
        interrupted=draw(st.booleans()),
        groups={name: group() for name in names},
        total=group(),
    )
    report["pass"]["criteria"].append(
        {"criterion": draw(CAUSE), "limit": draw(NUMBER), "value": draw(NUMBER), "passed": False}
    )
    return report


@settings(max_examples=150, deadline=None)
@given(random_reports(), st.integers(min_value=20, max_value=200))
def test_any_figures_fit_the_width(report: dict[str, Any], width: int) -> None:
    lines = summary_lines(report, min(width, 80), 20)
    assert all(len(line) <= min(width, 80) for line in lines), lines
    if report["interrupted"]:
        assert lines[-1].startswith("INTERRUPTED") and "PASSED" not in lines
    text = render(report, width=width)
    assert_fits(text, min(width, 80))


@settings(max_examples=150, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "elapsed_s": NUMBER,
            "registered": NUMBER,
            "to_register": NUMBER,
            "calls_up": NUMBER,
            "calls_attempted": NUMBER,
            "calls_established": NUMBER,
        }
    ),
    st.tuples(st.integers(0, 10**20), st.integers(0, 10**20)),
    st.integers(min_value=1, max_value=300),
)
def test_any_live_figures_fit_the_terminal(
    now: dict[str, Any], failed: tuple[int, int], width: int
) -> None:
    rtp = {"jitter_ms": {"p95": now["elapsed_s"]}, "loss_pct": now["calls_up"], "mos": {}}
    assert len(live_line(now, rtp, failed, 20, width)) <= width


def test_the_readme_shows_what_the_summary_prints() -> None:
    """README.md's loopback block is this summary, byte for byte (its figures are real)."""
    text = README.read_text(encoding="utf-8")
    block = text.split("What the loopback example printed", 1)[1].split("```\n", 2)[1]
    assert block.splitlines() == summary_lines(loopback_report(), 80, 20)
