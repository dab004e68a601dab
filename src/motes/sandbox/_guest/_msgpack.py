"""A pure-Python msgpack codec for the guest, value for value what msgspec does.

The host encodes a call's arguments with msgspec and decodes the guest's result with
it, so this codec needs only the types msgspec's own encoder and decoder agree on:
None, bools, ints within 64 bits, floats (always float64, as msgspec writes them), str,
bytes (and bytearray, memoryview), lists and tuples, dicts. Anything else is a
``TypeError`` and an int out of range an ``OverflowError``, as in msgspec.
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["decode", "encode"]

_F64 = struct.Struct(">d")
_F32 = struct.Struct(">f")


def encode(value: Any) -> bytes:
    out = bytearray()
    _put(out, value)
    return bytes(out)


def _put(out: bytearray, v: Any) -> None:
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        _put_int(out, v)
    elif isinstance(v, float):
        out.append(0xCB)
        out += _F64.pack(v)
    elif isinstance(v, str):
        data = v.encode("utf-8")
        _put_len(out, len(data), 0xA0, 32, (0xD9, 0xDA, 0xDB))
        out += data
    elif isinstance(v, bytes | bytearray | memoryview):
        data = bytes(v)
        _put_len(out, len(data), None, 0, (0xC4, 0xC5, 0xC6))
        out += data
    elif isinstance(v, list | tuple):
        _put_len(out, len(v), 0x90, 16, (None, 0xDC, 0xDD))
        for item in v:
            _put(out, item)
    elif isinstance(v, dict):
        _put_len(out, len(v), 0x80, 16, (None, 0xDE, 0xDF))
        for key, item in v.items():
            _put(out, key)
            _put(out, item)
    else:
        raise TypeError(f"Encoding objects of type {type(v).__name__} is unsupported")


def _put_int(out: bytearray, v: int) -> None:
    if 0 <= v < 128:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif v > 0:
        for tag, size in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8)):
            if v < 1 << (8 * size):
                out.append(tag)
                out += v.to_bytes(size, "big")
                return
        raise OverflowError("can't serialize ints < -2**63 or > 2**64 - 1")
    else:
        for tag, size in ((0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
            if v >= -(1 << (8 * size - 1)):
                out.append(tag)
                out += v.to_bytes(size, "big", signed=True)
                return
        raise OverflowError("can't serialize ints < -2**63 or > 2**64 - 1")


def _put_len(
    out: bytearray, n: int, fix: int | None, fix_max: int, tags: tuple[int | None, ...]
) -> None:
    if fix is not None and n < fix_max:
        out.append(fix | n)
        return
    for tag, size in zip(tags, (1, 2, 4), strict=True):
        if tag is not None and n < 1 << (8 * size):
            out.append(tag)
            out += n.to_bytes(size, "big")
            return
    raise ValueError(f"a value of length {n} is too long for msgpack")


def decode(data: bytes) -> Any:
    value, end = _get(memoryview(data), 0)
    if end != len(data):
        raise ValueError(f"msgpack: {len(data) - end} trailing bytes")
    return value


_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}
_CONTAINER = {0xDC: 2, 0xDD: 4, 0xDE: 2, 0xDF: 4}
_UINT = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
_SINT = {0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}


def _get(buf: memoryview, i: int) -> tuple[Any, int]:
    tag = buf[i]
    i += 1
    if tag < 0x80:
        return tag, i
    if tag >= 0xE0:
        return tag - 0x100, i
    if 0xA0 <= tag <= 0xBF:
        return _text(buf, i, tag & 0x1F)
    if 0x90 <= tag <= 0x9F:
        return _array(buf, i, tag & 0x0F)
    if 0x80 <= tag <= 0x8F:
        return _map(buf, i, tag & 0x0F)
    if tag == 0xC0:
        return None, i
    if tag in (0xC2, 0xC3):
        return tag == 0xC3, i
    if tag == 0xCB:
        return _F64.unpack_from(buf, i)[0], i + 8
    if tag == 0xCA:
        return _F32.unpack_from(buf, i)[0], i + 4
    if tag in _UINT:
        size = _UINT[tag]
        return int.from_bytes(buf[i : i + size], "big"), i + size
    if tag in _SINT:
        size = _SINT[tag]
        return int.from_bytes(buf[i : i + size], "big", signed=True), i + size
    if tag in _SIZED:
        size = _SIZED[tag]
        n = int.from_bytes(buf[i : i + size], "big")
        i += size
        if tag >= 0xD9:
            return _text(buf, i, n)
        return bytes(buf[i : i + n]), i + n
    if tag in _CONTAINER:
        size = _CONTAINER[tag]
        n = int.from_bytes(buf[i : i + size], "big")
        i += size
        return (_array if tag in (0xDC, 0xDD) else _map)(buf, i, n)
    raise ValueError(f"msgpack: unsupported type byte 0x{tag:02x}")


def _text(buf: memoryview, i: int, n: int) -> tuple[str, int]:
    return str(buf[i : i + n], "utf-8"), i + n


def _array(buf: memoryview, i: int, n: int) -> tuple[list[Any], int]:
    items = []
    for _ in range(n):
        item, i = _get(buf, i)
        items.append(item)
    return items, i


def _map(buf: memoryview, i: int, n: int) -> tuple[dict[Any, Any], int]:
    out = {}
    for _ in range(n):
        key, i = _get(buf, i)
        out[key], i = _get(buf, i)
    return out, i
