"""Label constraints: every ``labels={key: value}`` of a mote must match the node's labels."""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView


def labels(mote: MoteSpec, node: NodeView) -> Verdict:
    wrong = [
        f"{k}={v} (node has {node.labels[k]!r})" if k in node.labels else f"{k}={v} (unset)"
        for k, v in mote.labels.items()
        if node.labels.get(k) != v
    ]
    if wrong:
        return Verdict(rule="labels", ok=False, reason="label mismatch: " + ", ".join(wrong))
    reason = (
        "matches " + ", ".join(f"{k}={v}" for k, v in mote.labels.items())
        if mote.labels
        else "no constraint"
    )
    return Verdict(rule="labels", ok=True, reason=reason)
