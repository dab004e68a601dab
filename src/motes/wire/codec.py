"""msgpack encoding of messages, with typed errors for what cannot be encoded or decoded.

One encoder and one decoder per message type, created once: msgspec is fastest that way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec

from ..errors import BadMessage, EncodeError, MotesError, PayloadTooLarge, error_from_wire
from .messages import Batch, BatchReply, DurableCall, Err, Ok, Reply, Request

__all__ = [
    "batch_results",
    "check_size",
    "decode",
    "decode_all",
    "decode_reply",
    "decode_request",
    "encode",
    "encode_error",
    "encode_request",
    "encode_value_reply",
    "error_reply",
    "raise_for",
]

T = TypeVar("T")
log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_request_decoder: msgspec.msgpack.Decoder[Request] = msgspec.msgpack.Decoder(Request)
_reply_decoder: msgspec.msgpack.Decoder[Reply] = msgspec.msgpack.Decoder(Reply)
_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
# What msgspec raises on hostile bytes: bad msgpack, strings that are not UTF-8, nesting deep
# enough to exhaust the stack. All of it is one thing to a receiver: a malformed message.
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def encode(msg: Any) -> bytes:
    """Encode a control-plane message (always encodable: built from our own types)."""
    return _encoder.encode(msg)


def check_size(data: bytes, limit: int, what: str) -> bytes:
    if limit and len(data) > limit:
        raise PayloadTooLarge(what, len(data), limit)
    return data


def encode_request(msg: Request | DurableCall, limit: int, mote: str) -> bytes:
    """Encode a call; an unencodable argument raises EncodeError naming it."""
    try:
        data = _encoder.encode(msg)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _name_bad_value(msg, exc) from None
    return check_size(data, limit, f"the call to {mote}")


def encode_value_reply(value: Any, limit: int, mote: str) -> bytes:
    """Encode a handler's return value as an Ok reply, or an Err reply saying why not."""
    try:
        data = _encoder.encode(Ok(value))
    except (TypeError, ValueError, OverflowError) as exc:
        return encode_error(EncodeError(f"the result of {mote}", type(value).__name__, str(exc)))
    if limit and len(data) > limit:
        return encode_error(PayloadTooLarge(f"the result of {mote}", len(data), limit))
    return data


def _name_bad_value(msg: Request | DurableCall, exc: Exception) -> EncodeError:
    items: list[tuple[str, Any]] = []
    if isinstance(msg, Batch):
        for i, args in enumerate(msg.items):
            items += [(f"item {i} argument {j}", a) for j, a in enumerate(args)]
    else:
        items += [(f"argument {j}", a) for j, a in enumerate(msg.args)]
        items += [(f"argument {k!r}", v) for k, v in msg.kwargs.items()]
    for what, value in items:
        try:
            _encoder.encode(value)
        except (TypeError, ValueError, OverflowError) as inner:
            return EncodeError(what, type(value).__name__, str(inner))
    return EncodeError("a value", "?", str(exc))


def decode_request(data: bytes) -> Request:
    try:
        return _request_decoder.decode(data)
    except _UNDECODABLE as exc:
        raise BadMessage(f"not a Motes call ({exc})") from None


def decode_reply(data: bytes) -> Reply:
    try:
        return _reply_decoder.decode(data)
    except _UNDECODABLE as exc:
        raise BadMessage(f"not a Motes reply ({exc})") from None


def decode(data: bytes, type_: type[T]) -> T:
    """Decode a control-plane message of a known type; BadMessage if it is not one."""
    dec = _decoders.get(type_)
    if dec is None:
        dec = _decoders[type_] = msgspec.msgpack.Decoder(type_)
    try:
        return dec.decode(data)  # type: ignore[no-any-return]
    except _UNDECODABLE as exc:
        name = getattr(type_, "__name__", None) or str(type_)  # a union has no __name__
        raise BadMessage(f"not a {name} ({exc})") from None


def decode_all(raw: Iterable[bytes], type_: type[T]) -> list[T]:
    """The answers of a scatter that decode: one broken responder does not hide the rest."""
    out = []
    for data in raw:
        try:
            out.append(decode(data, type_))
        except BadMessage as exc:
            log.warning("ignoring a malformed %s: %s", getattr(type_, "__name__", type_), exc)
    return out


def error_reply(exc: MotesError) -> Err:
    return Err(code=exc.code, message=exc.message, fields=exc.wire_fields())


def encode_error(exc: MotesError) -> bytes:
    return _encoder.encode(error_reply(exc))


def raise_for(reply: Ok | Err) -> Any:
    """The value of an Ok reply, or the typed error an Err reply describes."""
    if isinstance(reply, Ok):
        return reply.value
    raise error_from_wire(reply.code, reply.message, reply.fields)


def batch_results(reply: Reply, expected: int) -> list[Ok | Err]:
    """Per-item results of a batch; a whole-batch error is repeated for every item."""
    if isinstance(reply, BatchReply):
        if len(reply.results) != expected:
            raise BadMessage(f"batch reply has {len(reply.results)} results, expected {expected}")
        return reply.results
    if isinstance(reply, Err):
        return [reply] * expected
    raise BadMessage("a single reply arrived for a batch")
