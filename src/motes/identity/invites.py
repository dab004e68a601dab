"""Invite tokens: one printable string that lets a machine or a person join a mesh once.

``motes-invite-1:`` then the unpadded base32 of a ``Signed`` ``Invite`` (context
``invite1``), signed by the mesh key. The invite names the mesh (its key and id), the
servers to reach, the expiry, and carries a credential of its own that can do nothing
but ask the authority to admit one new key. Decoding checks the checksum-free shape,
the mesh signature and that the signing key is the mesh the invite names: a byte
changed anywhere is "damaged or tampered with", never a crash.
"""

from __future__ import annotations

import base64
import time

import msgspec

from ..errors import IntegrityError, Unauthorized
from ..wire.trust import Invite
from .keys import KeyKind, SigningKey, short_id
from .signed import Signed, seal, verify

__all__ = ["TOKEN_PREFIX", "decode_token", "encode_token", "join_proof"]

TOKEN_PREFIX = "motes-invite-1:"


def encode_token(mesh: SigningKey, invite: Invite) -> str:
    raw = seal(mesh, invite, context="invite1")
    return TOKEN_PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()


def decode_token(token: str, *, now: float | None = None) -> Invite:
    """The invite a token carries; ``Unauthorized`` saying why when it cannot be used."""
    text = token.strip()
    if not text.startswith(TOKEN_PREFIX):
        raise Unauthorized(f"not a Motes invite (it should start with {TOKEN_PREFIX!r})")
    body = text[len(TOKEN_PREFIX) :].upper()
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
        signed = msgspec.msgpack.decode(raw, type=Signed)
        invite = verify(signed, Invite, context="invite1", what="the invite")
    except (ValueError, msgspec.DecodeError, UnicodeDecodeError, RecursionError, IntegrityError):
        raise Unauthorized("the invite is damaged or was tampered with") from None
    if signed.key != invite.mesh.key or short_id(KeyKind.MESH, signed.key) != invite.mesh.id:
        raise Unauthorized("the invite is damaged or was tampered with (not signed by its mesh)")
    at = time.time() if now is None else now
    if invite.expires <= at:
        ago = int(at - invite.expires)
        raise Unauthorized(f"the invite expired {ago} s ago; ask for a new one (`motes invite`)")
    return invite


def join_proof(invite_id: str, mesh_id: str) -> bytes:
    """What a joiner signs with its new key: it holds that key, for this invite, here."""
    return f"motes-join-v1\x00{invite_id}\x00{mesh_id}".encode()
