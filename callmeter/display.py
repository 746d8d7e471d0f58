"""What ``callmeter run`` shows: live progress while a test runs, and the summary at the end.

On a terminal the progress is one live line, redrawn in place every second and fitted to the
terminal's width (the least useful figures go first, then the line is cut with an ellipsis: it
never wraps).  When the output is not a terminal (CI logs, pipes) or with ``plain``, progress is
one plain text line per metric window, without escape codes.

The summary is the same everywhere: per group a headline and its figures, flowed into lines of
at most 80 columns (fewer on a narrower terminal), then every failure cause with its count, the
pass criteria and the verdict on the last line (PASSED, FAILED, or INTERRUPTED: never a pass).
A report without some figures (an older worker's) shows what it has.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Iterable, Mapping
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

__all__ = ["SUMMARY_WIDTH", "Display", "live_line", "summary_lines"]

#: The summary's width: a log file's or an 80-column terminal's.
SUMMARY_WIDTH = 80
#: Narrower than this, lines are still cut or flowed, but nothing is promised.
MIN_WIDTH = 20

_GLUE = "\ue000"  # a space inside a phrase while flowing lines (a private-use character)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ue000]+")


# -- figures ----------------------------------------------------------------------------------


def _dig(tree: Any, *path: str) -> Any:
    """``tree[path[0]][path[1]]...``, None where a key (or a dict) is missing."""
    node = tree
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _clean(text: object) -> str:
    """One line of text: control characters (a newline in a cause) become spaces."""
    return _CONTROL.sub(" ", str(text)).strip()


def _count(value: Any) -> str:
    """A count, with thousands separators: ``37,549``; ``-`` when absent."""
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) < 10**15 else f"{value:.3e}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.0f}" if abs(value) < 1e15 else f"{value:.3e}"
    return _clean(value)


def _num(value: Any, digits: int = 1) -> str:
    """A measurement with ``digits`` decimals; ``-`` when absent (no sample)."""
    if value is None or isinstance(value, bool):
        return "-" if value is None else str(value)
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            return str(number)
        if abs(number) >= 1e9:
            return f"{number:.3e}"
        return f"{number:,.{digits}f}"
    return _clean(value)


def _limit(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}"
    return _num(value)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# -- the live line ----------------------------------------------------------------------------


#: RTP figures as wide as they usually get: the room the long form must leave for them.
_ROOM = {"jitter_ms": {"p95": 99.99}, "loss_pct": 99.99, "mos": {"mean": 4.99}}


def _segments(
    state: Mapping[str, Any],
    rtp: Mapping[str, Any],
    failed: tuple[int, int],
    duration_s: float | None,
) -> list[tuple[int, str, str]]:
    """The live line's parts, in order: (priority, long text, short text); the highest
    priority stays longest when the terminal is narrow."""
    elapsed = state.get("elapsed_s")
    of = f"/{duration_s:g}" if duration_s is not None else ""
    register_failed, calls_failed = failed
    parts = [(9, f"t={_num(elapsed)}{of} s", f"{_num(elapsed)}{of}s")]
    to_register = _int(state.get("to_register"))
    if to_register or register_failed:
        registered = f"{_count(state.get('registered'))}/{_count(to_register)}"
        parts += [
            (6, f"registered {registered}", f"reg {registered}"),
            (8, f"reg fail {_count(register_failed)}", f"reg fail {_count(register_failed)}"),
        ]
    established = f"{_count(state.get('calls_established'))}/{_count(state.get('calls_attempted'))}"
    parts += [
        (1, f"calls up {_count(state.get('calls_up'))}", f"up {_count(state.get('calls_up'))}"),
        (7, f"established {established}", f"est {established}"),
        (8, f"call fail {_count(calls_failed)}", f"call fail {_count(calls_failed)}"),
    ]
    # The RTP figures of the last window (none before the first one ends).
    jitter, loss, mos = _dig(rtp, "jitter_ms", "p95"), rtp.get("loss_pct"), _dig(rtp, "mos", "mean")
    if jitter is not None:
        parts.append((2, f"jitter p95 {_num(jitter, 2)} ms", f"jit {_num(jitter, 2)}ms"))
    if loss is not None:
        parts.append((4, f"loss {_num(loss, 2)} %", f"loss {_num(loss, 2)}%"))
    if mos is not None:
        parts.append((5, f"MOS {_num(mos, 2)}", f"MOS {_num(mos, 2)}"))
    return parts


def live_line(
    state: Mapping[str, Any],
    rtp: Mapping[str, Any],
    failed: tuple[int, int],
    duration_s: float | None,
    width: int | None,
) -> str:
    """The progress line, at most ``width`` characters (None: all of it, as short as it fits
    in 80 columns).  ``rtp`` is the last window's total RTP figures; ``failed`` the
    registrations and calls failed so far."""
    parts = _segments(state, rtp, failed, duration_s)
    target = SUMMARY_WIDTH if width is None else width
    long = " | ".join(text for _, text, _ in parts)
    # The long form only when it has room for the RTP figures too: no switching to the
    # short one when the first window ends.
    room = _segments(state, _ROOM, failed, duration_s)
    if len(" | ".join(text for _, text, _ in room)) <= target:
        return long
    line = "  ".join(short for _, _, short in parts)
    if width is None or len(line) <= width:
        return line  # a log line keeps every figure
    # The most important parts that fit, in their order.
    shown: set[int] = set()
    for index in sorted(range(len(parts)), key=lambda i: -parts[i][0]):
        trial = "  ".join(parts[i][2] for i in sorted(shown | {index}))
        if len(trial) <= width:
            shown.add(index)
    if 0 not in shown:  # not even the time fits: the start of the line, cut
        return line[: width - 1] + "…" if width > 0 else ""
    return "  ".join(parts[i][2] for i in sorted(shown))


# -- the summary ------------------------------------------------------------------------------


def _wrap(text: str, width: int, first: str = "", rest: str = "") -> list[str]:
    """``text`` broken at spaces into lines of at most ``width`` characters (a word longer
    than a line is split), the first line led by ``first``, the others by ``rest``."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=first,
        subsequent_indent=rest,
        break_on_hyphens=False,
        break_long_words=True,
    )


def _flow(label: str, indent: int, phrases: Iterable[str], width: int) -> list[str]:
    """``label`` in a column of ``indent`` characters, then ``phrases`` joined by ", " and
    broken only between phrases into lines of at most ``width`` characters, continued under
    the first phrase.  A label too long for its column gets a line of its own."""
    glued = ", ".join(_clean(p).replace(" ", _GLUE) for p in phrases if p)
    lines = []
    lead = label.ljust(indent)
    if label and len(label) >= indent:
        lines += [line.replace(_GLUE, " ") for line in _wrap(label.replace(" ", _GLUE), width)]
        lead = " " * indent
    if glued:
        lines += [line.replace(_GLUE, " ") for line in _wrap(glued, width, lead, " " * indent)]
    return lines


def _causes(sip: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A part's failure causes, {text: count}, the most frequent first; an older report's
    codes when it has no causes."""
    part = sip.get(what)
    if not isinstance(part, Mapping):
        return {}
    causes = part.get("causes")
    if not isinstance(causes, Mapping):
        causes = part.get("failed_by_code")
    if not isinstance(causes, Mapping):
        return {}
    return dict(sorted(causes.items(), key=lambda item: (-_int(item[1]), str(item[0]))))


def _group_lines(name: str, figures: Any, indent: int, width: int) -> list[str]:
    sip, rtp = _map(_dig(figures, "sip")), _map(_dig(figures, "rtp"))
    register, calls = _map(sip.get("register")), _map(sip.get("calls"))
    sentences: list[list[str]] = []
    if _int(register.get("attempted")) or _int(register.get("failed")):
        sentences.append(
            [
                f"registered {_count(register.get('succeeded'))}/"
                f"{_count(register.get('attempted'))}",
                f"{_count(register.get('failed'))} failed",
                *(
                    [f"time p95 {_num(_dig(register, 'time_ms', 'p95'))} ms"]
                    if _dig(register, "time_ms", "p95") is not None
                    else []
                ),
            ]
        )
    call_phrases = [
        f"calls {_count(calls.get('established'))}/{_count(calls.get('attempted'))} established",
        f"{_count(calls.get('failed'))} failed",
    ]
    for label, key in (("setup", "setup_time_ms"), ("PDD", "pdd_ms")):
        value = _dig(sip, key, "p95")
        if value is not None:
            call_phrases.append(f"{label} p95 {_num(value)} ms")
    sentences.append(call_phrases)
    received = _map(rtp.get("received"))
    sentences.append(
        [
            f"RTP {_count(_dig(rtp, 'sent', 'packets'))} sent",
            f"{_count(received.get('packets'))} received",
            f"{_count(_dig(rtp, 'lost', 'packets'))} lost ({_num(rtp.get('loss_pct'), 3)} %)",
            # Not audio, never counted as lost audio (RFC 4733 events, RFC 3389 comfort noise).
            *(
                f"{_count(received[key])} {label}"
                for key, label in (
                    ("events", "events"),
                    ("cn", "comfort noise"),
                    ("other_payload", "other payload"),
                    ("other_ssrc", "from other SSRCs"),
                )
                if _int(received.get(key))
            ),
        ]
    )
    if _int(rtp.get("without_media")):
        sentences.append(
            [
                f"{_count(rtp.get('without_media'))} of {_count(rtp.get('streams'))} streams "
                "without media",
                *(
                    f"{label} {_count(rtp[key])}"
                    for key, label in (
                        ("no_media", "no media"),
                        ("one_way", "one-way"),
                        ("stopped", "stopped"),
                    )
                    if _int(rtp.get(key))
                ),
            ]
        )
    quality = []
    for label, key in (("jitter", "jitter_ms"), ("RTT", "rtt_ms")):
        value = _dig(rtp, key, "p95")
        if value is not None:
            quality.append(f"{label} p95 {_num(value, 2)} ms")
    mos, mos_min = _dig(rtp, "mos", "mean"), _dig(rtp, "mos", "min")
    if mos is not None or mos_min is not None:
        quality.append(f"MOS {_num(mos, 2)} (min {_num(mos_min, 2)})")
    if quality:
        sentences.append(quality)
    lines: list[str] = []
    for sentence in sentences:
        lines += _flow(name if not lines else "", indent, sentence, width)
    return lines


def _failure_lines(groups: list[tuple[str, Any]], total: Any, width: int) -> list[str]:
    """Per group and kind a heading, then one line per cause with its count, the most
    frequent first.  The total's causes are its groups' again: shown only when no group has
    any (a report with a total alone)."""

    def blocks(name: str, figures: Any) -> list[tuple[str, dict[str, Any]]]:
        sip = _map(_dig(figures, "sip"))
        found = []
        for what, title in (("register", "registrations failed"), ("calls", "calls failed")):
            causes = _causes(sip, what)
            if causes:
                found.append((f"{name}: {title}", causes))
        return found

    shown = [block for name, figures in groups for block in blocks(name, figures)]
    if not shown and total is not None:
        shown = blocks("total", total)
    lines = []
    for heading, causes in shown:
        lines += _wrap(heading, width, "", "  ")
        for cause, count in causes.items():
            lines += _wrap(f"{_count(count)} x {_clean(cause)}", width, "  ", "      ")
    return lines


def _media_lines(rtp: Mapping[str, Any], width: int) -> list[str]:
    """The E-model's assumption per codec (ITU-T G.107 with G.113 Appendix I's Ie and Bpl),
    and, when streams got no media, the likely cause."""
    lines: list[str] = []
    models = _map(rtp.get("emodel"))
    if models:
        phrases = []
        for codec, model in models.items():
            model = _map(model)
            plc = "with PLC" if model.get("plc") else "without PLC"
            note = ", provisional" if model.get("provisional") else ""
            phrases.append(
                f"{_clean(codec)} Ie {_num(model.get('ie'), 0)} "
                f"Bpl {_num(model.get('bpl'), 1)} ({plc}{note})"
            )
        lines += _flow("E-model", 9, phrases, width)
    hint = rtp.get("no_media_hint")
    if hint:
        lines += _wrap(f"media: {_clean(hint)}", width, "", "  ")
    return lines


def summary_lines(
    report: Mapping[str, Any], width: int = SUMMARY_WIDTH, duration_s: float | None = None
) -> list[str]:
    """The summary of ``report``, lines of at most ``width`` characters; ``duration_s`` is
    the plan's duration (for "INTERRUPTED after X s of Y s")."""
    width = max(width, MIN_WIDTH)
    groups = report.get("groups")
    rows: list[tuple[str, Any]] = [
        (_clean(name), figures)
        for name, figures in (groups.items() if isinstance(groups, Mapping) else ())
    ]
    group_rows = list(rows)
    if "total" in report:
        rows.append(("total", report["total"]))
    indent = min(max((len(name) for name, _ in rows), default=0) + 2, 18, width // 3)
    elapsed = report.get("duration_s")
    of = f" of {duration_s:g} s" if duration_s is not None else ""
    head = [f"{_num(elapsed)} s{of}"]
    if report.get("endpoints") is not None:
        head.append(f"{_count(report['endpoints'])} endpoints")
    processes = report.get("processes")
    if processes is not None:
        head.append(f"{_count(processes)} process{'es' if processes != 1 else ''}")
    title = f"callmeter run {_clean(report.get('plan', '?'))!r}: " + ", ".join(
        phrase.replace(" ", _GLUE) for phrase in head
    )
    lines = [line.replace(_GLUE, " ") for line in _wrap(title, width, "", "  ")]
    for name, figures in rows:
        lines += _group_lines(name, figures, indent, width)
    lines += _media_lines(_map(_dig(report.get("total"), "rtp")), width)
    lines += _failure_lines(group_rows, report.get("total"), width)
    verdict = report.get("pass")
    criteria = _dig(verdict, "criteria")
    for criterion in criteria if isinstance(criteria, list) else []:
        mark = "ok  " if _dig(criterion, "passed") else "FAIL"
        value = _dig(criterion, "value")
        shown = _count(value) if isinstance(value, int) else _num(value, 3)
        text = (
            f"{mark} {_clean(_dig(criterion, 'criterion'))}: {shown} "
            f"(limit {_limit(_dig(criterion, 'limit'))})"
        )
        lines += _wrap(text, width, "  ", "       ")
    if report.get("interrupted"):
        last = f"INTERRUPTED (after {_num(elapsed)} s{of}): not a pass"
        short = "INTERRUPTED: not a pass"
        lines.append(
            last if len(last) <= width else short if len(short) <= width else "INTERRUPTED"
        )
    elif _dig(verdict, "passed") is True:
        lines.append("PASSED")
    else:
        lines.append("FAILED")
    return lines


# -- the display ------------------------------------------------------------------------------


class Display:
    """Progress and the final summary, to ``out``.

    ``plain``: plain lines, one per metric window (default: when ``out`` is not a terminal).
    ``width`` and ``terminal`` override what the console finds out (for tests).
    """

    def __init__(
        self,
        out: IO[str],
        plain: bool | None = None,
        *,
        width: int | None = None,
        terminal: bool | None = None,
    ) -> None:
        probe = Console(file=out, force_terminal=terminal)
        self.plain = (not probe.is_terminal) if plain is None else plain
        if self.plain:
            # No escape codes, and a log file's lines are never cut.
            self.console = Console(
                file=out,
                force_terminal=False,
                color_system=None,
                width=width or SUMMARY_WIDTH,
                highlight=False,
                markup=False,
                emoji=False,
            )
        else:
            self.console = Console(
                file=out,
                force_terminal=terminal,
                width=width,
                highlight=False,
                markup=False,
                emoji=False,
            )
        self._live: Live | None = None
        self._finished = False
        self._duration_s: float | None = None
        self._rtp: dict[str, Any] = {}
        self._window_failed = (0, 0)

    def start(self, name: str, endpoints: int, duration_s: float) -> None:
        self._duration_s = duration_s
        text = f"callmeter run: plan {name!r}, {endpoints} endpoints, {duration_s:g} s"
        for line in _wrap(text, max(MIN_WIDTH, min(self.console.width, SUMMARY_WIDTH)), "", "  "):
            self.console.print(line, soft_wrap=True)
        if not self.plain:
            self._show(Text("starting...", no_wrap=True, overflow="ellipsis"))

    def progress(self, state: Mapping[str, Any], window: Mapping[str, Any] | None) -> None:
        """The run's live figures (``state``: TestRun.progress()); ``window``, when a metric
        window has just ended, gives the RTP figures and the failures of that window."""
        if window is not None:
            total = window.get("total")
            self._rtp = dict(_map(_dig(total, "rtp")))
            self._window_failed = (
                self._window_failed[0] + _int(_dig(total, "sip", "register", "failed")),
                self._window_failed[1] + _int(_dig(total, "sip", "calls", "failed")),
            )
        failed = self._failed(state)
        if self.plain:
            if window is not None:
                self.console.print(
                    live_line(state, self._rtp, failed, self._duration_s, None), soft_wrap=True
                )
            return
        if self._finished:
            return
        width = max(1, self.console.width - 1)  # the last column: no wrap on any terminal
        line = live_line(state, self._rtp, failed, self._duration_s, width)
        self._show(Text(line, no_wrap=True, overflow="ellipsis"))

    def _failed(self, state: Mapping[str, Any]) -> tuple[int, int]:
        """(registrations, calls) failed so far: the run's own counts when it gives them,
        else the windows' sums (up to a window late)."""
        register, calls = state.get("register_failed"), state.get("calls_failed")
        if isinstance(register, int) and isinstance(calls, int):
            return register, calls
        return self._window_failed

    def _show(self, line: Text) -> None:
        if self._live is None:
            self._live = Live(
                line,
                console=self.console,
                auto_refresh=False,  # redrawn by each progress(), from the reactor: no thread
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start(refresh=True)
        else:
            self._live.update(line, refresh=True)

    def stop(self) -> None:
        """End the live line (it stays as it was); the next progress() starts a new one."""
        if self._live is not None:
            self._live.stop()
            self._live = None

    def summary(self, report: Mapping[str, Any]) -> None:
        self.stop()
        self._finished = True
        width = min(self.console.width, SUMMARY_WIDTH)
        lines = summary_lines(report, width, self._duration_s)
        for line in lines[:-1]:
            self.console.print(line, soft_wrap=True)
        verdict = lines[-1]
        style = None
        if not self.plain:
            style = "bold green" if verdict == "PASSED" else "bold red"
        self.console.print(verdict, style=style, soft_wrap=True)
