"""The worker's outbox of metric windows: numbered, kept until acknowledged, bounded.

SPEC.md "Control plane": metric windows are numbered and acknowledged; a window not yet
acknowledged is kept and sent again after a reconnect, so a dropped connection loses no data.
This is the sans-IO bookkeeping for that rule (docs/protocol.md "Acknowledgement and resend"):

- :meth:`WindowSpool.append` numbers a run's windows 1, 2, 3 ... and returns the ``metrics``
  message to send now; :meth:`WindowSpool.finish` queues the run's ``finished`` message.
- :meth:`WindowSpool.ack` applies the gateway's cumulative ``ack``: every window with
  ``seq <= ack.seq`` is stored there and forgotten here; ``ack.finished`` forgets the run.
- :meth:`WindowSpool.pending` is what to send, in order, after a (re)connect: every kept
  window of every run in seq order, then the run's ``finished``. After acks it has no gap and no
  duplicate; the gateway still stores windows idempotently by (run, seq), because a window sent
  just before a connection dropped may have arrived without its ack coming back.

The bound, and why this policy. At most ``max_windows`` windows are kept (over all runs).
When one more arrives, the oldest unacknowledged window is dropped and the spool remembers the
dropped range ``[first, last]`` of that run; the first message of the run that is (re)sent
carries ``"dropped": [first, last]``, so the gateway records those windows as dropped (its API
keeps numbering windows without a gap) and nothing is lost silently; :meth:`dropped_count` gives
the number for the run's report. The alternatives were worse: coalescing two windows into one
would renumber them or give one seq two periods, and a window's percentiles (p95 setup time,
jitter) cannot be merged from two summaries without being wrong; dropping the newest would stop
the gateway's live view from ever catching up after a long outage. The run's totals are not at
risk either way: the ``finished`` report is computed by the engine over the whole run, and
``finished`` messages are never dropped (one per run, at most 64 KiB each).

Persistence: ``on_change`` is called with the spool after every change (append, finish, a
useful ack); :meth:`to_dict` and :meth:`from_dict` turn the state into JSON data and back, so a
restarted worker can resend what its predecessor had not delivered.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from callmeter.control.protocol import Ack, Finished, Metrics, ProtocolError

__all__ = ["WindowSpool"]

_STATE_VERSION = 1
_Item = TypeVar("_Item", Metrics, Finished)


@dataclasses.dataclass
class _Run:
    """One run's outbox. Dropped windows are always the oldest kept ones, so together they form
    one range ending just below the oldest kept window; ``gap_first`` is its start."""

    run: str
    next_seq: int = 1
    acked: int = 0
    windows: deque[Metrics] = dataclasses.field(default_factory=deque)
    gap_first: int | None = None
    gap_last: int = 0
    dropped: int = 0
    finished: Finished | None = None

    def gap(self) -> tuple[int, int] | None:
        """The dropped range the gateway has not acknowledged past yet, or ``None``."""
        if self.gap_first is None:
            return None
        first = max(self.gap_first, self.acked + 1)
        return (first, self.gap_last) if first <= self.gap_last else None


class WindowSpool:
    """Numbered metric windows kept until acknowledged (cumulative acks), ``max_windows`` at most.

    A sans-IO object: it only stores and numbers messages; the control client sends what
    :meth:`append` returns while connected and everything in :meth:`pending` after ``welcome``.
    """

    def __init__(
        self, max_windows: int, on_change: Callable[[WindowSpool], None] | None = None
    ) -> None:
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, not {max_windows}")
        self.max_windows = max_windows
        self.on_change = on_change
        self._runs: dict[str, _Run] = {}
        self._kept = 0

    def __len__(self) -> int:
        """The number of windows kept (``finished`` messages not counted)."""
        return self._kept

    def append(
        self,
        run: str,
        start: float,
        end: float,
        groups: dict[str, Any],
        total: dict[str, Any],
    ) -> Metrics:
        """Number the run's next window and keep it; return the message to send now.

        When the bound is reached, the oldest kept window (of the oldest run) is dropped first.
        """
        state = self._runs.get(run)
        if state is None:
            state = self._runs[run] = _Run(run)
        if state.finished is not None:
            raise ValueError(f"run {run!r} is finished: no more windows")
        window = Metrics(run, state.next_seq, start, end, groups, total)
        state.next_seq += 1
        if self._kept >= self.max_windows:
            self._drop_oldest()
        state.windows.append(window)
        self._kept += 1
        self._changed()
        return self._with_gap(state, window) if state.windows[0] is window else window

    def finish(self, run: str, report: dict[str, Any]) -> Finished:
        """Queue the run's ``finished`` message (kept until an ack with ``finished``)."""
        state = self._runs.get(run)
        if state is None:
            state = self._runs[run] = _Run(run)
        if state.finished is not None:
            raise ValueError(f"run {run!r} is already finished")
        state.finished = Finished(run, report, windows=state.next_seq - 1)
        self._changed()
        return self._with_gap(state, state.finished) if not state.windows else state.finished

    def ack(self, ack: Ack) -> None:
        """Apply a cumulative ack; acks for unknown (already forgotten) runs are ignored.

        An ack beyond the last window numbered is taken as acknowledging all of them.
        """
        state = self._runs.get(ack.run)
        if state is None:
            return
        changed = False
        upto = min(ack.seq, state.next_seq - 1)
        if upto > state.acked:
            state.acked = upto
            changed = True
        while state.windows and state.windows[0].seq <= state.acked:
            state.windows.popleft()
            self._kept -= 1
        if ack.finished and state.finished is not None and state.acked == state.finished.windows:
            # The gateway has the report and every window: the run is done here.
            del self._runs[ack.run]
            self._kept -= len(state.windows)
            changed = True
        if changed:
            self._changed()

    def pending(self) -> list[Metrics | Finished]:
        """Everything not yet acknowledged, run by run, in seq order, ``finished`` last."""
        out: list[Metrics | Finished] = []
        for state in self._runs.values():
            windows = list(state.windows)
            finished = state.finished
            if windows:
                windows[0] = self._with_gap(state, windows[0])
            elif finished is not None:
                finished = self._with_gap(state, finished)
            out.extend(windows)
            if finished is not None:
                out.append(finished)
        return out

    def dropped_count(self, run: str) -> int:
        """How many of the run's windows were dropped unacknowledged (for its report)."""
        state = self._runs.get(run)
        return state.dropped if state is not None else 0

    def last_seq(self, run: str) -> int:
        """The run's last window number so far (0 before the first)."""
        state = self._runs.get(run)
        return state.next_seq - 1 if state is not None else 0

    def runs(self) -> Iterator[str]:
        """The runs with something not yet acknowledged, oldest first."""
        return iter(list(self._runs))

    # --- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON data (windows as their wire messages)."""
        return {
            "version": _STATE_VERSION,
            "runs": [
                {
                    "run": s.run,
                    "next_seq": s.next_seq,
                    "acked": s.acked,
                    "gap_first": s.gap_first,
                    "gap_last": s.gap_last,
                    "dropped": s.dropped,
                    "windows": [w.to_dict() for w in s.windows],
                    "finished": s.finished.to_dict() if s.finished is not None else None,
                }
                for s in self._runs.values()
            ],
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        max_windows: int,
        on_change: Callable[[WindowSpool], None] | None = None,
    ) -> WindowSpool:
        """Restore :meth:`to_dict`'s state; ``ValueError`` if it is not one.

        A smaller ``max_windows`` than before drops the oldest windows as :meth:`append` would.
        """
        if data.get("version") != _STATE_VERSION:
            raise ValueError(f"unknown spool state version {data.get('version')!r}")
        spool = cls(max_windows)
        try:
            for r in data["runs"]:
                state = _Run(
                    run=str(r["run"]),
                    next_seq=int(r["next_seq"]),
                    acked=int(r["acked"]),
                    gap_first=None if r["gap_first"] is None else int(r["gap_first"]),
                    gap_last=int(r["gap_last"]),
                    dropped=int(r["dropped"]),
                )
                for w in r["windows"]:
                    state.windows.append(Metrics.from_dict(w))
                if r["finished"] is not None:
                    state.finished = Finished.from_dict(r["finished"])
                spool._runs[state.run] = state
                spool._kept += len(state.windows)
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            raise ValueError(f"bad spool state: {exc!r}") from None
        while spool._kept > spool.max_windows:
            spool._drop_oldest()
        spool.on_change = on_change
        return spool

    # --- internals ------------------------------------------------------------------------

    def _drop_oldest(self) -> None:
        for state in self._runs.values():
            if state.windows:
                seq = state.windows.popleft().seq
                self._kept -= 1
                state.dropped += 1
                if state.gap() is None:
                    state.gap_first = seq
                state.gap_last = seq
                return

    @staticmethod
    def _with_gap(state: _Run, item: _Item) -> _Item:
        gap = state.gap()
        if gap is None or item.dropped == gap:
            return item
        return dataclasses.replace(item, dropped=gap)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)
