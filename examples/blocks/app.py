"""blocks: a shopping list whose line totals are computed by motes, anywhere on the mesh.

The collection ``groceries`` is a block whose children are its rows. Each row has plain
cells (``item``, ``qty``, ``price``, ``status``) and one computed cell, ``total``, bound
to the mote ``shop.total`` with ``qty`` and ``price`` as its arguments. Change a
quantity and the total is computed again, on whichever node the scheduler placed
``shop.total``; each result says where, when and what it cost, and the same inputs are
never computed twice. In ``motes dashboard``, Blocks → Groceries shows the same rows as a
table, as a kanban board grouped by ``status``, or as a wiki page.

    motes up --nodes 3 --detach
    python examples/blocks/app.py      # builds the list, edits a row, shows where totals ran
    motes dashboard                    # open the link it prints: Blocks → Groceries
"""

from __future__ import annotations

import asyncio

import motes
from motes.blocks import Blocks, Cell

app = motes.App("shop")


@app.mote(min=2)  # two instances, spread over two nodes: totals are computed on either
def total(qty: float, price: float) -> float:
    """One line of the list: quantity times unit price."""
    return round(qty * price, 2)


ROWS = [
    ("apples", 6, 0.45, "to buy"),
    ("bread", 1, 2.8, "to buy"),
    ("cheese", 0.3, 18.5, "in basket"),
    ("coffee", 1, 7.9, "paid"),
]

INTRO = """# Groceries

Each **total** is computed by the mote `shop.total` on some node of the mesh.
Edit a *qty* or a *price*: only that row's total is computed again.
"""


async def build(blocks: Blocks, collection: str = "groceries") -> str:
    """Create the collection and its rows (again, if it exists); return its id."""
    if await blocks.find(collection) is not None:
        await blocks.delete(collection)
    await blocks.create(
        {
            "title": "Groceries",
            "view": "table",
            "group_by": "status",
            "groups": ["to buy", "in basket", "paid"],
            "columns": ["item", "qty", "price", "total", "status"],
        },
        id=collection,
        text=INTRO,
    )
    for item, qty, price, status in ROWS:
        await blocks.create(
            {"title": item, "item": item, "qty": qty, "price": price, "status": status},
            parent=collection,
            id=f"{collection}-{item}",
            computed={"total": {"mote": "shop.total", "args": ["qty", "price"]}},
        )
    return collection


async def main() -> None:
    async with motes.connect() as mesh:
        await mesh.deploy(app)
        collection = await build(mesh.blocks)
        for row in await mesh.blocks.children(collection):
            cells = await mesh.blocks.cells.compute(row.id)
            _say(row.props["item"], cells["total"])
        print("\nbuy 12 apples instead of 6:")
        await mesh.blocks.update(f"{collection}-apples", props={"qty": 12})  # computes again
        _say("apples", await mesh.blocks.cells.state(f"{collection}-apples", "total"))
        print("\nnow run `motes dashboard` and open Blocks → Groceries")


def _say(item: str, cell: Cell) -> None:
    r = cell.result
    where = f"on {r.node_name} in {r.wall_ms:.2f} ms" if r is not None else cell.status
    print(f"  {item:8} total = {cell.value!s:7} ({where})")


if __name__ == "__main__":
    asyncio.run(main())
