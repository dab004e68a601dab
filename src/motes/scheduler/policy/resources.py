"""Resource fit: cpu, memory and gpus a mote needs must be free on the node.

Scores the share of the node's cpu left free after placing, so ``spread`` motes go to
emptier nodes; for ``pack`` motes the sign flips and fuller nodes win.
"""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView, amount, gpu_count


def resources(mote: MoteSpec, node: NodeView) -> Verdict:
    inv = node.inventory
    capacity = {
        "cpu": float(inv.cpus),
        "memory_mb": float(inv.memory_mb),
        "gpu": float(gpu_count(node)),
    }
    for res, cap in capacity.items():
        need = amount(mote.needs, res)
        if need is None:
            bad = mote.needs.get(res)
            return Verdict(
                rule="resources", ok=False, reason=f"needs {res}={bad!r} is not a number"
            )
        if need <= 0:
            continue
        free = cap - node.used.get(res, 0.0)
        if need > free:
            unit = " MB" if res == "memory_mb" else ""
            have = f"{free:g}{unit} free of {cap:g}{unit}"
            return Verdict(rule="resources", ok=False, reason=f"needs {res}={need:g}{unit}, {have}")
    cpu_need = amount(mote.needs, "cpu") or 0.0
    free_share = (capacity["cpu"] - node.used.get("cpu", 0.0) - cpu_need) / max(capacity["cpu"], 1)
    score = free_share if mote.spread == "spread" else -free_share
    return Verdict(rule="resources", ok=True, score=round(score, 3), reason="fits")
