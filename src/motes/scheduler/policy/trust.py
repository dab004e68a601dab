"""Trust: a node runs someone's code only with its owner's consent, and within its terms.

In an authenticated mesh every node has an owner (the person who admitted it) and every
app a deployer (the person who signed its record). A node may host an app if the
deployer is the node's owner (their own code, run natively), or the owner (or an admin)
granted the deployer ``run`` there. A ``run`` grant without ``native`` admits only
sandboxed (wasm) motes; its ``instances`` budget caps how many of the deployer's
instances the node runs at once, and a node that reports a budget used up (CPU seconds
today) takes no more of theirs. A node whose principal was revoked runs nothing.
Without authentication there is no one to ask, and the rule says so.
"""

from __future__ import annotations

from ...wire.messages import MoteSpec, Verdict
from ._types import NodeView


def trust(mote: MoteSpec, node: NodeView) -> Verdict:
    if not node.trust_enforced:
        return Verdict(rule="trust", ok=True, reason="the mesh does not authenticate")
    if not node.admitted:
        return _no("the node is not admitted (or revoked)")
    signer = node.app_signer or "?"
    if signer == node.owner:
        return Verdict(rule="trust", ok=True, reason=f"its owner {signer} deployed it")
    run = node.run
    if run is None:
        return _no(f"{node.owner or 'its owner'} has not granted `run` here to {signer}")
    if mote.sandbox == "native" and not run.native:
        return _no(f"run grant without native: only sandboxed motes of {signer} here")
    if run.instances is not None and node.signer_instances >= run.instances:
        return _no(
            f"run grant's budget: {run.instances} instance(s) of {signer}'s at once,"
            f" {node.signer_instances} here"
        )
    if node.budget_spent:
        return _no(f"run grant's budget: {signer}'s {node.budget_spent} is used up here")
    how = "native" if run.native else "sandboxed"
    return Verdict(rule="trust", ok=True, reason=f"{signer} may run here (`run` grant, {how})")


def _no(reason: str) -> Verdict:
    return Verdict(rule="trust", ok=False, reason=reason)
