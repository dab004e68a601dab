"""The mesh's records that say who wrote them, and how a reader checks that. Pure.

KV values that NATS cannot protect per key (any node may watch the whole bucket) are
signed, and a reader verifies before it acts:

- a node record (``motes_nodes``) is signed by that node's key: its id is the key's;
- an app record (``motes_apps``) is signed by the person who deployed it;
- a node's assignment (``motes_place``) is signed by the scheduler leader that wrote it,
  and names the lease epoch it holds.
"""

from __future__ import annotations

import msgspec

from ..errors import IntegrityError
from ..wire.messages import AppRecord, NodeAssignment, NodeRecord
from .keys import KeyKind, SigningKey, short_id
from .signed import Signed, open_signed, seal

__all__ = [
    "APP_CONTEXT",
    "ASSIGN_CONTEXT",
    "GRANT_CONTEXT",
    "NODE_CONTEXT",
    "PRINCIPAL_CONTEXT",
    "open_app",
    "open_assignment",
    "open_node",
    "seal_app",
    "seal_assignment",
    "seal_node",
    "signer_of",
]

PRINCIPAL_CONTEXT = "prin1"
GRANT_CONTEXT = "grant1"
APP_CONTEXT = "app1"
NODE_CONTEXT = "node1"
ASSIGN_CONTEXT = "assign1"


def signer_of(raw: bytes, kind: KeyKind) -> str:
    """The id of the key that signed an envelope (not yet verified: use ``open_*``)."""
    try:
        return short_id(kind, msgspec.msgpack.decode(raw, type=Signed).key)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise IntegrityError("a signed record", "it is not a signed envelope") from None


def seal_node(key: SigningKey, record: NodeRecord) -> bytes:
    return seal(key, record, context=NODE_CONTEXT)


def open_node(raw: bytes) -> NodeRecord:
    """A node record, which its own key must have signed."""
    record = open_signed(raw, NodeRecord, context=NODE_CONTEXT, what="a node record")
    if signer_of(raw, KeyKind.NODE) != record.id:
        raise IntegrityError(f"node record {record.id}", "it is not signed by that node")
    return record


def seal_app(key: SigningKey, record: AppRecord) -> bytes:
    return seal(key, record, context=APP_CONTEXT)


def open_app(raw: bytes) -> tuple[AppRecord, str]:
    """An app record and the id of the person who deployed (signed) it."""
    record = open_signed(raw, AppRecord, context=APP_CONTEXT, what="an app record")
    return record, signer_of(raw, KeyKind.PERSON)


def seal_assignment(key: SigningKey, assignment: NodeAssignment) -> bytes:
    return seal(key, assignment, context=ASSIGN_CONTEXT)


def open_assignment(raw: bytes) -> tuple[NodeAssignment, str]:
    """An assignment and the id of the node (scheduler leader) that signed it."""
    record = open_signed(raw, NodeAssignment, context=ASSIGN_CONTEXT, what="an assignment")
    return record, signer_of(raw, KeyKind.NODE)
