"""What a placement rule sees of a node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...identity.grants import RunTerms
from ...wire.messages import Inventory


@dataclass(frozen=True, slots=True, kw_only=True)
class Estimate:
    """The joules one more call of a mote would cost on a node, and where that comes from."""

    joules: float
    """Per call; per CPU second (the model's full-load watts per core) while no node has
    measured the mote, the same unit on every node then."""
    source: str
    """``measured`` (its calls on this node) or ``model`` (the node's power model)."""
    detail: str
    """How it was reached, for ``motes why``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeView:
    id: str
    name: str
    inventory: Inventory
    labels: dict[str, str]
    alive: bool = True
    used: dict[str, float] = field(default_factory=dict)
    """Resources already claimed by instances placed here: cpu, memory_mb, gpu."""
    same_mote: int = 0
    """Instances of the mote being placed that this node already runs."""
    instances: int = 0
    """All instances placed on this node."""
    rejoining: bool = False
    """Heard again after being declared lost: on probation, no new work yet."""
    drained: bool = False
    """``motes drain``: nothing new goes here and what runs here moves."""
    present: bool = False
    """The user is at this node (``motes here``)."""
    presence_known: bool = False
    """The user is known to be at some node."""
    on_battery: bool = False
    battery_pct: float | None = None
    reads_here: int = 0
    """Bytes of the mote's declared reads that this node's store holds or caches."""
    reads_most: int = 0
    """The most such bytes any node holds (the data-locality rule scores against it)."""
    trust_enforced: bool = False
    """The mesh authenticates: the trust rule applies."""
    admitted: bool = True
    """The node's principal is admitted and not revoked."""
    owner: str = ""
    """The person who owns the node."""
    app_signer: str = ""
    """The person who deployed (signed) the app being placed."""
    energy: Estimate | None = None
    """Joules per call of the mote here; None: the node advertises no power model."""
    energy_least: float = 0.0
    """The lowest such estimate of any live node (the energy rule scores against it)."""
    run: RunTerms | None = None
    """The terms of the app signer's ``run`` grant on this node (None: there is none)."""
    signer_instances: int = 0
    """Instances of the signer's apps this node already runs (the ``instances`` budget)."""
    budget_spent: str = ""
    """A budget of the signer's that this node reports used up today (it refuses them)."""


def amount(needs: dict[str, Any], resource: str) -> float | None:
    """A quantity a mote needs (0 if unset), or None when the record holds no number."""
    value = needs.get(resource, 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return None
    return float(value)


_TRUE = {"1", "true", "yes", "on"}


def gpu_count(node: NodeView) -> int:
    """GPUs a node offers: detected, or declared by label (``gpus=2`` or ``gpu=true``)."""
    if "gpus" in node.labels:
        try:
            return max(int(node.labels["gpus"]), 0)
        except ValueError:
            return 0
    if "gpu" in node.labels:
        return 1 if node.labels["gpu"].lower() in _TRUE else 0
    return node.inventory.gpus
