"""Only nodes that are alive (heartbeating) take new instances."""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView


def liveness(mote: MoteSpec, node: NodeView) -> Verdict:
    if node.alive:
        return Verdict(rule="liveness", ok=True, reason="heartbeating")
    return Verdict(rule="liveness", ok=False, reason="node is lost (no heartbeat)")
