"""Data locality: prefer the nodes that already hold the data a mote reads.

A mote declares ``reads=[cap, ...]``; every node's store reports the bytes it holds and
caches per file. The node holding the most scores ``WEIGHT``, others in proportion: more
than load or free cpu, less than one more instance of the same mote (spread still wins
over piling every instance onto the one node with the data).
"""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView

WEIGHT = 5.0


def locality(mote: MoteSpec, node: NodeView) -> Verdict:
    if not mote.reads:
        return Verdict(rule="locality", ok=True, reason="declares no reads")
    if node.reads_most <= 0:
        return Verdict(rule="locality", ok=True, reason="no node holds its reads yet")
    share = node.reads_here / node.reads_most
    reason = f"holds {_mib(node.reads_here)} of its reads (the most any node holds: " + (
        f"{_mib(node.reads_most)})"
    )
    return Verdict(rule="locality", ok=True, score=round(WEIGHT * share, 3), reason=reason)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
