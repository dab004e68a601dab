"""Ed25519 keys: one kind per principal (mesh, node, person, dataset), one fingerprint
scheme for all of them, and key files created once with mode 0600.

An id is a short fingerprint of a public key with the kind's letter in front
(``n3k9x2p4q7w1a`` is a node, ``p...`` a person, ``m...`` a mesh), so an id cannot be
claimed without the key. The public half is kept beside the seed (``node.pub``): a
process that only needs its id, not to sign, never loads the crypto library.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import FatalError

__all__ = ["KeyKind", "SigningKey", "fingerprint", "read_public", "short_id", "verify_signature"]

SEED_BYTES = 32
_FINGERPRINT = b"motes-key-v1"


class KeyKind(enum.Enum):
    """What a key belongs to; its value is the letter its ids start with."""

    MESH = "m"
    NODE = "n"
    PERSON = "p"
    DATASET = "d"


def fingerprint(public: bytes) -> bytes:
    """The 32-byte fingerprint of a public key: what capabilities and envelopes name."""
    return hashlib.blake2b(public, digest_size=32, person=_FINGERPRINT).digest()


def short_id(kind: KeyKind, public: bytes) -> str:
    """A short, lowercase id: the kind's letter and 12 base32 characters of the fingerprint."""
    return kind.value + base64.b32encode(fingerprint(public)).decode().lower()[:12]


def verify_signature(public: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public``'s Ed25519 signature of ``data``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):  # ValueError: not a 32-byte public key
        return False
    return True


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A principal's signing key and the id derived from it."""

    kind: KeyKind
    seed: bytes
    public: bytes

    @property
    def id(self) -> str:
        return short_id(self.kind, self.public)

    @property
    def fingerprint(self) -> bytes:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(data)

    @classmethod
    def from_seed(cls, kind: KeyKind, seed: bytes) -> SigningKey:
        if len(seed) != SEED_BYTES:
            raise ValueError(f"an Ed25519 seed is {SEED_BYTES} bytes, not {len(seed)}")
        return cls(kind, bytes(seed), _derive_public(seed))

    @classmethod
    def generate(cls, kind: KeyKind) -> SigningKey:
        return cls.from_seed(kind, os.urandom(SEED_BYTES))

    @classmethod
    def provision(cls, path: Path, kind: KeyKind) -> SigningKey:
        """Create (or load) the key at ``path`` and write its public half beside it."""
        key = cls.load_or_create(path, kind)
        pub = path.with_suffix(".pub")
        if not pub.exists():
            tmp = pub.with_suffix(".pub.tmp")
            tmp.write_bytes(key.public)
            tmp.replace(pub)
        return key

    @classmethod
    def load_or_create(cls, path: Path, kind: KeyKind) -> SigningKey:
        """Load the 32-byte seed at ``path``, creating it (mode 0600) if absent."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls.load(path, kind)
        seed = os.urandom(SEED_BYTES)
        with os.fdopen(fd, "wb") as f:
            f.write(seed)
            f.flush()
            os.fsync(f.fileno())
        return cls(kind, seed, _public_of(seed, path.with_suffix(".pub")))

    @classmethod
    def load(cls, path: Path, kind: KeyKind) -> SigningKey:
        """Load an existing key; FatalError if it is readable by others or damaged."""
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise FatalError(
                f"key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
            )
        seed = path.read_bytes()
        if len(seed) != SEED_BYTES:
            raise FatalError(f"key file {path} is damaged: expected {SEED_BYTES} bytes")
        return cls(kind, seed, _public_of(seed, path.with_suffix(".pub")))


def read_public(path: Path) -> bytes | None:
    """The public key kept beside a key file (``node.pub``), without the crypto library."""
    try:
        public = path.read_bytes()
    except OSError:
        return None
    return public if len(public) == SEED_BYTES else None


def _public_of(seed: bytes, pub: Path) -> bytes:
    """The public key for ``seed``: from ``pub`` if it holds one, else derived."""
    return read_public(pub) or _derive_public(seed)


def _derive_public(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
