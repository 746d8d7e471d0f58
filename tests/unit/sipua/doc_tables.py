"""Read the abridged transition tables of a state machine's module docstring, so a test can
check them against the real table (a docstring that drifts from the code fails a test)."""

from __future__ import annotations

import enum
import re

DocRow = tuple[list[str], list[str], str, list[str]]


def doc_rows(doc: str, states: type[enum.Enum], inputs: type[enum.Enum]) -> list[DocRow]:
    """The rows that name states plainly: (states, inputs, next state, outputs).

    Columns are two or more spaces apart.  ``A/B`` is several states or inputs, ``X_*`` every
    state whose name starts with ``X``, ``(stays)`` the same state, ``.`` no output; an
    outputs cell ending with a comma goes on on the next line; a comment in parentheses and
    a trailing RFC section number are dropped.  Rows with other words are skipped.
    """
    rows = []
    lines = doc.splitlines()
    for index, line in enumerate(lines):
        columns = re.split(r"\s{2,}", line.strip())
        if len(columns) < 4 or not line.startswith("    ") or line.startswith("     "):
            continue
        state, name, target, outputs = columns[0], columns[1], columns[2], "  ".join(columns[3:])
        following = index
        while outputs.rstrip().endswith(",") and following + 1 < len(lines):
            following += 1
            outputs += " " + lines[following].strip()
        outputs = re.sub(r"\([^)]*\)", "", outputs)
        outputs = re.sub(r"\s+\d+(\.\d+)*\s*$", "", outputs).strip()
        named = [
            member.name
            for part in state.split("/")
            for member in states
            if member.name == part
            or (part.endswith("*") and member.name.startswith(part[:-1].rstrip("_")))
        ]
        parts = name.split("/")
        if not named or not all(part in inputs.__members__ for part in parts):
            continue
        names = [] if outputs == "." else [o.strip() for o in outputs.split(",") if o.strip()]
        rows.append((named, parts, target, names))
    return rows
