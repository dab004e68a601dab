"""The store: encrypted, erasure-coded, content-addressed data spread over the nodes.

``mesh.store`` (a ``StoreClient``) is the way in; ``docs/specs/store-format.md`` is the
format. Modules: ``caps`` (capability strings), ``format`` (chunks, blobs, manifests),
``placement`` (rendezvous hashing), ``shares`` (share files on a node), ``cache`` (the
reading node's cache), ``blobs``/``transfer`` (moving data), ``repair``, ``service``
(the per-node store process), ``client`` (the API).
"""

from .caps import parse_cap
from .client import Policy, StoreClient, Usage, Writer

__all__ = ["Policy", "StoreClient", "Usage", "Writer", "parse_cap"]
