"""What a block may hold, checked before anything is written: ids, property names,
values, computed cells and sizes. Every refusal is a ``BadBlock`` saying what was wrong."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from ..errors import BadBlock, RequestError
from ..ids import MoteRef
from ..wire.blocks import BlockRecord, Compute

__all__ = [
    "MAX_BLOCK_BYTES",
    "check_compute",
    "check_id",
    "check_prop",
    "check_record",
    "check_value",
    "parse_ref",
]

MAX_BLOCK_BYTES = 64 * 1024
"""The largest block, encoded (text and properties together)."""
MAX_CHILDREN = 10_000
MAX_DEPTH = 8
"""How deeply lists and objects may nest inside one property value."""

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PROP = re.compile(r"[^.\x00-\x1f\x7f]{1,64}")


def check_id(block: object, what: str = "block id") -> str:
    if not isinstance(block, str) or not _ID.fullmatch(block):
        raise BadBlock(what, f"{block!r} is not 1-64 letters, digits, '_' or '-' (e.g. 'todo-1')")
    return block


def check_prop(name: object) -> str:
    if not isinstance(name, str) or not _PROP.fullmatch(name) or name != name.strip():
        raise BadBlock(
            "property name",
            f"{name!r} must be 1-64 characters, without '.', control characters or "
            "surrounding spaces",
        )
    return name


def check_value(value: Any, where: str, depth: int = 0) -> Any:
    """A JSON value: null, true/false, a finite number, a string, a list, an object."""
    if depth > MAX_DEPTH:
        raise BadBlock(where, f"nests deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise BadBlock(where, f"{value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadBlock(where, f"{value} is not a finite number")
        return value
    if isinstance(value, list | tuple):
        return [check_value(v, where, depth + 1) for v in value]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise BadBlock(where, f"object keys must be strings, not {k!r}")
        return {k: check_value(v, where, depth + 1) for k, v in value.items()}
    raise BadBlock(where, f"a {type(value).__name__} is not a JSON value")


def parse_ref(ref: object, block: str) -> tuple[str, str]:
    """``"prop"`` (of ``block``) or ``"other.prop"``: (block id, property name)."""
    if not isinstance(ref, str):
        raise BadBlock("computed argument", f"{ref!r} is not a string")
    head, dot, tail = ref.partition(".")
    if dot:
        return check_id(head, f"computed argument {ref!r}: block id"), check_prop(tail)
    return block, check_prop(head)


def check_compute(spec: Any, block: str, prop: str) -> Compute:
    if isinstance(spec, Compute):
        compute = spec
    else:
        try:
            compute = msgspec.convert(spec, Compute)
        except msgspec.ValidationError as exc:
            raise BadBlock(
                f"computed cell {prop!r}",
                f"{exc} (give {{'mote': 'app.fn', 'args': ['prop', ...], 'mode': 'auto'}})",
            ) from None
    try:
        MoteRef.parse(compute.mote)
    except RequestError as exc:
        raise BadBlock(f"computed cell {prop!r}", f"mote: {exc}") from None
    for arg in compute.args:
        if parse_ref(arg, block) == (block, prop):
            raise BadBlock(f"computed cell {prop!r}", "cannot take itself as an argument")
    return compute


def check_record(record: BlockRecord) -> bytes:
    """The record's bytes, once it passes every rule."""
    check_id(record.id)
    if record.parent is not None:
        check_id(record.parent, "parent id")
        if record.parent == record.id:
            raise BadBlock("parent id", "a block cannot be its own parent")
    if len(record.children) > MAX_CHILDREN:
        raise BadBlock("children", f"more than {MAX_CHILDREN}")
    if len(set(record.children)) != len(record.children):
        raise BadBlock("children", "a child is listed twice")
    for name in record.props:
        check_prop(name)
    both = set(record.props) & set(record.computed)
    if both:
        raise BadBlock("properties", f"{sorted(both)} are both plain and computed")
    if not isinstance(record.text, str):
        raise BadBlock("text", "must be a string (Markdown)")
    data = msgspec.msgpack.encode(record)
    if len(data) > MAX_BLOCK_BYTES:
        raise BadBlock("block", f"{len(data)} bytes encoded, over the {MAX_BLOCK_BYTES} limit")
    return data
