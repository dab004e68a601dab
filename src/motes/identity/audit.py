"""The audit log's chain: each entry signed by the authority and holding the hash of the
entry before it. Pure: ``chain_entry`` makes one, ``verify_chain`` checks a whole log.

An entry is stored as the bytes of a ``Signed`` ``AuditEntry`` (context ``audit1``). Its
``prev`` is the BLAKE2b-256 of the previous entry's stored bytes (32 zero bytes for the
first), and ``seq`` counts from 1, so editing an entry breaks its signature (and the
next entry's link), dropping one breaks the count and the link, and swapping two breaks
both links. The statement inside (a grant, a join's proof, a deploy) is itself signed by
the principal who acted; ``verify_chain`` checks that signature too, against the keys
the mesh knows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec

from ..errors import IntegrityError
from ..wire.trust import AuditEntry
from .keys import SigningKey, fingerprint
from .signed import Signed, seal, verify

__all__ = ["GENESIS", "AuditBroken", "Verified", "chain_entry", "entry_hash", "verify_chain"]

GENESIS = bytes(32)


def entry_hash(raw: bytes) -> bytes:
    return hashlib.blake2b(raw, digest_size=32, person=b"motes-audit-v1").digest()


def chain_entry(authority: SigningKey, entry: AuditEntry) -> bytes:
    return seal(authority, entry, context="audit1")


class AuditBroken(IntegrityError):
    """The log does not verify at ``index`` (0-based, in stored order)."""

    code = "audit_broken"

    def __init__(self, index: int, seq: int, reason: str) -> None:
        super().__init__(f"audit entry #{index + 1} (seq {seq})", reason)
        self.index = index
        self.seq = seq
        self.reason = reason

    def wire_fields(self) -> dict[str, object]:
        return {"index": self.index, "seq": self.seq, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Verified:
    entries: list[AuditEntry]
    head: bytes
    """The hash of the last entry: what the next one must link to."""


def verify_chain(
    raws: Sequence[bytes], *, authorities: set[bytes], signers: Mapping[bytes, str]
) -> Verified:
    """Every entry of the log, checked; ``AuditBroken`` naming the first that is not.

    ``authorities``: fingerprints of keys allowed to keep the log. ``signers``:
    fingerprint -> principal id of every key the mesh knows (for the statements).
    """
    entries: list[AuditEntry] = []
    prev = GENESIS
    for index, raw in enumerate(raws):
        try:
            envelope = msgspec.msgpack.decode(raw, type=Signed)
            entry = verify(envelope, AuditEntry, context="audit1", what="an audit entry")
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, IntegrityError) as exc:
            raise AuditBroken(index, index + 1, f"it was edited or forged ({exc})") from None
        if envelope.signer not in authorities:
            raise AuditBroken(index, entry.seq, "it is signed by a key that does not keep the log")
        if entry.seq != index + 1:
            raise AuditBroken(
                index, entry.seq, f"expected seq {index + 1}: an entry was dropped or moved"
            )
        if entry.prev != prev:
            raise AuditBroken(
                index, entry.seq, "it does not link to the entry before it (dropped or reordered)"
            )
        if entry.statement:
            _check_statement(index, entry, signers)
        entries.append(entry)
        prev = entry_hash(raw)
    return Verified(entries, prev)


def _check_statement(index: int, entry: AuditEntry, signers: Mapping[bytes, str]) -> None:
    try:
        statement = msgspec.msgpack.decode(entry.statement, type=Signed)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        raise AuditBroken(index, entry.seq, "its statement is not a signed envelope") from None
    if fingerprint(statement.key) not in signers:
        raise AuditBroken(
            index, entry.seq, "its statement is signed by a key the mesh does not know"
        )
    # The statement's own context is its type's tag; the envelope checks its signature.
    context = _context(statement.body)
    try:
        verify(statement, object, context=context, what="the statement")
    except IntegrityError:
        raise AuditBroken(index, entry.seq, "its statement's signature does not verify") from None


def _context(body: bytes) -> str:
    """A statement's context is the tag of the record it holds (its first map key's value
    or its array's first element: msgspec tags)."""
    try:
        value = msgspec.msgpack.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return ""
    if isinstance(value, dict):
        return str(value.get("type", ""))
    if isinstance(value, list) and value:
        return str(value[0])
    return ""
