"""The JetStream resources every component shares: one table of buckets, one of streams.

Whoever needs a resource first creates it with these settings (``Bus.kv``,
``Bus.ensure_stream``); everyone else binds to it. Names come from ``subjects``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import subjects

__all__ = [
    "ACTORS",
    "APPS",
    "AUDIT",
    "BLOCKS",
    "BLOCK_HISTORY",
    "BUCKETS",
    "BUNDLES",
    "CALLS",
    "CELLS",
    "CELL_TTL_S",
    "CTX",
    "DATASETS",
    "DUPLICATE_WINDOW_S",
    "FILES",
    "FLOWS",
    "GRANTS",
    "HOLDINGS",
    "HOLDINGS_TTL_S",
    "HUBS",
    "INVITES",
    "LOGS",
    "NODES",
    "PLACE",
    "PRINCIPALS",
    "RESULTS",
    "RESULT_TTL_S",
    "STORE",
    "STREAMS",
    "USAGE",
    "BucketSpec",
    "StreamSpec",
    "lease",
    "stream_names",
]

RESULT_TTL_S = 24 * 3600.0
"""How long a durable call's result is kept (and answers a repeated call id)."""
HOLDINGS_TTL_S = 20.0
"""A store's holdings record lapses this long after its last report (a dead node's goes)."""
BLOCK_HISTORY = 16
"""Revisions of each block kept (``mesh.blocks.history``)."""
CELL_TTL_S = 7 * 24 * 3600.0
"""How long a computed cell's result stays cached for its inputs."""
DUPLICATE_WINDOW_S = 120.0
"""A durable call re-published with the same id within this window is dropped."""


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """A KV bucket (or, with ``objects``, an object store bucket)."""

    name: str
    history: int = 1
    ttl: float | None = None
    """Entries expire this long after their last write."""
    objects: bool = False


@dataclass(frozen=True, slots=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    work_queue: bool = False
    """A message leaves the stream once a consumer acks it."""
    max_bytes: int = -1
    max_msgs_per_subject: int = -1
    duplicate_window: float = 0.0
    max_msg_size: int = -1
    """-1: the server's max payload."""


NODES = BucketSpec(subjects.KV_NODES)
APPS = BucketSpec(subjects.KV_APPS, history=8)
PLACE = BucketSpec(subjects.KV_PLACE)
ACTORS = BucketSpec(subjects.KV_ACTORS)
CTX = BucketSpec(subjects.KV_CTX)
RESULTS = BucketSpec(subjects.KV_RESULTS, ttl=RESULT_TTL_S)
FLOWS = BucketSpec(subjects.KV_FLOWS, history=8)
STORE = BucketSpec(subjects.KV_STORE)
FILES = BucketSpec(subjects.KV_FILES)
HOLDINGS = BucketSpec(subjects.KV_HOLDINGS, ttl=HOLDINGS_TTL_S)
DATASETS = BucketSpec(subjects.KV_DATASETS, history=8)
BLOCKS = BucketSpec(subjects.KV_BLOCKS, history=BLOCK_HISTORY)
CELLS = BucketSpec(subjects.KV_CELLS, ttl=CELL_TTL_S)
BUNDLES = BucketSpec(subjects.OBJ_BUNDLES, objects=True)
PRINCIPALS = BucketSpec(subjects.KV_PRINCIPALS, history=8)
GRANTS = BucketSpec(subjects.KV_GRANTS, history=4)
INVITES = BucketSpec(subjects.KV_INVITES)
HUBS = BucketSpec(subjects.KV_HUBS)
_LEASE = BucketSpec(subjects.KV_LEASE)

BUCKETS = (
    NODES,
    APPS,
    PLACE,
    ACTORS,
    CTX,
    RESULTS,
    FLOWS,
    STORE,
    FILES,
    HOLDINGS,
    DATASETS,
    BLOCKS,
    CELLS,
    BUNDLES,
    PRINCIPALS,
    GRANTS,
    INVITES,
    HUBS,
)


def lease(ttl: float) -> BucketSpec:
    """The lease bucket: an entry expires ``ttl`` seconds after its last write."""
    return replace(_LEASE, ttl=ttl)


LOGS = StreamSpec(
    subjects.STREAM_LOGS,
    (subjects.LOGS_ALL,),
    max_bytes=64 * 1024 * 1024,
    max_msgs_per_subject=2000,
)
CALLS = StreamSpec(
    subjects.STREAM_CALLS,
    (subjects.DURABLE_ALL,),
    work_queue=True,
    duplicate_window=DUPLICATE_WINDOW_S,
)

AUDIT = StreamSpec(subjects.STREAM_AUDIT, (subjects.AUDIT,))
"""The audit log: kept whole (no limits), written by the authority alone."""

USAGE = StreamSpec(subjects.STREAM_USAGE, (subjects.USAGE_ALL,), max_bytes=256 * 1024 * 1024)
"""Usage history: each node's reports, the oldest dropped past 256 MiB."""

STREAMS = (LOGS, CALLS, AUDIT, USAGE)


def stream_names() -> list[str]:
    """The JetStream stream behind every bucket and stream of the mesh."""
    out = [
        subjects.obj_stream(b.name) if b.objects else subjects.kv_stream(b.name) for b in BUCKETS
    ]
    return out + [s.name for s in STREAMS]
