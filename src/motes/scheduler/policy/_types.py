"""What a placement rule sees of a node."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...wire.messages import Inventory


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
