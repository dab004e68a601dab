"""Keys and signatures for the mesh, nodes, people, apps and datasets.

``keys``: one key type and one fingerprint scheme for every principal. ``signed``: the
one envelope every signed record travels in, and its verification.
"""

from .keys import KeyKind, SigningKey, fingerprint, read_public, short_id, verify_signature
from .signed import Signed, open_signed, seal, sign, verify

__all__ = [
    "KeyKind",
    "Signed",
    "SigningKey",
    "fingerprint",
    "open_signed",
    "read_public",
    "seal",
    "short_id",
    "sign",
    "verify",
    "verify_signature",
]
