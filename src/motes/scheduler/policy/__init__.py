"""Placement rules: each judges one node for one mote, as a veto or a score, with a reason.

A rule is a pure function ``(mote spec, node view) -> Verdict``: no I/O, no clock. A node
is eligible when no rule vetoes it; among eligible nodes the highest total score wins.
``RULES`` is also the order ``motes why`` shows them in.
"""

from __future__ import annotations

from collections.abc import Callable

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView
from .capabilities import capabilities
from .energy import energy
from .labels import labels
from .liveness import liveness
from .locality import locality
from .owner import owner
from .resources import resources
from .spread import spread
from .trust import trust

__all__ = ["RULES", "STICKY", "UNPLANNED", "NodeView", "Rule", "judge", "placing_can_raise"]

Rule = Callable[[MoteSpec, NodeView], Verdict]

RULES: tuple[Rule, ...] = (
    liveness,
    trust,
    resources,
    capabilities,
    labels,
    owner,
    locality,
    energy,
    spread,
)
STICKY: tuple[Rule, ...] = (liveness, trust, capabilities, labels, owner)
"""Vetoes that can start failing for an instance already placed: it then moves.
(Resources and spread count the instance itself, so they only judge new placements.)"""
UNPLANNED: tuple[Rule, ...] = (liveness, capabilities, labels, owner, locality)
"""Rules that ignore what the plan puts on a node (``used``, ``same_mote``, ``instances``,
and ``signer_instances``, which the trust rule's ``instances`` budget counts):
while one plan is built their verdict on a node does not change, so the scheduler runs
them once per node and kind of mote. A rule not listed here is run again every time."""


def judge(mote: MoteSpec, node: NodeView) -> tuple[bool, float, list[Verdict]]:
    """Every rule's verdict on ``node``; (eligible, total score, verdicts)."""
    verdicts = [rule(mote, node) for rule in RULES]
    ok = all(v.ok for v in verdicts)
    return ok, sum(v.score for v in verdicts) if ok else 0.0, verdicts


def placing_can_raise(mote: MoteSpec) -> bool:
    """Can one more instance on a node raise the mote's total score there (or lift a veto)?

    For ``spread`` motes no: ``resources`` sees less free cpu and ``spread`` more
    instances, and every other rule ignores what is placed. ``pack`` motes prefer fuller
    nodes. The scheduler relies on this to judge again only the nodes that may now be
    best (``scheduler/_plan.py``); a rule that breaks it must say so here.
    """
    return mote.spread != "spread"
