"""The gateway's persistent state: runs, metric windows and reports, in SQLite.

SPEC.md "Reference gateway": runs and their metric windows persist, so a gateway restart loses
nothing. The standard library's :mod:`sqlite3` runs off the reactor thread: every operation is
a plain function handed to a *runner* that returns a Deferred. In production the runner is a
one-thread pool (:class:`ThreadRunner`), which also serialises the operations in the order they
were asked for; tests use :func:`run_now` and stay synchronous and deterministic.

Windows are stored by (run, seq) idempotently (docs/protocol.md "Acknowledgement and resend"):
a second copy of a seq is ignored. A run's *contiguous* seq is the highest N such that windows
1..N are all present (dropped windows count as present); that is what the cumulative ``ack``
carries and how far ``GET /api/runs/RUN/windows`` shows, so the API never has a gap.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["RUN_STATES", "Runner", "Store", "ThreadRunner", "run_now"]

RUN_STATES = ("queued", "running", "finished", "failed", "cancelled")
_T = TypeVar("_T")
Runner = Callable[[Callable[[], Any]], "Deferred[Any]"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    worker TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    created REAL NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    windows_total INTEGER,
    report TEXT
);
CREATE TABLE IF NOT EXISTS windows (
    run TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
"""


def run_now(fn: Callable[[], _T]) -> Deferred[_T]:
    """A synchronous runner, for tests: the operation runs at once."""
    try:
        return succeed(fn())
    except Exception:
        return fail()


class ThreadRunner:
    """Runs store operations one at a time on a private thread (sqlite3 is not async)."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="callmeter-gateway-db")

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    def __call__(self, fn: Callable[[], _T]) -> Deferred[_T]:
        result: Deferred[_T] = deferToThreadPool(self._reactor, self._pool, fn)
        return result


class Store:
    """Runs and windows in one SQLite file (``":memory:"`` for tests)."""

    def __init__(self, path: str, runner: Runner = run_now) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        if path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
        self._run = runner

    def close(self) -> Deferred[None]:
        return self._run(self._db.close)

    # --- runs -----------------------------------------------------------------------------------

    def create_run(
        self, run: str, plan: dict[str, Any], worker: str | None, now: float
    ) -> Deferred[None]:
        text = json.dumps(plan, separators=(",", ":"))

        def op() -> None:
            self._db.execute(
                "INSERT INTO runs (id, plan, worker, state, created) VALUES (?, ?, ?, 'queued', ?)",
                (run, text, worker, now),
            )

        return self._run(op)

    def get_run(self, run: str) -> Deferred[dict[str, Any] | None]:
        """The API's view of a run: id, state, worker, windows (contiguous), report, reason."""

        def op() -> dict[str, Any] | None:
            row = self._db.execute(
                "SELECT id, state, worker, reason, report, cancel_requested, windows_total, "
                "created FROM runs WHERE id = ?",
                (run,),
            ).fetchone()
            if row is None:
                return None
            return {
                "id": row[0],
                "state": row[1],
                "worker": row[2],
                "windows": self._contiguous(run),
                "report": json.loads(row[4]) if row[4] is not None else None,
                "reason": row[3],
                "cancel_requested": bool(row[5]),
                "windows_total": row[6],
                "created": row[7],
            }

        return self._run(op)

    def queued_runs(self) -> Deferred[list[tuple[str, dict[str, Any], str | None]]]:
        """(id, plan, worker) of every queued run, oldest first."""

        def op() -> list[tuple[str, dict[str, Any], str | None]]:
            rows = self._db.execute(
                "SELECT id, plan, worker FROM runs WHERE state = 'queued' ORDER BY created, id"
            ).fetchall()
            return [(r[0], json.loads(r[1]), r[2]) for r in rows]

        return self._run(op)

    def runs_to_cancel(self, worker: str) -> Deferred[list[str]]:
        """Runs of ``worker`` still running whose cancel was requested (resent on reconnect)."""

        def op() -> list[str]:
            rows = self._db.execute(
                "SELECT id FROM runs WHERE worker = ? AND state IN ('queued', 'running') "
                "AND cancel_requested = 1",
                (worker,),
            ).fetchall()
            return [r[0] for r in rows]

        return self._run(op)

    def update_run(
        self,
        run: str,
        *,
        state: str | None = None,
        worker: str | None = None,
        reason: str | None = None,
        cancel_requested: bool | None = None,
        only_from: tuple[str, ...] | None = None,
    ) -> Deferred[bool]:
        """Change a run's fields; with ``only_from``, only if its state is one of those.

        True when a row changed.
        """
        sets: list[str] = []
        values: list[Any] = []
        for column, value in (("state", state), ("worker", worker), ("reason", reason)):
            if value is not None:
                if column == "state" and value not in RUN_STATES:
                    raise ValueError(f"not a run state: {value!r}")
                sets.append(f"{column} = ?")
                values.append(value)
        if cancel_requested is not None:
            sets.append("cancel_requested = ?")
            values.append(int(cancel_requested))
        sql = f"UPDATE runs SET {', '.join(sets)} WHERE id = ?"
        values.append(run)
        if only_from:
            sql += f" AND state IN ({', '.join('?' for _ in only_from)})"
            values.extend(only_from)

        def op() -> bool:
            return self._db.execute(sql, values).rowcount > 0

        return self._run(op)

    def finish_run(
        self, run: str, report: dict[str, Any], windows: int, dropped: tuple[int, int] | None
    ) -> Deferred[int]:
        """Store the report (the first one wins); returns the run's contiguous seq.

        The state becomes ``cancelled`` when a cancel was requested, else ``finished``.
        """
        text = json.dumps(report, separators=(",", ":"))

        def op() -> int:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if dropped is not None:
                    self._mark_dropped(run, *dropped)
                self._db.execute(
                    "UPDATE runs SET report = ?, windows_total = ?, "
                    "state = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'finished' END "
                    "WHERE id = ? AND report IS NULL",
                    (text, windows, run),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._contiguous(run)

        return self._run(op)

    # --- windows --------------------------------------------------------------------------------

    def add_window(
        self, run: str, seq: int, body: dict[str, Any], dropped: tuple[int, int] | None
    ) -> Deferred[int]:
        """Store window ``seq`` (ignored if present) and a dropped range; the contiguous seq."""
        text = json.dumps(body, separators=(",", ":"))

        def op() -> int:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if dropped is not None:
                    self._mark_dropped(run, *dropped)
                self._db.execute(
                    "INSERT OR IGNORE INTO windows (run, seq, body) VALUES (?, ?, ?)",
                    (run, seq, text),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._contiguous(run)

        return self._run(op)

    def windows_after(self, run: str, after: int) -> Deferred[list[dict[str, Any]]]:
        """Windows ``after+1 .. contiguous`` in order; a dropped one is ``{"seq", "dropped"}``."""

        def op() -> list[dict[str, Any]]:
            upto = self._contiguous(run)
            rows = self._db.execute(
                "SELECT seq, body FROM windows WHERE run = ? AND seq > ? AND seq <= ? ORDER BY seq",
                (run, after, upto),
            ).fetchall()
            out: list[dict[str, Any]] = []
            for seq, body in rows:
                out.append(json.loads(body) if body is not None else {"seq": seq, "dropped": True})
            return out

        return self._run(op)

    def contiguous(self, run: str) -> Deferred[int]:
        return self._run(lambda: self._contiguous(run))

    # --- internals (on the store's thread) -------------------------------------------------

    def _mark_dropped(self, run: str, first: int, last: int) -> None:
        self._db.executemany(
            "INSERT OR IGNORE INTO windows (run, seq, body) VALUES (?, ?, NULL)",
            [(run, seq) for seq in range(first, last + 1)],
        )

    def _contiguous(self, run: str) -> int:
        """The highest N with windows 1..N all present (0 when window 1 is missing)."""
        row = self._db.execute(
            "SELECT MIN(w.seq) FROM windows w WHERE w.run = ? AND NOT EXISTS "
            "(SELECT 1 FROM windows x WHERE x.run = w.run AND x.seq = w.seq + 1)",
            (run,),
        ).fetchone()
        if row is None or row[0] is None:
            return 0
        has_first = self._db.execute(
            "SELECT 1 FROM windows WHERE run = ? AND seq = 1", (run,)
        ).fetchone()
        return int(row[0]) if has_first else 0
