"""Where shares go: rendezvous (highest-random-weight) hashing over the allowed nodes.

Pure. Every node is ranked for a blob by a hash of (blob root, node id); share ``i`` goes
to the ``i``-th node of that ranking, wrapping round when there are fewer nodes than
shares. Adding or losing a node moves only the shares that node held or now wins, and
any reader or repairer computes the same ranking from the same node list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .caps import tagged_hash

__all__ = ["allowed", "assign", "rank"]


def rank(root: bytes, nodes: Iterable[str]) -> list[str]:
    """``nodes`` from most to least preferred for the blob ``root``."""
    return sorted(nodes, key=lambda node: tagged_hash("rendezvous", root, node.encode()))[::-1]


def assign(root: bytes, n: int, nodes: Iterable[str]) -> dict[int, str]:
    """Share number -> node for a blob's ``n`` shares."""
    ranked = rank(root, nodes)
    if not ranked:
        return {}
    return {num: ranked[num % len(ranked)] for num in range(n)}


def allowed(labels_by_node: Mapping[str, Mapping[str, str]], want: Mapping[str, str]) -> list[str]:
    """The nodes whose labels match every ``key=value`` of a placement policy."""
    return sorted(
        node
        for node, labels in labels_by_node.items()
        if all(labels.get(key) == value for key, value in want.items())
    )
