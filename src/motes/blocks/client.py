"""``mesh.blocks``: blocks kept in the mesh (KV ``motes_blocks``, every revision kept a
while), read, edited, moved and watched.

A block is a small record: an id, a parent, ordered children, properties (JSON values)
and a Markdown text. A *collection* is just a block whose children are its rows; the
table, kanban and wiki views are ways of drawing the same blocks. A property can be
*computed* (``computed={"total": {"mote": "shop.total", "args": ["qty", "price"]}}``):
see ``motes.blocks.cells``.

Every write is a compare-and-set on the block's revision: an edit made from a stale copy
(``expect=``) fails with ``Conflict`` instead of overwriting someone else's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..errors import BadBlock, Conflict, UnknownBlock
from ..wire import resources
from ..wire.blocks import BlockRecord, Compute
from ..wire.bus import KV, Bus
from ._check import check_compute, check_id, check_prop, check_record, check_value
from ._model import Block, BlockChange, block_of
from .cells import Caller, Cells

__all__ = ["Block", "BlockChange", "Blocks"]

_RETRIES = 20
"""Compare-and-set attempts before a busy block's edit gives up with ``Conflict``."""


class Blocks:
    """``mesh.blocks``: create, read, edit, move, delete and watch blocks; computed cells."""

    def __init__(self, bus: Bus, caller: Caller | None = None) -> None:
        """``caller`` calls a mote and says who served it (``mesh.calls.call_traced``);
        without one, computed cells are read but never computed here."""
        self._bus = bus
        self.cells = Cells(bus, self, caller)
        """Computed cells: their state, computing them, a recomputer to run."""

    async def _kv(self) -> KV:
        return await self._bus.kv(resources.BLOCKS)

    # --- reading ---------------------------------------------------------------------

    async def get(self, block: str) -> Block:
        """The block now; ``UnknownBlock`` if there is none."""
        found = await self.find(block)
        if found is None:
            raise UnknownBlock(block)
        return found

    async def find(self, block: str) -> Block | None:
        entry = await (await self._kv()).get(check_id(block))
        return block_of(entry) if entry is not None else None

    async def children(self, block: str) -> list[Block]:
        """The block's children, in order (any deleted since are left out)."""
        parent = await self.get(block)
        kv = await self._kv()
        out = []
        for cid in parent.children:
            entry = await kv.get(cid)
            if entry is not None and (child := block_of(entry)) is not None:
                out.append(child)
        return out

    async def all(self) -> list[Block]:
        """Every block, by id."""
        items = await (await self._kv()).items()
        blocks = [b for e in items.values() if (b := block_of(e)) is not None]
        return sorted(blocks, key=lambda b: b.id)

    async def roots(self) -> list[Block]:
        """Blocks without a parent: pages and collections, by id."""
        return [b for b in await self.all() if b.parent is None]

    async def history(self, block: str) -> list[Block]:
        """Every revision still kept, oldest first (deletes left out)."""
        entries = await (await self._kv()).history(check_id(block))
        return [b for e in entries if e.value and (b := block_of(e)) is not None]

    async def watch(self) -> AsyncIterator[BlockChange]:
        """Every block now, then every change as it happens, until closed."""
        kv = await self._kv()
        async with await kv.watch() as watch:
            async for entry in watch:
                block = block_of(entry) if entry.value else None
                yield BlockChange(entry.key, block, entry.revision)

    # --- writing ---------------------------------------------------------------------

    async def create(
        self,
        props: Mapping[str, Any] | None = None,
        *,
        parent: str | None = None,
        text: str = "",
        computed: Mapping[str, Any] | None = None,
        id: str | None = None,
        index: int | None = None,
    ) -> Block:
        """A new block (id: given, or a fresh one); as the last child of ``parent``, or
        at ``index`` among its children. ``Conflict`` if the id is taken."""
        bid = check_id(id) if id is not None else uuid.uuid4().hex[:12]
        now = time.time()
        record = BlockRecord(
            id=bid,
            parent=check_id(parent, "parent id") if parent is not None else None,
            props=_props(props or {}),
            computed=_computed(computed or {}, bid),
            text=_text(text),
            created_at=now,
            updated_at=now,
        )
        kv = await self._kv()
        if parent is not None:
            await self.get(parent)  # UnknownBlock before anything is written
        revision = await kv.create(bid, check_record(record))
        if parent is not None:
            await self._edit_children(parent, lambda ids: _insert(ids, bid, index))
        return Block.of(record, revision)

    async def update(
        self,
        block: str,
        *,
        props: Mapping[str, Any] | None = None,
        text: str | None = None,
        computed: Mapping[str, Any] | None = None,
        expect: int | None = None,
        compute: bool = True,
    ) -> Block:
        """Change some properties (a value of None removes one), the text, or computed
        cells (a spec, or None to remove one). With ``expect``, only if the block is
        still at that revision (else ``Conflict``). With ``compute``, the block's own
        computed cells whose inputs changed are computed before this returns."""
        changes = _props(props or {}, allow_none=True)
        specs = {
            k: (None if v is None else check_compute(v, block, check_prop(k)))
            for k, v in (computed or {}).items()
        }
        new_text = _text(text) if text is not None else None

        def edit(current: Block) -> BlockRecord:
            merged = {**current.props, **changes}
            cells = {**current.computed, **specs}
            for k in [k for k, v in specs.items() if v is not None]:
                merged.pop(k, None)  # a property made computed is no longer plain
            for k in [k for k, v in changes.items() if v is not None]:
                cells.pop(k, None)  # and the other way round
            return current.record(
                props={k: v for k, v in merged.items() if v is not None},
                computed={k: v for k, v in cells.items() if v is not None},
                text=current.text if new_text is None else new_text,
                updated_at=time.time(),
            )

        updated = await self._edit(block, edit, expect)
        if compute and self.cells.can_compute:
            await self.cells.compute(updated.id)
        return updated

    async def move(self, block: str, parent: str | None, index: int | None = None) -> Block:
        """Make the block a child of ``parent`` (at ``index``, else last), or a root."""
        current = await self.get(block)
        if parent is not None:
            await self._check_not_below(parent, block)
        if current.parent is not None and current.parent != parent:
            await self._edit_children(current.parent, lambda ids: [i for i in ids if i != block])
        moved = await self._edit(block, lambda b: b.record(parent=parent, updated_at=time.time()))
        if parent is not None:
            await self._edit_children(parent, lambda ids: _insert(ids, block, index))
        return moved

    async def delete(self, block: str) -> None:
        """Delete the block and everything below it; ``UnknownBlock`` if there is none."""
        current = await self.get(block)
        kv = await self._kv()
        for child in current.children:
            if await self.find(child) is not None:
                await self.delete(child)
        await kv.delete(current.id)
        if current.parent is not None and await self.find(current.parent) is not None:
            await self._edit_children(current.parent, lambda ids: [i for i in ids if i != block])

    # --- helpers ---------------------------------------------------------------------

    async def _edit(self, block: str, change: Any, expect: int | None = None) -> Block:
        kv = await self._kv()
        for _ in range(_RETRIES):
            current = await self.get(block)
            if expect is not None and current.revision != expect:
                raise Conflict(f"block {block}", expect, f"it is at revision {current.revision}")
            record = change(current)
            try:
                revision = await kv.update(block, check_record(record), last=current.revision)
            except Conflict:
                if expect is not None:
                    raise
                continue  # someone else wrote in between: apply ours to theirs
            return Block.of(record, revision)
        raise Conflict(f"block {block}", 0, f"still changing after {_RETRIES} attempts")

    async def _edit_children(self, block: str, change: Any) -> Block:
        return await self._edit(
            block, lambda b: b.record(children=change(list(b.children)), updated_at=time.time())
        )

    async def _check_not_below(self, parent: str, block: str) -> None:
        """Refuse to move a block under itself or one of its descendants."""
        seen: set[str] = set()
        node: str | None = parent
        while node is not None and node not in seen:
            if node == block:
                raise BadBlock("parent id", f"{parent!r} is {block!r} or inside it")
            seen.add(node)
            node = (await self.get(node)).parent


def _props(props: Mapping[str, Any], *, allow_none: bool = False) -> dict[str, Any]:
    if not isinstance(props, Mapping):
        raise BadBlock("properties", f"must be an object of name -> value, not {props!r}")
    out = {}
    for k, v in props.items():
        name = check_prop(k)
        if v is None and not allow_none:
            continue
        out[name] = check_value(v, f"property {name!r}")
    return out


def _computed(specs: Mapping[str, Any], block: str) -> dict[str, Compute]:
    if not isinstance(specs, Mapping):
        raise BadBlock("computed", f"must be an object of name -> spec, not {specs!r}")
    return {check_prop(k): check_compute(v, block, k) for k, v in specs.items()}


def _text(text: object) -> str:
    if not isinstance(text, str):
        raise BadBlock("text", f"must be a string (Markdown), not {type(text).__name__}")
    return text


def _insert(ids: list[str], block: str, index: int | None) -> list[str]:
    ids = [i for i in ids if i != block]
    if index is None or index >= len(ids):
        ids.append(block)
    else:
        ids.insert(max(0, index), block)
    return ids
