"""Spread: prefer nodes that run fewer instances of this mote (and fewer overall).

A soft rule: with more instances wanted than nodes, nodes take a second one each.
``pack`` motes invert the overall-load preference, never the per-mote one.
"""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView


def spread(mote: MoteSpec, node: NodeView) -> Verdict:
    score = -10.0 * node.same_mote
    if mote.spread == "spread":
        score -= 0.1 * node.instances
    else:
        score += 0.1 * node.instances
    reason = f"{node.same_mote} of this mote here, {node.instances} instances in all"
    return Verdict(rule="spread", ok=True, score=round(score, 3), reason=reason)
