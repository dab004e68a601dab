"""Blocks on the in-memory lattice: records, order, versions, typed refusals, and computed
cells cached by their inputs and recomputed when one changes (a fake caller stands in
for the mesh; the e2e and browser tests use real motes)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from motes.blocks import Blocks, CellStatus
from motes.errors import BadBlock, Conflict, UnknownBlock
from motes.identity import KeyKind, SigningKey
from motes.identity.records import seal_app
from motes.testing import eventually
from motes.wire import resources
from motes.wire.bus import Bus
from motes.wire.memory import MemoryLattice
from motes.wire.messages import AppRecord, MoteSpec


@dataclass(frozen=True)
class _Served:
    value: Any = None
    error: Any = None
    node: str = "n-fake"
    instance: str = "i-1"
    wall_s: float = 0.002
    rtt_s: float = 0.003
    bytes_in: int = 10
    bytes_out: int = 5


class FakeMesh:
    """Calls ``shop.total`` (a*b) and ``shop.label``, counting calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, name: str, *args: Any) -> _Served:
        self.calls.append((name, args))
        if self.gate is not None:
            await self.gate.wait()
        if name == "shop.total":
            return _Served(value=args[0] * args[1])
        return _Served(value=f"<{args[0]}>")


DEPLOYER = SigningKey.generate(KeyKind.PERSON)


async def _deploy(bus: Bus, digest: str = "sha256:" + "a" * 64) -> None:
    record = AppRecord(name="shop", digest=digest, module="shop", motes=[MoteSpec(name="total")])
    await (await bus.kv(resources.APPS)).put("shop", seal_app(DEPLOYER, record))


@pytest.fixture
def bus() -> Bus:
    return MemoryLattice().connect("test")


async def test_children_are_ordered_and_edits_are_versioned(bus: Bus) -> None:
    blocks = Blocks(bus)
    page = await blocks.create({"title": "Groceries"}, id="groceries", text="# Shop")
    a = await blocks.create({"title": "apples"}, parent="groceries", id="a")
    await blocks.create({"title": "bread"}, parent="groceries", id="b")
    await blocks.create({"title": "cheese"}, parent="groceries", id="c", index=0)
    assert [b.id for b in await blocks.children("groceries")] == ["c", "a", "b"]
    assert [b.id for b in await blocks.roots()] == ["groceries"]

    edited = await blocks.update("a", props={"qty": 3, "title": None})
    assert edited.props == {"qty": 3}
    assert [h.props for h in await blocks.history("a")] == [{"title": "apples"}, {"qty": 3}]
    with pytest.raises(Conflict):  # an edit from a stale copy never overwrites
        await blocks.update("a", props={"qty": 4}, expect=a.revision)
    assert (await blocks.get("a")).props == {"qty": 3}

    await blocks.move("c", None)
    assert [b.id for b in await blocks.children("groceries")] == ["a", "b"]
    with pytest.raises(BadBlock):
        await blocks.move("groceries", "a")  # not under its own child
    await blocks.delete("groceries")
    with pytest.raises(UnknownBlock):
        await blocks.get("a")
    assert page.text == "# Shop"


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"id": "no spaces"}, "block id"),
        ({"props": {"a.b": 1}}, "property name"),
        ({"props": {"x": float("nan")}}, "property 'x'"),
        ({"props": {"x": object()}}, "property 'x'"),
        ({"text": "x" * 70_000}, "block"),
        ({"computed": {"t": {"mote": "nodot"}}}, "computed cell 't'"),
        ({"computed": {"t": {"mote": "a.b", "args": ["t"]}}}, "computed cell 't'"),
        ({"computed": {"t": {"mote": "a.b", "bogus": 1}}}, "computed cell 't'"),
        ({"parent": "nobody"}, None),
    ],
)
async def test_bad_blocks_are_refused_with_what_was_wrong(
    bus: Bus, kwargs: dict[str, Any], what: str | None
) -> None:
    blocks = Blocks(bus)
    if what is None:
        with pytest.raises(UnknownBlock):
            await blocks.create(**kwargs)
    else:
        with pytest.raises(BadBlock) as info:
            await blocks.create(**kwargs)
        assert info.value.what == what
    assert await blocks.all() == []  # nothing half-written


async def test_a_computed_cell_is_cached_by_its_inputs(bus: Bus) -> None:
    fake = FakeMesh()
    blocks = Blocks(bus, fake)
    await _deploy(bus)
    total = {"mote": "shop.total", "args": ["qty", "price"]}
    await blocks.create({"qty": 2, "price": 5}, id="row", computed={"total": total})
    cells = await blocks.cells.compute("row")
    cell = cells["total"]
    assert (cell.status, cell.value) == (CellStatus.FRESH, 10)
    assert cell.result is not None and cell.result.node == "n-fake"
    assert cell.result.wall_ms == 2.0

    await blocks.update("row", props={"note": "unrelated"})  # inputs unchanged: no call
    await blocks.update("row", props={"qty": 3})  # changed: computed on the write
    assert (await blocks.cells.state("row", "total")).value == 15
    await blocks.update("row", props={"qty": 2})  # back to known inputs: the cache answers
    assert (await blocks.cells.state("row", "total")).value == 10
    assert fake.calls == [("shop.total", (2, 5)), ("shop.total", (3, 5))]

    await _deploy(bus, "sha256:" + "b" * 64)  # a new version computes again
    blocks.cells.forget_digest("shop")
    assert (await blocks.cells.state("row", "total")).status == CellStatus.STALE


async def test_missing_inputs_wait_and_undeployed_motes_say_so(bus: Bus) -> None:
    blocks = Blocks(bus, FakeMesh())
    spec = {"mote": "shop.total", "args": ["qty", "prices.apple"]}
    await blocks.create({"qty": 2}, id="row", computed={"total": spec})
    state = await blocks.cells.state("row", "total")
    assert (state.status, state.reason) == (CellStatus.WAITING, "no block 'prices'")
    await blocks.create({"apple": 4}, id="prices")
    assert (await blocks.cells.state("row", "total")).status == CellStatus.UNDEPLOYED
    await _deploy(bus)
    blocks.cells.forget_digest("shop")
    assert (await blocks.cells.compute("row"))["total"].value == 8


async def test_the_recomputer_follows_edits_from_anyone_and_chains(bus: Bus) -> None:
    fake = FakeMesh()
    computing = Blocks(bus, fake)
    editor = Blocks(bus)  # another process: it cannot call motes, and does not need to
    await _deploy(bus)
    await editor.create({"apple": 4}, id="prices")
    await editor.create(
        {"qty": 2},
        id="row",
        computed={
            "total": {"mote": "shop.total", "args": ["qty", "prices.apple"]},
            "label": {"mote": "shop.label", "args": ["total"]},
        },
    )
    recomputer = computing.cells.recomputer()
    started = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(recomputer.run(started=started))
        await started.wait()

        async def value(prop: str) -> Any:
            return (await computing.cells.state("row", prop)).value

        assert await eventually(lambda: value("label"), what="label") == "<8>"
        await editor.update("prices", props={"apple": 5})  # another block's input
        await eventually(lambda: _equals(value("label"), "<10>"), what="chained recompute")
        assert await value("total") == 10
        task.cancel()
    assert [c[0] for c in fake.calls] == ["shop.total", "shop.label"] * 2


async def _equals(value: Any, want: Any) -> bool:
    return await value == want
