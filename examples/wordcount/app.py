"""wordcount: count identifiers in Python source, spread over the mesh.

``count`` runs on every node (min=3 asks for three instances, which the scheduler spreads
one per node on a 3-node mesh); ``Tally`` is a keyed actor that keeps running totals.
"""

from __future__ import annotations

import keyword
import re
from collections import Counter

import motes

app = motes.App("wordcount")

# One left-to-right scan: comments and string literals are matched (and skipped) whole,
# so only identifiers in code land in the group.
_TOKENS = re.compile(
    r"""
      \#[^\n]*                                  # a comment
    | [rRbBuUfF]{0,2}(?: \"\"\"(?:\\.|[^\\])*?\"\"\"    # a string literal, any quoting
                      | '''(?:\\.|[^\\])*?'''
                      | "(?:\\.|[^"\\\n])*"
                      | '(?:\\.|[^'\\\n])*' )
    | ([A-Za-z_][A-Za-z0-9_]*)                  # an identifier or keyword
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)


@app.mote(min=3)
def count(text: str) -> dict[str, int]:
    """How often each identifier occurs in the Python source ``text``.

    Keywords, comments and string literals do not count.
    """
    return dict(Counter(w for w in _TOKENS.findall(text) if w and w not in _KEYWORDS))


@app.mote
def top(counts: dict[str, int], n: int = 20) -> list[tuple[str, int]]:
    """The ``n`` most common entries of a merged count, ties broken by name."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


@app.actor
class Tally:
    """A running total per key (say, per user); its state survives restarts."""

    def __init__(self) -> None:
        self.total = 0
        self.calls = 0

    def add(self, n: int) -> int:
        self.total += n
        self.calls += 1
        return self.total

    def get(self) -> dict[str, int]:
        return {"total": self.total, "calls": self.calls}
