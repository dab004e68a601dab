"""The block as a reader sees it: a record at one revision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import BadMessage
from ..wire.blocks import BlockRecord, Compute
from ..wire.bus import Entry
from ..wire.codec import decode

__all__ = ["Block", "BlockChange", "block_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """One block as read, at one revision."""

    id: str
    parent: str | None = None
    children: list[str] = field(default_factory=list)
    props: dict[str, Any] = field(default_factory=dict)
    computed: dict[str, Compute] = field(default_factory=dict)
    text: str = ""
    revision: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def of(cls, record: BlockRecord, revision: int) -> Block:
        return cls(
            id=record.id,
            parent=record.parent,
            children=list(record.children),
            props=dict(record.props),
            computed=dict(record.computed),
            text=record.text,
            revision=revision,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    def record(self, **changes: Any) -> BlockRecord:
        fields = {
            "id": self.id,
            "parent": self.parent,
            "children": self.children,
            "props": self.props,
            "computed": self.computed,
            "text": self.text,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
        return BlockRecord(**{**fields, **changes})

    def to_json(self) -> dict[str, Any]:
        """Plain values (the HTTP API's shape)."""
        out: dict[str, Any] = msgspec.to_builtins(self.record())
        out.pop("type", None)
        out["revision"] = self.revision
        return out


@dataclass(frozen=True, slots=True)
class BlockChange:
    """A block written (``block``) or deleted (``block`` None)."""

    id: str
    block: Block | None
    revision: int


def block_of(entry: Entry) -> Block | None:
    try:
        return Block.of(decode(entry.value or b"", BlockRecord), entry.revision)
    except BadMessage:
        return None  # not a block we can read (a newer version's): left out, not fatal
