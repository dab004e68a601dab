"""``Mesh.events()``: what changes in the mesh, from the lattice's records and the
scheduler's decisions, in the order they happened."""

from __future__ import annotations

import asyncio

from motes.client import Mesh
from motes.client.events import AppDeployed, InstanceChanged, MeshEvent, NodeLost, Placed
from motes.node.localmesh import LocalMesh

from ..conftest import APPS


async def test_a_lost_node_then_the_placement_that_replaces_its_instances(
    mesh: LocalMesh, client: Mesh
) -> None:
    seen: list[MeshEvent] = []
    async with client.events() as events:
        await client.deploy(APPS / "second.py")  # hello: min=2, on two of the three nodes
        hosts = {i.node for i in await client.ops.ps() if i.mote == "hello"}
        names = {s.record.id: s.record.name for s in await client.ops.nodes()}
        victim = sorted(hosts)[0]
        await mesh.kill_node(names[victim])
        async with asyncio.timeout(20):
            async for event in events:
                seen.append(event)
                lost = [e for e in seen if isinstance(e, NodeLost) and e.node == victim]
                if lost and any(_replaces(e, victim, lost[0].cause) for e in seen):
                    break

    deployed = next(i for i, e in enumerate(seen) if isinstance(e, AppDeployed))
    lost_at = next(i for i, e in enumerate(seen) if isinstance(e, NodeLost) and e.node == victim)
    placed_at = next(
        i
        for i, e in enumerate(seen)
        if _replaces(e, victim, seen[lost_at].cause)  # type: ignore[union-attr]
    )
    assert deployed < lost_at < placed_at, [type(e).__name__ for e in seen]
    # The agents said how their instances came up, as they did.
    assert any(isinstance(e, InstanceChanged) and e.status.state == "ready" for e in seen)


def _replaces(event: MeshEvent, victim: str, cause: str) -> bool:
    """A placement, caused by the node's loss, that puts ``hello`` on another node."""
    return (
        isinstance(event, Placed)
        and event.cause == cause
        and event.node != victim
        and any(i.mote == "hello" for i in event.instances)
    )
