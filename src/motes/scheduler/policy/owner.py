"""Owner context: machines belong to people first.

``kind="batch"`` motes stay off a machine someone is using (``motes here``) and off one
running on battery; ``kind="interactive"`` motes run where the user is, and move when
``motes here`` is run on another node. Other motes do not mind.
"""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView


def owner(mote: MoteSpec, node: NodeView) -> Verdict:
    battery = (
        f"on battery ({node.battery_pct:g}%)" if node.battery_pct is not None else "on battery"
    )
    if mote.usage == "batch":
        if node.present:
            return Verdict(rule="owner", ok=False, reason="batch: a person is using this machine")
        if node.on_battery:
            return Verdict(rule="owner", ok=False, reason=f"batch: {battery}")
        return Verdict(rule="owner", ok=True, reason="batch: machine idle and on mains power")
    if mote.usage == "interactive":
        if node.present:
            return Verdict(
                rule="owner", ok=True, score=100.0, reason="interactive: the user is here"
            )
        if node.presence_known:
            return Verdict(
                rule="owner", ok=False, reason="interactive: the user is on another node"
            )
        return Verdict(rule="owner", ok=True, reason="interactive: nobody ran `motes here` yet")
    return Verdict(rule="owner", ok=True, reason="no owner constraint")
