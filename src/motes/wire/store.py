"""Messages of the store: share transfer between a client and a node's store service,
the node's report of what it holds, and the records kept in KV.

Share traffic is ``array_like`` (positional, compact); records kept in KV are maps, so
fields can be added later. Every tag carries a version.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "DatasetRecord",
    "FileRecord",
    "Holdings",
    "Locate",
    "Located",
    "RepairReport",
    "RepairRequest",
    "ShareGet",
    "SharePiece",
    "SharePut",
    "SharePutMany",
    "SharesPut",
    "Tag",
]

PIECE_BYTES = 512 << 10
"""The most share bytes one ``SharePut`` or ``SharePiece`` carries."""
BATCH_BYTES = 4 << 20
"""The most share bytes one ``SharePutMany`` carries (under the lattice's 8 MiB payload)."""


class SharePut(msgspec.Struct, frozen=True, array_like=True, tag="sp1"):
    """Store part of one share. The piece that completes it makes it durable (fsync)."""

    root: bytes
    num: int
    header: bytes
    """The encoded ``ShareHeader``: the node checks it hashes to ``root``."""
    offset: int
    total: int
    data: bytes


class SharePutMany(msgspec.Struct, frozen=True, array_like=True, tag="spm1"):
    """Several whole shares (``offset`` 0, all their bytes) for one node in one message:
    a client batches what it has for a node while its last batch is on the way. Sent on
    the same subject as ``SharePut``; answered with ``SharesPut``."""

    shares: list[SharePut]


class SharesPut(msgspec.Struct, frozen=True, array_like=True, tag="sps1"):
    """Per share of a ``SharePutMany``, in order: "" if it is durable, else why not."""

    errors: list[str]


class ShareGet(msgspec.Struct, frozen=True, array_like=True, tag="sg1"):
    root: bytes
    num: int
    offset: int = 0
    length: int = PIECE_BYTES


class SharePiece(msgspec.Struct, frozen=True, array_like=True, tag="spc1"):
    header: bytes
    total: int
    data: bytes


class Locate(msgspec.Struct, frozen=True, array_like=True, tag="lo1"):
    """Asked of every store: which shares of these blobs do you hold?"""

    roots: list[bytes]


class Located(msgspec.Struct, frozen=True, array_like=True, tag="lr1"):
    node: str
    held: list[list[int]]
    """Per asked root, in order: the share numbers this node holds."""
    labels: dict[str, str] = {}


class Tag(msgspec.Struct, frozen=True, array_like=True, tag="tg1"):
    """Files (by storage index) that the blobs belong to: what holdings are counted by."""

    sis: list[str]
    roots: list[bytes]


class Holdings(msgspec.Struct, frozen=True, kw_only=True, tag="hold1"):
    """What one node stores and caches, per storage index (KV ``motes_holdings``)."""

    node: str
    files: dict[str, int] = {}
    """Storage index (hex) -> bytes this node holds of it, shares and cache together."""
    share_bytes: int = 0
    cache_bytes: int = 0
    free_bytes: int = 0


class FileRecord(msgspec.Struct, frozen=True, kw_only=True, tag="file1"):
    """A stored file, by its verify capability (KV ``motes_files``): what repair walks."""

    verify: str
    size: int
    k: int
    n: int
    happy: int
    labels: dict[str, str] = {}
    """Placement policy: only nodes with these labels hold its shares."""
    stored_at: float = 0.0


class DatasetRecord(msgspec.Struct, frozen=True, kw_only=True, tag="ds1"):
    """A dataset's current version. KV ``motes_datasets`` holds it inside a ``Signed``
    envelope (``identity.signed``), signed by the dataset's write key."""

    name: str
    seq: int
    sealed_root: bytes
    """The read capability of the dataset's root directory, encrypted under its read key."""
    root_verify: str
    """The root directory's verify capability (public: lets a verifier check it)."""
    k: int = 0
    n: int = 0
    happy: int = 0
    labels: dict[str, str] = {}


class RepairRequest(msgspec.Struct, frozen=True, kw_only=True, tag="rq1"):
    verify: str
    repair: bool = True


class RepairReport(msgspec.Struct, frozen=True, kw_only=True, tag="rr1"):
    """What a check found and (with repair) did, for one file."""

    verify: str
    blobs: int = 0
    healthy: int = 0
    """Blobs with all n shares on distinct live nodes (or as many nodes as there are)."""
    recoverable: int = 0
    """Blobs with at least k good shares."""
    missing_shares: int = 0
    repaired_shares: int = 0
    nodes: int = 0
    detail: str = ""
