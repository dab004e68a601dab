"""Trust: a node runs someone's code only with its owner's consent.

In an authenticated mesh every node has an owner (the person who admitted it) and every
app a deployer (the person who signed its record). A node may host an app if the
deployer is the node's owner, or the owner granted the deployer ``run`` there (or an
admin did); a node whose principal was revoked runs nothing. Without authentication
there is no one to ask, and the rule says so.
"""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView


def trust(mote: MoteSpec, node: NodeView) -> Verdict:
    if not node.trust_enforced:
        return Verdict(rule="trust", ok=True, reason="the mesh does not authenticate")
    if not node.admitted:
        return Verdict(rule="trust", ok=False, reason="the node is not admitted (or revoked)")
    signer = node.app_signer or "?"
    if signer == node.owner:
        return Verdict(rule="trust", ok=True, reason=f"its owner {signer} deployed it")
    if signer in node.runs:
        return Verdict(rule="trust", ok=True, reason=f"{signer} may run here (`run` grant)")
    owner = node.owner or "its owner"
    return Verdict(rule="trust", ok=False, reason=f"{owner} has not granted `run` here to {signer}")
