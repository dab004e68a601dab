"""NATS decentralized-auth credentials, minted by Motes: nkeys and JWTs.

NATS names Ed25519 keys "nkeys": a kind prefix byte, the 32 raw bytes and a CRC-16
(XMODEM, little-endian), in unpadded base32 (``O...`` operator, ``A...`` account,
``U...`` user). A JWT is ``b64url(header).b64url(claims).b64url(signature)`` with the
header ``{"typ":"JWT","alg":"ed25519-nkey"}``, signed by the issuer's key over the
first two parts. nats-server verifies the chain operator → account → user itself.

Every limit is written out: in a NATS JWT an omitted limit means zero (no
subscriptions, no payload, JetStream off), so the claims here set each one to -1
(unlimited) unless a caller narrows it. ``docs/specs/trust.md`` has the layout.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import Unauthorized
from .keys import KeyKind, SigningKey, verify_signature

__all__ = [
    "NKEY_ACCOUNT",
    "NKEY_OPERATOR",
    "NKEY_USER",
    "Permissions",
    "account_jwt",
    "creds_file",
    "decode_jwt",
    "nkey_public",
    "nkey_seed",
    "operator_jwt",
    "parse_nkey_public",
    "parse_nkey_seed",
    "read_creds",
    "user_jwt",
]

NKEY_OPERATOR = 14 << 3
NKEY_ACCOUNT = 0
NKEY_USER = 20 << 3
_SEED = 18 << 3
_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
_PREFIXES = {"O": NKEY_OPERATOR, "A": NKEY_ACCOUNT, "U": NKEY_USER}


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=")


def nkey_public(public: bytes, prefix: int) -> str:
    """A public key as NATS spells it (``U...``, 56 characters)."""
    raw = bytes([prefix]) + public
    return _b32(raw + _crc16(raw).to_bytes(2, "little"))


def nkey_seed(seed: bytes, prefix: int) -> str:
    """A seed as NATS spells it (``SU...``)."""
    raw = bytes([_SEED | prefix >> 5, (prefix & 31) << 3]) + seed
    return _b32(raw + _crc16(raw).to_bytes(2, "little"))


def parse_nkey_public(text: str) -> tuple[int, bytes]:
    """(prefix, raw public key) of an nkey public string; ``Unauthorized`` if malformed."""
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        raise Unauthorized(f"{text[:12]!r} is not an nkey") from None
    if len(raw) != 35 or _crc16(raw[:-2]).to_bytes(2, "little") != raw[-2:]:
        raise Unauthorized(f"{text[:12]!r} is not an nkey (checksum)")
    return raw[0], raw[1:33]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Permissions:
    """What a user may publish and subscribe to (``deny`` beats ``allow``)."""

    pub_allow: tuple[str, ...] = ()
    pub_deny: tuple[str, ...] = ()
    sub_allow: tuple[str, ...] = ()
    sub_deny: tuple[str, ...] = ()
    responses: int = 0
    """Replies this user may send to whatever reply subject it was handed (0: none
    beyond ``pub_allow``)."""
    response_ttl_s: float = 0.0

    def claims(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pub": {"allow": list(self.pub_allow), "deny": list(self.pub_deny)},
            "sub": {"allow": list(self.sub_allow), "deny": list(self.sub_deny)},
        }
        if self.responses:
            out["resp"] = {"max": self.responses, "ttl": int(self.response_ttl_s * 1e9)}
        return out


_UNLIMITED_NATS = {"subs": -1, "data": -1, "payload": -1}
_UNLIMITED_ACCOUNT = {
    **_UNLIMITED_NATS,
    "imports": -1,
    "exports": -1,
    "wildcards": True,
    "conn": -1,
    "leaf": -1,
}
_UNLIMITED_JETSTREAM = {
    "mem_storage": -1,
    "disk_storage": -1,
    "streams": -1,
    "consumer": -1,
    "max_ack_pending": -1,
    "mem_max_stream_bytes": -1,
    "disk_max_stream_bytes": -1,
    "max_bytes_required": False,
}


def _encode(issuer: SigningKey, issuer_prefix: int, claims: dict[str, Any]) -> str:
    body = dict(claims)
    body["iss"] = nkey_public(issuer.public, issuer_prefix)
    body.setdefault("iat", int(time.time()))
    # nsc's jti: base32 of SHA-512/256 of the claims without it (the server does not check).
    digest = hashlib.new("sha512_256", json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = _b32(digest)
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    signature = issuer.sign(f"{head}.{payload}".encode())
    return f"{head}.{payload}.{_b64(signature)}"


def operator_jwt(operator: SigningKey, *, name: str, system_account: str) -> str:
    return _encode(
        operator,
        NKEY_OPERATOR,
        {
            "sub": nkey_public(operator.public, NKEY_OPERATOR),
            "name": name,
            "nats": {"type": "operator", "version": 2, "system_account": system_account},
        },
    )


def account_jwt(
    operator: SigningKey,
    account: SigningKey,
    *,
    name: str,
    jetstream: bool = True,
    signing_keys: tuple[str, ...] = (),
    revocations: dict[str, int] | None = None,
    iat: int | None = None,
) -> str:
    """An account. ``revocations``: user nkey -> unix time; that user's JWTs issued at or
    before it are refused, and its live connections closed when the account updates."""
    limits: dict[str, Any] = dict(_UNLIMITED_ACCOUNT)
    if jetstream:
        limits.update(_UNLIMITED_JETSTREAM)
    nats: dict[str, Any] = {
        "type": "account",
        "version": 2,
        "limits": limits,
        "default_permissions": {"pub": {}, "sub": {}},
    }
    if signing_keys:
        nats["signing_keys"] = list(signing_keys)
    if revocations:
        nats["revocations"] = dict(revocations)
    claims: dict[str, Any] = {
        "sub": nkey_public(account.public, NKEY_ACCOUNT),
        "name": name,
        "nats": nats,
    }
    if iat is not None:
        claims["iat"] = iat
    return _encode(operator, NKEY_OPERATOR, claims)


def user_jwt(
    signer: SigningKey,
    user: bytes,
    *,
    account: str,
    name: str,
    permissions: Permissions,
    expires: float | None = None,
    bearer: bool = False,
    tags: tuple[str, ...] = (),
) -> str:
    """A user of ``account`` (its nkey, ``A...``), signed by the account key or one of its
    signing keys (then ``issuer_account`` names the account)."""
    nats: dict[str, Any] = {
        "type": "user",
        "version": 2,
        **_UNLIMITED_NATS,
        **permissions.claims(),
    }
    if nkey_public(signer.public, NKEY_ACCOUNT) != account:
        nats["issuer_account"] = account
    if bearer:
        nats["bearer_token"] = True
    if tags:
        nats["tags"] = list(tags)
    claims: dict[str, Any] = {"sub": nkey_public(user, NKEY_USER), "name": name, "nats": nats}
    if expires is not None:
        claims["exp"] = int(expires)
    return _encode(signer, NKEY_ACCOUNT, claims)


@dataclass(frozen=True, slots=True)
class Decoded:
    claims: dict[str, Any]
    issuer: bytes
    subject: str
    expires: float | None = None
    nats: dict[str, Any] = field(default_factory=dict)


def decode_jwt(token: str, *, issuers: tuple[bytes, ...] = (), now: float | None = None) -> Decoded:
    """A JWT's claims once its signature checks out (against ``issuers``, if given);
    ``Unauthorized`` for anything malformed, forged or expired."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise Unauthorized("not a JWT")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
    except (ValueError, TypeError, UnicodeDecodeError):
        raise Unauthorized("a damaged JWT") from None
    if header != _HEADER or not isinstance(claims, dict):
        raise Unauthorized("not a NATS JWT")
    iss = claims.get("iss")
    if not isinstance(iss, str):
        raise Unauthorized("a JWT without an issuer")
    _, issuer = parse_nkey_public(iss)
    if issuers and issuer not in issuers:
        raise Unauthorized("a JWT from an issuer this mesh does not know")
    if not verify_signature(issuer, signature, f"{parts[0]}.{parts[1]}".encode()):
        raise Unauthorized("a JWT whose signature does not verify")
    exp = claims.get("exp")
    if isinstance(exp, int | float) and exp <= (time.time() if now is None else now):
        raise Unauthorized("an expired credential")
    nats = claims.get("nats")
    return Decoded(
        claims=claims,
        issuer=issuer,
        subject=str(claims.get("sub", "")),
        expires=float(exp) if isinstance(exp, int | float) else None,
        nats=nats if isinstance(nats, dict) else {},
    )


def creds_file(jwt: str, user: SigningKey) -> str:
    """A NATS ``.creds`` file: the user JWT and its seed (keep it 0600)."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{nkey_seed(user.seed, NKEY_USER)}\n"
        "------END USER NKEY SEED------\n"
    )


def read_creds(text: str) -> tuple[str, SigningKey]:
    """The user JWT and key in a ``.creds`` file's text; ``Unauthorized`` if malformed."""
    jwt = _between(text, "-----BEGIN NATS USER JWT-----", "------END NATS USER JWT------")
    seed = _between(text, "-----BEGIN USER NKEY SEED-----", "------END USER NKEY SEED------")
    if not jwt or not seed:
        raise Unauthorized("not a NATS credentials file")
    return jwt, SigningKey.from_seed(KeyKind.PERSON, parse_nkey_seed(seed))


def parse_nkey_seed(text: str) -> bytes:
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (ValueError, TypeError):
        raise Unauthorized("a damaged nkey seed") from None
    if len(raw) != 36 or _crc16(raw[:-2]).to_bytes(2, "little") != raw[-2:]:
        raise Unauthorized("a damaged nkey seed (checksum)")
    if raw[0] & 0xF8 != _SEED:
        raise Unauthorized("not an nkey seed")
    return raw[2:34]


def _between(text: str, start: str, end: str) -> str:
    _, sep, rest = text.partition(start)
    if not sep:
        return ""
    body, sep, _ = rest.partition(end)
    return body.strip() if sep else ""
