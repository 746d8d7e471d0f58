"""Transition tables, h11-style: what every state machine of the SIP user agent is made of.

A table maps every (state, input) pair to a :class:`Row`: the next state (or stay) and the
outputs to run, in order, or an explicit *ignore* (a late or duplicated event, absorbed; its
``note`` says why) or an explicit *error* (an input that cannot happen in that state: a misuse
by our own code, raised as :class:`StateError`).  :func:`missing_rows` lists the pairs a table
leaves out (none, for a complete one).  :class:`Machine` runs a table against an object whose
methods are the outputs, named after the call they make; it is sans-IO and knows nothing of
SIP.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "Machine",
    "Row",
    "StateError",
    "error",
    "go",
    "ignore",
    "missing_rows",
    "outputs_of",
    "stay",
]

S = TypeVar("S", bound=enum.Enum)
I = TypeVar("I", bound=enum.Enum)  # noqa: E741


class StateError(RuntimeError):
    """An input that cannot happen in the machine's state (a bug of ours, not the peer's)."""


@dataclass(frozen=True)
class Row(Generic[S]):
    """One cell of a transition table: ``to`` (None: stay), the outputs in order, or an
    explicit ignore (no outputs, ``note`` says why) or error (``error`` says why)."""

    to: S | None
    outputs: tuple[str, ...] = ()
    note: str = ""
    error: str | None = None


def go(state: S, *outputs: str) -> Row[S]:
    return Row(state, outputs)


def stay(*outputs: str) -> Row[Any]:
    return Row(None, outputs)


def ignore(note: str) -> Row[Any]:
    return Row(None, (), note)


def error(why: str) -> Row[Any]:
    return Row(None, (), error=why)


def missing_rows(
    table: Mapping[tuple[S, I], Row[S]], states: Iterable[S], inputs: Iterable[I]
) -> list[tuple[S, I]]:
    """Every (state, input) pair the table leaves out: none, for a complete table."""
    names = list(inputs)
    return [(state, name) for state in states for name in names if (state, name) not in table]


def outputs_of(table: Mapping[Any, Row[Any]]) -> set[str]:
    """The names of every output the table calls."""
    return {output for row in table.values() for output in row.outputs}


class Machine(Generic[S, I]):
    """Holds a state and runs its table: ``feed(input, event)`` looks the row up, moves, and
    calls ``getattr(outputs, name)(event)`` for each output in order.

    Inputs fed by an output are queued and run once the current transition is complete
    (run to completion).  ``on_transition(old, input, new)`` sees every step.
    """

    def __init__(
        self,
        table: Mapping[tuple[S, I], Row[S]],
        initial: S,
        outputs: object,
        *,
        on_transition: Callable[[S, I, S], None] | None = None,
    ) -> None:
        self.table = table
        self.state = initial
        self._outputs = outputs
        self._on_transition = on_transition
        self._queue: list[tuple[I, Any]] = []
        self._running = False

    def feed(self, name: I, event: Any = None) -> None:
        self._queue.append((name, event))
        if self._running:
            return
        self._running = True
        try:
            while self._queue:
                self._step(*self._queue.pop(0))
        finally:
            self._running = False
            self._queue.clear()

    def _step(self, name: I, event: Any) -> None:
        row = self.table[(self.state, name)]
        if row.error is not None:
            raise StateError(f"{name.name} in {self.state.name}: {row.error}")
        old = self.state
        if row.to is not None:
            self.state = row.to
        if self._on_transition is not None:
            self._on_transition(old, name, self.state)
        for output in row.outputs:
            getattr(self._outputs, output)(event)
