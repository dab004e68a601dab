"""Energy-aware placement on a real mesh: two nodes with different power models, a mote
that lands on the frugal one, and `motes why` showing each node's estimate."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from motes.cli import mesh_cmds
from motes.cli.render import text
from motes.client import Mesh
from motes.testing import FAST, eventually, local_mesh
from motes.wire.messages import Verdict, WhyReply

from ..conftest import APPS

DESKTOP, PI = "node-1", "node-2"
POWER = {DESKTOP: (3.75, 15.0), PI: (0.5, 1.5)}
"""Watts per core, idle and full load: a desktop's 30 W / 120 W over 8 cores, a
Raspberry Pi's 2 W / 6 W over 4."""


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Mesh]:
    async with local_mesh(tmp_path, nodes=2, power=POWER) as mesh:
        async with mesh.client(timing=FAST) as c:
            yield c


def _energy(why: WhyReply, name: str) -> Verdict:
    row = next(r for r in why.nodes if r.name == name)
    return next(v for v in row.verdicts if v.rule == "energy")


async def test_a_mote_lands_on_the_frugal_node_and_why_shows_each_estimate(
    client: Mesh,
) -> None:
    models = {n.record.name: n.record.power_model for n in await client.ops.nodes()}
    assert {name: (m.idle_w, m.max_w) for name, m in models.items() if m} == POWER
    assert all(m and m.method == "model:config:owner" for m in models.values())

    await client.deploy(APPS / "burn.py")
    # No calls measured yet: the power models alone say the Pi is ten times cheaper.
    why = await client.ops.why("burn.burn")
    assert {r.name: r.placed for r in why.nodes} == {DESKTOP: 0, PI: 1}
    assert _energy(why, DESKTOP).reason.startswith("model: 15 W/core at full load")
    assert _energy(why, DESKTOP).score < _energy(why, PI).score == 0

    for _ in range(3):
        await client.call("burn.burn", 0.05, b"")
    (inst,) = [i for i in await client.ops.ps() if i.mote == "burn"]
    names = {n.record.id: n.record.name for n in await client.ops.nodes()}
    assert names[inst.node] == PI
    assert inst.meter is not None and inst.meter.method == "model:config:owner"

    async def measured() -> WhyReply | None:
        why = await client.ops.why("burn.burn")
        return why if _energy(why, PI).reason.startswith("measured:") else None

    # The Pi's heartbeats carry what the calls used: measured there, modelled elsewhere.
    why = await eventually(measured, what="the Pi's measured joules per call")
    assert "J/call measured here" in _energy(why, PI).reason
    dear = _energy(why, DESKTOP)
    assert "ms CPU/call measured elsewhere x 15 W/core" in dear.reason
    assert dear.score < 0

    view = await mesh_cmds.why(client, argparse.Namespace(mote="burn.burn"))
    out = text(view)
    assert "energy" in out and "J/call measured here" in out and "measured elsewhere" in out
