"""What ``callmeter run`` shows: live progress while a test runs, and the summary at the end.

On a terminal the progress is one live line redrawn in place and the summary a table (rich);
when the output is not a terminal (CI logs, pipes) both are plain text lines, one progress line
per metric window.
"""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.table import Table

__all__ = ["Display"]

SUMMARY_WIDTH = 160


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


class Display:
    """Progress lines and the final summary, to ``out``."""

    def __init__(self, out: IO[str], plain: bool | None = None) -> None:
        self.console = Console(file=out, highlight=False, soft_wrap=True)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        if self.plain or self.console.width < SUMMARY_WIDTH:
            # A log file or narrow terminal still gets the whole table, not truncated cells.
            self.console = Console(
                file=out, highlight=False, soft_wrap=True, width=SUMMARY_WIDTH, force_terminal=False
            )
        self._status: Any = None

    def start(self, name: str, endpoints: int, duration_s: float) -> None:
        self.console.print(f"callmeter run: plan {name!r}, {endpoints} endpoints, {duration_s:g} s")
        if not self.plain:
            self._status = self.console.status("starting...")
            self._status.start()

    def progress(self, state: dict[str, Any], window: dict[str, Any] | None) -> None:
        rtp = (window or {}).get("total", {}).get("rtp", {})
        line = (
            f"t={state['elapsed_s']:5.1f}s registered {state['registered']}/"
            f"{state['to_register']} | calls up {state['calls_up']} "
            f"established {state['calls_established']}/{state['calls_attempted']} "
            f"failures {state['failures']} | jitter p95 "
            f"{_fmt(rtp.get('jitter_ms', {}).get('p95'), 2)} ms loss "
            f"{_fmt(rtp.get('loss_pct'), 2)} % MOS {_fmt(rtp.get('mos', {}).get('mean'), 2)}"
        )
        if self._status is not None:
            self._status.update(line)
        elif window is not None:
            self.console.print(line)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def summary(self, report: dict[str, Any]) -> None:
        self.stop()
        table = Table(
            title=f"callmeter run {report['plan']!r}: {report['duration_s']:.1f} s",
            show_lines=False,
        )
        for column in (
            "group",
            "reg ok/att",
            "calls ok/att",
            "failed (codes)",
            "setup p95 ms",
            "PDD p95 ms",
            "sent pkts",
            "recv pkts",
            "loss %",
            "jitter p95 ms",
            "RTT p95 ms",
            "MOS mean/min",
        ):
            table.add_column(column, justify="right" if column != "group" else "left")
        rows = [*report["groups"].items(), ("total", report["total"])]
        for name, figures in rows:
            sip, rtp = figures["sip"], figures["rtp"]
            register, calls = sip["register"], sip["calls"]
            codes = ",".join(f"{code}x{n}" for code, n in calls["failed_by_code"].items())
            table.add_row(
                name,
                f"{register['succeeded']}/{register['attempted']}",
                f"{calls['established']}/{calls['attempted']}",
                f"{calls['failed']}" + (f" ({codes})" if codes else ""),
                _fmt(sip["setup_time_ms"]["p95"]),
                _fmt(sip["pdd_ms"]["p95"]),
                str(rtp["sent"]["packets"]),
                str(rtp["received"]["packets"]),
                _fmt(rtp["loss_pct"], 3),
                _fmt(rtp["jitter_ms"]["p95"], 2),
                _fmt(rtp["rtt_ms"]["p95"], 2),
                f"{_fmt(rtp['mos']['mean'], 2)}/{_fmt(rtp['mos']['min'], 2)}",
            )
        self.console.print(table)
        verdict = report["pass"]
        for criterion in verdict["criteria"]:
            mark = "ok  " if criterion["passed"] else "FAIL"
            self.console.print(
                f"  {mark} {criterion['criterion']}: "
                f"{_fmt(criterion['value'], 3)} (limit {criterion['limit']:g})"
            )
        self.console.print("PASSED" if verdict["passed"] else "FAILED")
