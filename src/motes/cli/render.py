"""What a command shows, kept apart from how it is shown.

A command returns a ``View``: its data (what ``--json`` prints, as plain values) and,
for a terminal, a ``Table`` and lines of text. ``text`` and ``json_text`` are the only
renderers; no command prints its results itself (streaming ones, like ``logs -f`` and
``cat``, write as data arrives instead of returning a view).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

__all__ = ["Table", "View", "json_text", "table_text", "text"]


@dataclass(frozen=True, slots=True)
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True, slots=True)
class View:
    data: Any = None
    """What ``--json`` prints: msgspec Structs, dataclasses and plain values."""
    table: Table | None = None
    before: list[str] = field(default_factory=list)
    """Lines shown above the table."""
    after: list[str] = field(default_factory=list)
    """Lines shown below it."""
    code: int = 0
    """The process's exit code."""


def table_text(table: Table) -> str:
    if not table.rows:
        return "(none)"
    widths = [max(len(h), *(len(r[i]) for r in table.rows)) for i, h in enumerate(table.headers)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip()
        for line in [table.headers, *table.rows]
    ]
    return "\n".join(lines)


def text(view: View) -> str:
    parts = list(view.before)
    if view.table is not None:
        parts.append(table_text(view.table))
    parts += view.after
    return "\n".join(parts)


def json_text(view: View) -> str:
    return json.dumps(msgspec.to_builtins(view.data), indent=2, default=str)
