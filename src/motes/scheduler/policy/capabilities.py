"""Capabilities a mote needs (``gpu``, ``arch``, ``os``, ``screen``, ``camera``) veto nodes
that lack them. Node labels override what the node detected (``screen=false`` hides a
display the node has; ``gpu=true`` declares one nvidia-smi cannot see)."""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView, gpu_count

_TRUE = {"1", "true", "yes", "on"}


def _flag(node: NodeView, name: str) -> bool:
    return node.labels.get(name, "").lower() in _TRUE


def capabilities(mote: MoteSpec, node: NodeView) -> Verdict:
    needs = mote.needs
    inv = node.inventory
    missing: list[str] = []
    if needs.get("gpu") and gpu_count(node) == 0:
        missing.append("a gpu")
    for key, have in (
        ("arch", node.labels.get("arch", inv.arch)),
        ("os", node.labels.get("os", inv.os)),
    ):
        want = needs.get(key)
        if want and str(want).lower() != have.lower():
            missing.append(f"{key}={want} (node is {have})")
    for flag in ("screen", "camera"):
        detected = bool(getattr(inv, flag))
        has = _flag(node, flag) if flag in node.labels else detected
        if needs.get(flag) and not has:
            missing.append(f"a {flag}")
    if missing:
        return Verdict(rule="capabilities", ok=False, reason="lacks " + ", ".join(missing))
    return Verdict(rule="capabilities", ok=True, reason="has what it needs")
