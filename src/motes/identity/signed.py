"""The one signed envelope every signed record travels in.

A ``Signed`` holds a record's encoded bytes exactly as they were signed, the signer's
public key and an Ed25519 signature over a context string and those bytes. The context
(the record type's tag) keeps a signature made for one kind of record from ever
verifying as another. A reader verifies before it decodes: ``verify`` returns the record
or raises ``IntegrityError`` (forged, edited, truncated, or signed by someone other
than the reader expected), never a half-trusted value.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from ..errors import IntegrityError
from .keys import SigningKey, fingerprint, verify_signature

__all__ = ["Signed", "open_signed", "seal", "sign", "verify"]

T = TypeVar("T")
_DOMAIN = b"motes-signed-v1\x00"
_encoder = msgspec.msgpack.Encoder()


class Signed(msgspec.Struct, frozen=True, kw_only=True, tag="signed1"):
    body: bytes
    """The record's msgpack bytes, as signed."""
    key: bytes
    """The signer's Ed25519 public key."""
    signature: bytes

    @property
    def signer(self) -> bytes:
        """The signer's fingerprint (``identity.fingerprint`` of its key)."""
        return fingerprint(self.key)


def _message(context: str, body: bytes) -> bytes:
    return _DOMAIN + context.encode() + b"\x00" + body


def sign(key: SigningKey, record: Any, *, context: str) -> Signed:
    """Sign ``record`` (any msgspec-encodable value) for readers that expect ``context``."""
    body = _encoder.encode(record)
    return Signed(body=body, key=key.public, signature=key.sign(_message(context, body)))


def seal(key: SigningKey, record: Any, *, context: str) -> bytes:
    """``sign`` and encode: the bytes to store or send."""
    return _encoder.encode(sign(key, record, context=context))


def verify(
    signed: Signed,
    type_: type[T],
    *,
    context: str,
    signer: bytes | None = None,
    what: str = "a signed record",
) -> T:
    """The record inside ``signed`` once its signature checks out.

    ``signer``, if given, is the fingerprint the reader expects the key to have.
    """
    if signer is not None and signed.signer != signer:
        raise IntegrityError(what, "signed by a key other than the one expected")
    if not verify_signature(signed.key, signed.signature, _message(context, signed.body)):
        raise IntegrityError(what, "the signature does not match its contents")
    try:
        return msgspec.msgpack.decode(signed.body, type=type_)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise IntegrityError(what, f"signed, but not a {type_.__name__} ({exc})") from None


def open_signed(
    data: bytes,
    type_: type[T],
    *,
    context: str,
    signer: bytes | None = None,
    what: str = "a signed record",
) -> T:
    """Decode an envelope from bytes and ``verify`` it; damage is an ``IntegrityError``."""
    try:
        signed = msgspec.msgpack.decode(data, type=Signed)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise IntegrityError(what, f"not a signed envelope ({exc})") from None
    return verify(signed, type_, context=context, signer=signer, what=what)
