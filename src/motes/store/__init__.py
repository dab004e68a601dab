"""The store: encrypted, erasure-coded, content-addressed data spread over the nodes.

``mesh.store`` (a ``StoreClient``) is the way in; ``docs/specs/store-format.md`` is the
format. Modules: ``caps`` (capability strings), ``format`` (chunks, blobs, manifests),
``placement`` (rendezvous hashing), ``shares`` (share files on a node), ``cache`` (the
reading node's cache), ``blobs``/``transfer`` (moving data), ``repair``, ``service``
(the per-node store process), ``client`` (the API), ``fs`` (the FUSE mount).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .caps import parse_cap
    from .client import Policy, StoreClient, Usage, Writer

__all__ = ["Policy", "StoreClient", "Usage", "Writer", "parse_cap"]


def __getattr__(name: str) -> object:
    # Lazy: the store service process imports only the modules it uses (a faster start).
    if name == "parse_cap":
        from .caps import parse_cap

        return parse_cap
    if name in ("Policy", "StoreClient", "Usage", "Writer"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'motes.store' has no attribute {name!r}")
