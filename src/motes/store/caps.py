"""Capabilities: the strings that grant access to stored data, and the hashes behind them.

Three levels, each derived from the one above by a tagged, versioned hash, so authority
only goes down (``docs/specs/store-format.md`` has the byte layout)::

    motes:w1:...   write   a dataset's signing seed: add to it, and everything below
    motes:r1:...   read    find, check and decrypt (a file, or a dataset's current version)
    motes:v1:...   verify  find and check shares, repair them; never decrypt

A capability string is ``motes:<level><version>:<base32 body>``; the body starts with a
kind byte (a file, or a dataset) and ends with a 4-byte checksum, so a mistyped or
truncated string is reported as such. A version or kind this Motes does not know is an
``UnknownCapability``, never a crash.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, fields
from typing import ClassVar

import blake3

from ..errors import BadCapability, UnknownCapability
from ..identity.keys import KeyKind, SigningKey, fingerprint

__all__ = [
    "Cap",
    "DatasetReadCap",
    "DatasetVerifyCap",
    "DatasetWriteCap",
    "FileReadCap",
    "FileVerifyCap",
    "parse_cap",
    "tagged_hash",
]

_SCHEME = "motes"
_CHECKSUM = 4
_KIND_FILE = 0
_KIND_DATASET = 1
SI_BYTES = 16


def tagged_hash(tag: str, *parts: bytes, size: int = 32) -> bytes:
    """BLAKE3 in key-derivation mode with context ``motes.store.v1 <tag>``.

    Each part is length-prefixed, so ``("ab", "c")`` and ``("a", "bc")`` never collide.
    """
    h = blake3.blake3(derive_key_context=f"motes.store.v1 {tag}")
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest(length=size)


def storage_index(read_key: bytes) -> bytes:
    """Where a file or dataset is filed: derived from the read key, readable by verifiers."""
    return tagged_hash("storage-index", read_key, size=SI_BYTES)


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()


def _unb32(text: str) -> bytes:
    pad = "=" * (-len(text) % 8)
    return base64.b32decode(text.upper() + pad)


@dataclass(frozen=True, slots=True)
class Cap:
    """Base of every capability; ``str(cap)`` is its printable form."""

    level: ClassVar[str]  # "w", "r" or "v"
    kind: ClassVar[int]
    sizes: ClassVar[tuple[int, ...]]
    """Byte length of each field, in order: the body is the fields concatenated."""

    def body(self) -> bytes:
        return b"".join(getattr(self, f.name) for f in fields(self))

    def __str__(self) -> str:
        raw = bytes([self.kind]) + self.body()
        check = tagged_hash("cap-checksum", raw, size=_CHECKSUM)
        return f"{_SCHEME}:{self.level}1:{_b32(raw + check)}"

    def verify_cap(self) -> FileVerifyCap | DatasetVerifyCap:
        raise NotImplementedError

    @property
    def si(self) -> bytes:
        """The storage index: names the data without granting anything."""
        return self.verify_cap().si_bytes

    @property
    def si_hex(self) -> str:
        return self.si.hex()


@dataclass(frozen=True, slots=True)
class FileVerifyCap(Cap):
    """Locate and check an immutable file's shares (and regenerate lost ones)."""

    level = "v"
    kind = _KIND_FILE
    sizes = (SI_BYTES, 32)
    si_bytes: bytes
    root: bytes
    """The blob root of the file's manifest (see ``format.BlobRoot``)."""

    def verify_cap(self) -> FileVerifyCap:
        return self


@dataclass(frozen=True, slots=True)
class FileReadCap(Cap):
    """Read an immutable file (or directory): its manifest's root and the key to its keys."""

    level = "r"
    kind = _KIND_FILE
    sizes = (32, 32)
    key: bytes
    root: bytes

    def verify_cap(self) -> FileVerifyCap:
        return FileVerifyCap(storage_index(self.key), self.root)


@dataclass(frozen=True, slots=True)
class DatasetVerifyCap(Cap):
    """Find a dataset's signed record and check its signature."""

    level = "v"
    kind = _KIND_DATASET
    sizes = (SI_BYTES, 32)
    si_bytes: bytes
    fingerprint: bytes
    """The dataset key's fingerprint (``identity.fingerprint``): its record must be
    signed by the key it names."""

    def verify_cap(self) -> DatasetVerifyCap:
        return self


@dataclass(frozen=True, slots=True)
class DatasetReadCap(Cap):
    """Read a dataset's current version."""

    level = "r"
    kind = _KIND_DATASET
    sizes = (32, 32)
    key: bytes
    fingerprint: bytes

    def verify_cap(self) -> DatasetVerifyCap:
        return DatasetVerifyCap(storage_index(self.key), self.fingerprint)


@dataclass(frozen=True, slots=True)
class DatasetWriteCap(Cap):
    """Change a dataset: the seed of its Ed25519 signing key."""

    level = "w"
    kind = _KIND_DATASET
    sizes = (32,)
    seed: bytes

    @classmethod
    def generate(cls) -> DatasetWriteCap:
        from os import urandom

        return cls(urandom(32))

    def signing_key(self) -> SigningKey:
        return SigningKey.from_seed(KeyKind.DATASET, self.seed)

    def public_key(self) -> bytes:
        return self.signing_key().public

    def read_cap(self) -> DatasetReadCap:
        return DatasetReadCap(
            tagged_hash("dataset-read-key", self.seed), fingerprint(self.public_key())
        )

    def verify_cap(self) -> DatasetVerifyCap:
        return self.read_cap().verify_cap()


_LAYOUT: dict[tuple[str, int], type[Cap]] = {
    (cls.level, cls.kind): cls
    for cls in (FileVerifyCap, FileReadCap, DatasetVerifyCap, DatasetReadCap, DatasetWriteCap)
}
_KNOWN = "w1, r1, v1"


def parse_cap(text: str) -> Cap:
    """The capability a string spells; ``BadCapability`` or ``UnknownCapability`` if none."""
    if not isinstance(text, str):
        raise BadCapability(repr(text), f"expected a string, got {type(text).__name__}")
    text = text.strip()
    parts = text.split(":")
    if len(parts) != 3 or parts[0] != _SCHEME:
        raise BadCapability(text, "expected motes:<level><version>:<data>, e.g. motes:r1:...")
    tag, data = parts[1], parts[2]
    if len(tag) < 2 or tag[0] not in "wrv" or not tag[1:].isdigit():
        raise UnknownCapability(text, f"unknown capability type {tag!r} (known: {_KNOWN})")
    if tag[1:] != "1":
        raise UnknownCapability(
            text, f"capability version {tag!r} is newer than this Motes knows ({_KNOWN})"
        )
    try:
        raw = _unb32(data)
    except (ValueError, TypeError):
        raise BadCapability(text, "the data part is not base32") from None
    if len(raw) < 1 + _CHECKSUM:
        raise BadCapability(text, "too short")
    body, check = raw[:-_CHECKSUM], raw[-_CHECKSUM:]
    if tagged_hash("cap-checksum", body, size=_CHECKSUM) != check:
        raise BadCapability(text, "checksum mismatch (mistyped or truncated?)")
    cls = _LAYOUT.get((tag[0], body[0]))
    if cls is None:
        raise UnknownCapability(text, f"unknown kind {body[0]} for a {tag} capability")
    if len(body) - 1 != sum(cls.sizes):
        raise BadCapability(text, f"wrong length for a {tag} capability")
    values: list[bytes] = []
    at = 1
    for size in cls.sizes:
        values.append(body[at : at + size])
        at += size
    return cls(*values)
