"""Energy: prefer the nodes where a call of the mote costs fewer joules.

A score, never a veto. Each node's estimate (``NodeView.energy``: measured on that node
if the mote ran there, else its power model; see ``scheduler/energy.py``) is compared with
the cheapest live node's: estimates within ``TOLERANCE`` of it count as equal (the models'
own error bands are wider), beyond that the node loses ``weight`` per doubling, up to
``CAP`` doublings. Batch work weighs joules most (``BATCH_WEIGHT``): a node more than five
times cheaper takes a second instance before a dearer one gets its first (never a third:
the cap is two of spread's 10), and data locality (at most 5) gives way once the node with
the data costs over 2.5 times more.
Other motes (``WEIGHT``) go to the cheaper of otherwise equal nodes but never pile up
for it (it stays below one more instance of the same mote, spread's 10). Batch work stays
off machines on battery through the owner rule, whatever they cost.
"""

from __future__ import annotations

import math

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView

TOLERANCE = 1.25
WEIGHT = 2.0
BATCH_WEIGHT = 5.0
CAP = 4.0
"""Doublings beyond the tolerance that still count (16 times the cheapest)."""


def energy(mote: MoteSpec, node: NodeView) -> Verdict:
    if not mote.energy:
        return Verdict(rule="energy", ok=True, reason="not energy-aware (energy=False)")
    est = node.energy
    if est is None:
        return Verdict(rule="energy", ok=True, reason="the node advertises no power model")
    ratio = est.joules / node.energy_least if node.energy_least > 0 else 1.0
    doublings = min(max(math.log2(ratio / TOLERANCE), 0.0), CAP) if ratio > 0 else 0.0
    weight = BATCH_WEIGHT if mote.usage == "batch" else WEIGHT
    reason = f"{est.source}: {est.detail}; {ratio:.2f}x the cheapest live node"
    return Verdict(rule="energy", ok=True, score=round(-weight * doublings, 3), reason=reason)
