"""Records of blocks (KV ``motes_blocks``) and of computed cells' results (KV
``motes_cells``).

Both are maps with a versioned tag, so fields can be added without breaking readers.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = ["BlockRecord", "CellResult", "Compute"]


class Compute(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A computed cell: the mote that computes it and the cells it takes as arguments.

    An argument is ``"prop"`` (a property of the same block) or ``"block.prop"`` (a
    property of another block); the mote is called with their values, in order.
    """

    mote: str
    args: list[str] = []
    mode: Literal["auto", "manual"] = "auto"
    """``auto``: recomputed whenever an argument changes; ``manual``: only when asked."""


class BlockRecord(msgspec.Struct, frozen=True, kw_only=True, tag="block1"):
    """One block as stored; its KV revision is its version."""

    id: str
    parent: str | None = None
    children: list[str] = []
    """Ordered."""
    props: dict[str, Any] = {}
    """Plain properties: JSON values."""
    computed: dict[str, Compute] = {}
    """Computed properties (a name is in ``props`` or here, never both)."""
    text: str = ""
    """Markdown."""
    created_at: float = 0.0
    updated_at: float = 0.0


class CellResult(msgspec.Struct, frozen=True, kw_only=True, tag="cell1"):
    """What one computation of a cell gave, kept by the hash of its inputs."""

    key: str
    """Hex hash of (mote, app version, argument values): the cache key."""
    mote: str
    digest: str
    """The app version that computed it."""
    args: list[Any] = []
    value: Any = None
    error: str = ""
    """``Type: message`` when the mote raised (then ``value`` is None)."""
    node: str = ""
    """Id of the node whose worker computed it."""
    node_name: str = ""
    instance: str = ""
    computed_at: float = 0.0
    wall_ms: float = 0.0
    """Time the worker spent on it."""
    rtt_ms: float = 0.0
    """Time the caller waited, lattice included."""
    bytes_in: int = 0
    bytes_out: int = 0
