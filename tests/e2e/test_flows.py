"""Flows across three node processes: items through stages, rewired while in flight."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from motes.client import Mesh
from motes.errors import BadApp, RemoteError, UnknownFlow
from motes.node.localmesh import LocalMesh
from motes.testing import eventually

from ..conftest import APPS

PIPE = APPS / "pipe.py"


async def motes_cli(mesh: LocalMesh, *args: str) -> str:
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "motes.cli", "--home", str(mesh.home), "--url", mesh.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def item(i: int, log: Path, **extra: Any) -> dict[str, Any]:
    return {"id": i, "trail": [], "log": str(log), **extra}


async def test_items_go_through_every_stage(client: Mesh, tmp_path: Path) -> None:
    await client.deploy(PIPE)
    log = tmp_path / "arrived"
    ingest = client.calls.flow("pipe.ingest")
    assert await ingest.stages() == ["fetch", "parse", "store"]
    handles = [await ingest.submit(item(i, log)) for i in range(20)]
    results = [await h.result(timeout=30) for h in handles]
    assert [r["id"] for r in results] == list(range(20))
    assert all(r["trail"] == ["fetch", "parse", "store"] for r in results)
    assert sorted(int(x) for x in log.read_text().split()) == list(range(20))
    one = await client.calls.flow("pipe.short").submit(item(99, log))
    assert (await one.result(timeout=15))["trail"] == ["fetch"]


async def test_flow_item_idempotent_and_errors_typed(client: Mesh, tmp_path: Path) -> None:
    await client.deploy(PIPE)
    log = tmp_path / "arrived"
    ingest = client.calls.flow("pipe.ingest")
    a = await ingest.submit(item(1, log), key="item-1")
    b = await ingest.submit(item(1, log), key="item-1")
    assert await a.result(timeout=15) == await b.result(timeout=15)
    assert log.read_text().split() == ["1"]
    assert (await ingest.handle("item-1").result(timeout=5))["id"] == 1
    bad = await ingest.submit(item(2, log, bad=True))
    with pytest.raises(RemoteError, match="cannot parse item 2") as info:
        await bad.result(timeout=15)
    assert isinstance(info.value, ValueError)
    assert log.read_text().split() == ["1"]  # a failed stage ends the item


async def test_flow_requests_are_checked(client: Mesh) -> None:
    await client.deploy(PIPE)
    with pytest.raises(UnknownFlow, match=r"pipe\.nope") as info:
        await client.calls.flow("pipe.nope").submit(1)
    assert "pipe.ingest" in info.value.known
    with pytest.raises(UnknownFlow):
        await client.calls.set_flow("pipe.nope", ["fetch"])
    with pytest.raises(BadApp, match="not a mote of pipe"):
        await client.calls.set_flow("pipe.ingest", ["fetch", "weigh"])
    with pytest.raises(BadApp, match="actor"):
        await client.calls.set_flow("pipe.ingest", ["fetch", "Ledger"])
    with pytest.raises(BadApp, match="twice"):
        await client.calls.set_flow("pipe.ingest", ["fetch", "fetch"])
    with pytest.raises(BadApp, match="at least one"):
        await client.calls.set_flow("pipe.ingest", [])
    assert await client.calls.flow("pipe.ingest").stages() == ["fetch", "parse", "store"]


async def test_rewire_mid_stream_loses_no_item(client: Mesh, tmp_path: Path) -> None:
    """fetch parse store -> fetch parse enrich store while items are at every stage:
    each item arrives at the end exactly once, and the later ones are enriched."""
    await client.deploy(PIPE)
    log = tmp_path / "arrived"
    ingest = client.calls.flow("pipe.ingest")
    n = 80
    handles = [await ingest.submit(item(i, log, pause=0.03)) for i in range(n)]

    async def some_arrived() -> bool:
        return log.exists() and len(log.read_text().split()) >= 5

    await eventually(some_arrived, what="the first items at the end")
    await client.calls.set_flow("pipe.ingest", ["fetch", "parse", "enrich", "store"])
    arrived_before = len(log.read_text().split())
    assert arrived_before < n, "the flow finished before the rewiring: slow the stages"
    late = [await ingest.submit(item(n + i, log)) for i in range(10)]
    results = await asyncio.gather(*(h.result(timeout=60) for h in handles + late))
    ids = [int(x) for x in log.read_text().split()]
    assert sorted(ids) == list(range(n + 10))  # every item, exactly once
    assert [r["id"] for r in results] == list(range(n + 10))
    assert all(r["trail"][0] == "fetch" and r["trail"][-1] == "store" for r in results)
    trails = {tuple(r["trail"]) for r in results}
    assert trails <= {("fetch", "parse", "store"), ("fetch", "parse", "enrich", "store")}
    assert all(r["trail"] == ["fetch", "parse", "enrich", "store"] for r in results[n:])
    assert any("enrich" not in r["trail"] for r in results[:n])  # some were past parse


async def test_rewire_away_from_the_stage_an_item_is_in(
    client: Mesh, mesh: LocalMesh, tmp_path: Path
) -> None:
    """An item in a stage that the new wiring drops finishes the path it was on."""
    await client.deploy(PIPE)
    log = tmp_path / "arrived"
    await client.calls.set_flow("pipe.ingest", ["fetch", "enrich", "store"])
    ingest = client.calls.flow("pipe.ingest")
    slow = await ingest.submit(item(1, log, pause=1.5))  # sits in fetch, then in enrich

    async def in_enrich() -> bool:
        return any(i.mote == "enrich" and i.inflight > 0 for i in await client.ops.ps())

    await eventually(in_enrich, what="the item in enrich")
    out = await motes_cli(mesh, "flow", "set", "pipe.ingest", "fetch", "parse", "store")
    assert "pipe.ingest: fetch -> parse -> store" in out
    shown = await motes_cli(mesh, "flow", "show", "pipe")
    assert "fetch -> parse -> store" in shown and "pipe.short" in shown
    result = await slow.result(timeout=30)
    assert result["trail"] == ["fetch", "enrich", "store"]
    assert log.read_text().split() == ["1"]
