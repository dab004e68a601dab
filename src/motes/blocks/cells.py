"""Computed cells: a property of a block bound to a mote, with other cells as arguments.

A cell's inputs are the values its arguments name (``"qty"`` in the same block,
``"prices.apple"`` in another; an argument may itself be a computed cell). Its *key* is a
hash of the mote, the app version deployed now and those values: a result is kept in KV
``motes_cells`` under that key, so a cell is computed once per distinct input (and app
version) and is *fresh* while a result for its key exists. When an input changes the key
changes, and the cell is computed again, by a call to the mote on whichever node the
scheduler placed it: the result records that node, when, and what it cost.

``Cells.compute`` computes a block's stale cells now; a ``Recomputer`` (``run()``)
follows every block and app and recomputes each ``auto`` cell whose inputs change,
wherever the change came from. The dashboard runs one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from ..errors import BadBlock, BadMessage, IntegrityError, MotesError, RetryableError
from ..identity.records import open_app, open_node
from ..ids import MoteRef
from ..wire import resources, subjects
from ..wire.blocks import CellResult, Compute
from ..wire.bus import Bus
from ..wire.codec import decode, encode
from ._check import parse_ref
from ._model import Block, block_of

if TYPE_CHECKING:
    from .client import Blocks

__all__ = ["Caller", "Cell", "CellStatus", "Cells", "Recomputer", "Served"]

log = logging.getLogger(__name__)

_MAX_CHAIN = 8
"""How many computed cells may feed one another in a chain."""
_MIRROR_MAX = 10_000
"""Results a Recomputer keeps in memory at most."""
_key_encoder = msgspec.msgpack.Encoder(order="sorted")


class Served(Protocol):
    """What a traced call returns (``mesh.calls.call_traced``)."""

    @property
    def value(self) -> Any: ...
    @property
    def error(self) -> MotesError | None: ...
    @property
    def node(self) -> str: ...
    @property
    def instance(self) -> str: ...
    @property
    def wall_s(self) -> float: ...
    @property
    def rtt_s(self) -> float: ...
    @property
    def bytes_in(self) -> int: ...
    @property
    def bytes_out(self) -> int: ...


Caller = Callable[..., Awaitable[Served]]
"""``await caller("app.fn", *args)``: call a mote, saying who served it."""


class CellStatus:
    FRESH = "fresh"
    """A result for the current inputs exists."""
    STALE = "stale"
    """Inputs changed (or never computed): a result is due."""
    WAITING = "waiting"
    """An input is missing, or is itself a cell not computed yet."""
    UNDEPLOYED = "undeployed"
    """No deployed app declares the mote."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """A computed cell as it stands: its spec, its inputs now, its result for them."""

    block: str
    prop: str
    spec: Compute
    status: str
    args: list[Any] = field(default_factory=list)
    key: str = ""
    result: CellResult | None = None
    reason: str = ""
    """Why it is waiting or undeployed, or the last transient failure computing it."""

    @property
    def value(self) -> Any:
        return self.result.value if self.result is not None else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prop": self.prop,
            "mote": self.spec.mote,
            "args": self.spec.args,
            "mode": self.spec.mode,
            "status": self.status,
            "inputs": self.args,
            "key": self.key,
            "reason": self.reason,
            "result": None,
        }
        if self.result is not None:
            result = msgspec.to_builtins(self.result)
            result.pop("type", None)
            out["result"] = result
        return out


Lookup = Callable[[str], Awaitable[Block | None]]


class Cells:
    """``mesh.blocks.cells``: the state of computed cells, and computing them."""

    def __init__(self, bus: Bus, blocks: Blocks, caller: Caller | None) -> None:
        self._bus = bus
        self._blocks = blocks
        self._caller = caller
        self._digests: dict[str, tuple[float, str]] = {}
        self._names: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.mirror: dict[str, CellResult] | None = None
        """Results by key, when a Recomputer keeps them (then reads skip the KV)."""

    @property
    def can_compute(self) -> bool:
        return self._caller is not None

    async def state(self, block: str, prop: str) -> Cell:
        b = await self._blocks.get(block)
        if prop not in b.computed:
            raise BadBlock(f"property {prop!r} of {block}", "is not a computed cell")
        return await self.evaluate(b, prop, self._blocks.find)

    async def states(self, block: Block, lookup: Lookup | None = None) -> dict[str, Cell]:
        """Every computed cell of ``block``, by property."""
        find = lookup or self._blocks.find
        return {p: await self.evaluate(block, p, find) for p in block.computed}

    async def compute(
        self, block: str, prop: str | None = None, *, force: bool = False
    ) -> dict[str, Cell]:
        """Compute the block's stale ``auto`` cells (or just ``prop``, whatever its mode)
        now and return every computed cell's state. ``force``: compute even if fresh."""
        if self._caller is None:
            raise BadBlock("computing cells", "this connection has no way to call motes")
        b = await self._blocks.get(block)
        if prop is not None and prop not in b.computed:
            raise BadBlock(f"property {prop!r} of {block}", "is not a computed cell")
        autos = [p for p, c in b.computed.items() if c.mode == "auto"]
        props = [prop] if prop is not None else autos
        for p in props:
            cell = await self.evaluate(b, p, self._blocks.find)
            if cell.status == CellStatus.STALE or (force and cell.key):
                await self.run(cell)
        return await self.states(b)

    # --- evaluating ------------------------------------------------------------------

    async def evaluate(self, block: Block, prop: str, lookup: Lookup, depth: int = 0) -> Cell:
        """The cell's inputs now, its key, and whether a result for them exists."""
        spec = block.computed[prop]
        args: list[Any] = []
        for ref in spec.args:
            bid, name = parse_ref(ref, block.id)
            source = block if bid == block.id else await lookup(bid)
            if source is None:
                return _waiting(block, prop, spec, f"no block {bid!r}")
            if name in source.props:
                args.append(source.props[name])
            elif name in source.computed and depth < _MAX_CHAIN:
                upstream = await self.evaluate(source, name, lookup, depth + 1)
                if upstream.status != CellStatus.FRESH or upstream.result is None:
                    return _waiting(block, prop, spec, f"{ref} is not computed yet")
                if upstream.result.error:
                    return _waiting(block, prop, spec, f"{ref} failed: {upstream.result.error}")
                args.append(upstream.result.value)
            else:
                return _waiting(block, prop, spec, f"no property {ref!r}")
        digest = await self.digest(MoteRef.parse(spec.mote).app)
        if not digest:
            return Cell(
                block=block.id,
                prop=prop,
                spec=spec,
                status=CellStatus.UNDEPLOYED,
                args=args,
                reason=f"no deployed app declares {spec.mote}",
            )
        key = cell_key(spec.mote, digest, args)
        result = await self.result(key)
        status = CellStatus.FRESH if result is not None else CellStatus.STALE
        return Cell(
            block=block.id, prop=prop, spec=spec, status=status, args=args, key=key, result=result
        )

    async def result(self, key: str) -> CellResult | None:
        if self.mirror is not None and key in self.mirror:
            return self.mirror[key]
        entry = await (await self._bus.kv(resources.CELLS)).get(subjects.cell_key(key))
        if entry is None or not entry.value:
            return None
        try:
            result = decode(entry.value, CellResult)
        except BadMessage:
            return None
        self._remember(key, result)
        return result

    def _remember(self, key: str, result: CellResult) -> None:
        if self.mirror is None:
            return
        if len(self.mirror) >= _MIRROR_MAX:
            self.mirror.clear()  # a cache, not the record: the KV answers the next reads
        self.mirror[key] = result

    async def digest(self, app: str, max_age: float = 1.0) -> str:
        """The app's deployed version ("" if none), read at most every ``max_age`` s."""
        now = time.monotonic()
        cached = self._digests.get(app)
        if cached is not None and now - cached[0] < max_age:
            return cached[1]
        entry = await (await self._bus.kv(resources.APPS)).get(app)
        digest = ""
        if entry is not None and entry.value:
            try:
                digest = open_app(entry.value)[0].digest
            except IntegrityError:
                digest = ""
        self._digests[app] = (now, digest)
        return digest

    def forget_digest(self, app: str) -> None:
        self._digests.pop(app, None)

    # --- computing -------------------------------------------------------------------

    async def run(self, cell: Cell) -> CellResult:
        """Call the cell's mote with its inputs and keep the result under its key.

        Concurrent runs of one key in this process make one call. A mote that raises
        gives a result with ``error`` (kept like a value: the same inputs fail the same
        way); a failure on the way (no instance, a timeout) is raised, nothing kept."""
        assert self._caller is not None and cell.key
        lock = self._locks.setdefault(cell.key, asyncio.Lock())
        try:
            async with lock:
                done = await self.result(cell.key)
                if done is not None and cell.status == CellStatus.STALE:
                    return done
                return await self._call(cell)
        finally:
            if not lock.locked():
                self._locks.pop(cell.key, None)

    async def _call(self, cell: Cell) -> CellResult:
        assert self._caller is not None
        served = await self._caller(cell.spec.mote, *cell.args)
        error = served.error
        result = CellResult(
            key=cell.key,
            mote=cell.spec.mote,
            digest=await self.digest(MoteRef.parse(cell.spec.mote).app),
            args=cell.args,
            value=None if error is not None else _plain(served.value),
            error=f"{_type_name(error)}: {error}" if error is not None else "",
            node=served.node,
            node_name=await self.node_name(served.node),
            instance=served.instance,
            computed_at=time.time(),
            wall_ms=round(served.wall_s * 1000, 3),
            rtt_ms=round(served.rtt_s * 1000, 3),
            bytes_in=served.bytes_in,
            bytes_out=served.bytes_out,
        )
        kv = await self._bus.kv(resources.CELLS)
        await kv.put(subjects.cell_key(cell.key), encode(result))
        self._remember(cell.key, result)
        return result

    async def node_name(self, node: str) -> str:
        if not node:
            return ""
        if node not in self._names:
            entry = await (await self._bus.kv(resources.NODES)).get(node)
            try:
                name = open_node(entry.value).name if entry and entry.value else node
            except IntegrityError:
                name = node
            self._names[node] = name
        return self._names[node]

    def recomputer(self, *, concurrency: int = 8) -> Recomputer:
        """A service recomputing every ``auto`` cell whose inputs change: ``await r.run()``."""
        return Recomputer(self, self._bus, concurrency=concurrency)


def cell_key(mote: str, digest: str, args: list[Any]) -> str:
    """The cache key of one computation: mote, app version and argument values."""
    h = hashlib.blake2b(digest_size=16, person=b"motes-cell-v1")
    h.update(_key_encoder.encode([mote, digest, args]))
    return h.hexdigest()


def _waiting(block: Block, prop: str, spec: Compute, reason: str) -> Cell:
    return Cell(block=block.id, prop=prop, spec=spec, status=CellStatus.WAITING, reason=reason)


def _plain(value: Any) -> Any:
    """A mote's result as JSON-like values (tuples, Structs and dataclasses flattened)."""
    try:
        return msgspec.to_builtins(value)
    except TypeError:
        return repr(value)


def _type_name(error: MotesError) -> str:
    remote = getattr(error, "type_name", "")
    return str(remote) if remote else type(error).__name__


class Recomputer:
    """Follows every block and app; recomputes each ``auto`` cell whose inputs change.

    ``changed`` is set whenever a cell's result or status changes (whoever shows cells
    clears it and looks again).
    """

    def __init__(self, cells: Cells, bus: Bus, *, concurrency: int = 8) -> None:
        self.cells = cells
        self._bus = bus
        self._slots = asyncio.Semaphore(concurrency)
        self.blocks: dict[str, Block] = {}
        self._readers: dict[str, set[tuple[str, str]]] = {}
        """Block id -> the cells (block, prop) that take an argument from it."""
        self._queued: dict[tuple[str, str], bool] = {}
        """Cells being computed -> whether their inputs changed again meanwhile."""
        self.problems: dict[tuple[str, str], str] = {}
        """The last transient failure per cell, until it is computed."""
        self.changed = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None

    async def run(self, *, started: asyncio.Event | None = None) -> None:
        self.cells.mirror = {}
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._follow_apps())
                kv = await self._bus.kv(resources.BLOCKS)
                async with await kv.watch() as watch:
                    if started is not None:
                        started.set()
                    async for entry in watch:
                        block = block_of(entry) if entry.value else None
                        self._index(entry.key, block)
                        if block is not None:
                            self._affected(entry.key)
                        self.changed.set()
        finally:
            self.cells.mirror = None

    async def find(self, block: str) -> Block | None:
        return self.blocks.get(block)

    def problem(self, block: str, prop: str) -> str:
        return self.problems.get((block, prop), "")

    def _index(self, bid: str, block: Block | None) -> None:
        old = self.blocks.pop(bid, None)
        if old is not None:
            for prop, spec in old.computed.items():
                for ref in spec.args:
                    self._readers.get(parse_ref(ref, bid)[0], set()).discard((bid, prop))
        if block is None:
            return
        self.blocks[bid] = block
        for prop, spec in block.computed.items():
            for ref in spec.args:
                self._readers.setdefault(parse_ref(ref, bid)[0], set()).add((bid, prop))

    def _affected(self, bid: str) -> None:
        """Schedule every cell that may have new inputs after ``bid`` changed."""
        block = self.blocks.get(bid)
        cells = set(self._readers.get(bid, set()))
        if block is not None:
            cells |= {(bid, p) for p in block.computed}
        for cell in sorted(cells):
            self._schedule(cell)

    def _schedule(self, cell: tuple[str, str]) -> None:
        if cell in self._queued:
            self._queued[cell] = True  # running: it looks again when done
            return
        assert self._tg is not None
        self._queued[cell] = False
        self._tg.create_task(self._recompute(cell))

    async def _recompute(self, cell: tuple[str, str]) -> None:
        bid, prop = cell
        delay = 0.5
        try:
            async with self._slots:
                while True:
                    self._queued[cell] = False
                    block = self.blocks.get(bid)
                    if block is None or prop not in block.computed:
                        return
                    try:
                        state = await self.cells.evaluate(block, prop, self.find)
                        if state.status == CellStatus.STALE and state.spec.mode == "auto":
                            await self.cells.run(state)
                            self.problems.pop(cell, None)
                            self.changed.set()
                            for reader in sorted(self._readers.get(bid, set())):
                                if reader != cell:
                                    self._schedule(reader)  # chained cells read this one
                    except RetryableError as exc:
                        self.problems[cell] = f"retrying: {exc}"
                        self.changed.set()
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 30.0)
                        continue
                    except MotesError as exc:
                        self.problems[cell] = str(exc)
                        self.changed.set()
                    if not self._queued.get(cell):
                        return
        finally:
            self._queued.pop(cell, None)

    async def _follow_apps(self) -> None:
        """A new app version computes its cells again (the key includes the version)."""
        kv = await self._bus.kv(resources.APPS)
        async with await kv.watch(updates_only=True) as watch:
            async for entry in watch:
                self.cells.forget_digest(entry.key)
                prefix = f"{entry.key}."
                for bid, block in list(self.blocks.items()):
                    for prop, spec in block.computed.items():
                        if spec.mote.startswith(prefix):
                            self._schedule((bid, prop))
                self.changed.set()
