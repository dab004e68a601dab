"""Only nodes that are alive (heartbeating) and not draining take instances."""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView


def liveness(mote: MoteSpec, node: NodeView) -> Verdict:
    if not node.alive:
        return Verdict(rule="liveness", ok=False, reason="node is lost (no heartbeat)")
    if node.rejoining:
        return Verdict(rule="liveness", ok=False, reason="back after being lost: on probation")
    if node.drained:
        return Verdict(rule="liveness", ok=False, reason="node is draining (`motes drain`)")
    return Verdict(rule="liveness", ok=True, reason="heartbeating")
