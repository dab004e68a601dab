"""Ed25519 keys on disk: created once with mode 0600, loaded thereafter.

A node's id is a fingerprint of its public key, so the id cannot be claimed without
the key file. The public key is kept beside the seed (``node.pub``), so a process that
only needs its id, not to sign, never loads the crypto library (7 MiB of a node's
memory); ``provision`` lets whoever sets a node up mint both files first.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import FatalError
from ..ids import NodeId

__all__ = ["NodeKey", "fingerprint"]

_SEED_BYTES = 32


def fingerprint(public: bytes) -> NodeId:
    """A short, lowercase id for a public key: ``n`` + 12 base32 characters of its hash."""
    digest = hashlib.blake2b(b"motes-node-id-v1" + public, digest_size=10).digest()
    return NodeId("n" + base64.b32encode(digest).decode().lower()[:12])


@dataclass(frozen=True, slots=True)
class NodeKey:
    """A node's signing key and the id derived from it."""

    seed: bytes
    public: bytes

    @property
    def id(self) -> NodeId:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(data)

    @staticmethod
    def verify(public: bytes, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
        except (InvalidSignature, ValueError):  # ValueError: not a 32-byte public key
            return False
        return True

    @classmethod
    def provision(cls, path: Path) -> NodeKey:
        """Create (or load) the key at ``path`` and write its public half beside it."""
        key = cls.load_or_create(path)
        pub = path.with_suffix(".pub")
        if not pub.exists():
            tmp = pub.with_suffix(".pub.tmp")
            tmp.write_bytes(key.public)
            tmp.replace(pub)
        return key

    @classmethod
    def load_or_create(cls, path: Path) -> NodeKey:
        """Load the 32-byte seed at ``path``, creating it (mode 0600) if absent."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise FatalError(
                    f"key file {path} is readable by others (mode {mode:o}); run `chmod 600 {path}`"
                ) from None
            seed = path.read_bytes()
            if len(seed) != _SEED_BYTES:
                raise FatalError(f"key file {path} is damaged: expected 32 bytes") from None
        else:
            seed = os.urandom(_SEED_BYTES)
            with os.fdopen(fd, "wb") as f:
                f.write(seed)
                f.flush()
                os.fsync(f.fileno())
        return cls(seed, _public_of(seed, path.with_suffix(".pub")))


def _public_of(seed: bytes, pub: Path) -> bytes:
    """The public key for ``seed``: from ``pub`` if it holds one, else derived."""
    try:
        public = pub.read_bytes()
    except FileNotFoundError:
        public = b""
    if len(public) == _SEED_BYTES:
        return public
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    private = Ed25519PrivateKey.from_private_bytes(seed)
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
