"""End to end across three node processes on a real nats-server."""

from __future__ import annotations

import os
import signal

import pytest

import motes
from motes.client import Mesh
from motes.errors import (
    BadArgument,
    BadMessage,
    CallTimeout,
    EncodeError,
    NoInstance,
    PayloadTooLarge,
    RemoteError,
    UnknownMote,
)
from motes.node.localmesh import LocalMesh
from motes.testing import FAST, eventually
from motes.wire.codec import decode_reply, raise_for

from ..conftest import APPS

KIT = APPS / "kit.py"


async def ready(client: Mesh, mote: str, n: int = 1) -> list[motes.wire.messages.InstanceStatus]:
    async def probe() -> list[motes.wire.messages.InstanceStatus] | None:
        insts = [
            i for i in await client.ops.ps() if f"{i.app}.{i.mote}" == mote and i.state == "ready"
        ]
        return insts if len(insts) >= n else None

    return await eventually(probe, what=f"{n} ready instance(s) of {mote}")


async def test_deploy_call_and_spread(client: Mesh, mesh: LocalMesh) -> None:
    digest = await client.deploy(KIT)
    assert digest.startswith("sha256:")
    assert await client.call("kit.add", 2, 3) == 5
    assert await client.call("kit.add", a=2) == 2
    assert await client.call("kit.echo", {"a": [1, 2, b"x"]}) == {"a": [1, 2, b"x"]}
    # min=3 on a 3-node mesh: one instance on each node.
    echo = [i for i in await client.ops.ps() if i.mote == "echo"]
    assert len(echo) == 3
    assert len({i.node for i in echo}) == 3
    assert all(i.state == "ready" and i.digest == digest for i in echo)
    apps = await client.apps.list()
    assert [a.name for a in apps] == ["kit"] and apps[0].digest == digest


async def test_map_keeps_input_order(client: Mesh) -> None:
    await client.deploy(KIT)
    items = list(range(5000))
    results = [r async for r in client.map("kit.echo", items)]
    assert results == items

    async def spread() -> bool:  # instances report what they served every status_s or so
        served = {i.node for i in await client.ops.ps() if i.mote == "echo" and i.served}
        return len(served) >= 2

    await eventually(spread, what="the batches served on two nodes or more")


async def test_a_map_of_heavy_items_reaches_every_instance(client: Mesh) -> None:
    """60 items of 30 ms over three instances: batches sized from the measured item time
    (one item each here), not packed into one message that one instance serves alone."""
    await client.deploy(APPS / "naps.py")
    instances = await ready(client, "naps.nap", 3)
    results = [r async for r in client.map("naps.nap", range(60))]
    assert [x for x, _ in results] == list(range(60))
    by_pid: dict[int, int] = {}
    for _, pid in results:
        by_pid[pid] = by_pid.get(pid, 0) + 1
    assert set(by_pid) == {i.pid for i in instances}, by_pid
    assert min(by_pid.values()) >= 5, by_pid


async def test_map_item_errors(client: Mesh) -> None:
    await client.deploy(KIT)
    results = [r async for r in client.map("kit.add", [1, "x", 3], return_exceptions=True)]
    assert results[0] == 1 and results[2] == 3
    assert isinstance(results[1], BadArgument)
    with pytest.raises(BadArgument):
        async for _ in client.map("kit.add", [1, "x", 3]):
            pass


async def test_remote_exception_is_typed_with_traceback(client: Mesh) -> None:
    await client.deploy(KIT)
    with pytest.raises(RemoteError) as info:
        await client.call("kit.boom", "kaput")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.type_name == "ValueError" and err.detail == "kaput"
    assert "raise ValueError(message)" in err.traceback
    assert err.node  # which node raised it
    assert await client.call("kit.add", 1, 1) == 2  # the worker survived


async def test_bad_arguments_and_unencodable_values(client: Mesh) -> None:
    await client.deploy(KIT)
    with pytest.raises(BadArgument, match="a: Expected `int`, got `str`"):
        await client.call("kit.add", "one", 2)
    with pytest.raises(BadArgument, match="missing a required argument"):
        await client.call("kit.add")
    with pytest.raises(EncodeError, match="argument 0 of type object"):
        await client.call("kit.echo", object())
    with pytest.raises(PayloadTooLarge):
        await client.call("kit.echo", b"x" * (client.bus.max_payload + 1))


async def test_unknown_mote_and_app(client: Mesh) -> None:
    with pytest.raises(UnknownMote, match=r"nothere\.x"):
        await client.call("nothere.x")
    await client.deploy(KIT)
    with pytest.raises(UnknownMote, match=r"kit\.nope") as info:
        await client.call("kit.nope")
    assert "kit.echo" in info.value.known


async def test_no_instance_is_a_typed_error_not_a_hang(client: Mesh) -> None:
    await client.deploy(KIT)
    # Wants a label no node has: never placed, and `why` says which rule vetoed.
    with pytest.raises(NoInstance, match=r"kit.stranded .*labels: label mismatch: role=nowhere"):
        await client.call("kit.stranded", 1, timeout=10)
    why = await client.ops.why("kit.stranded")
    assert why.placed == 0 and len(why.nodes) == 3
    assert all(any(v.rule == "labels" and not v.ok for v in n.verdicts) for n in why.nodes)
    gpu = await client.ops.why("kit.render")
    assert all(any("lacks a gpu" in v.reason for v in n.verdicts) for n in gpu.nodes)


async def test_min_zero_starts_on_first_call(client: Mesh) -> None:
    await client.deploy(KIT)
    assert not [i for i in await client.ops.ps() if i.mote == "lazy"]
    assert await client.call("kit.lazy", 21) == 42  # held while an instance starts
    assert len([i for i in await client.ops.ps() if i.mote == "lazy"]) == 1


async def test_deadline(client: Mesh) -> None:
    await client.deploy(KIT)
    with pytest.raises(CallTimeout):
        await client.call("kit.slow", 5.0, timeout=0.3)
    assert await client.call("kit.slow", 0.01) == "done"


async def test_malformed_bytes_get_an_error_reply(client: Mesh) -> None:
    await client.deploy(KIT)
    for garbage in (b"", b"\xc1\xff\x00", b"\x93\xa2c9\x90\x80", b"not msgpack at all"):
        reply = await client.bus.request("motes.call.kit.add", garbage, timeout=5)
        with pytest.raises(BadMessage):
            raise_for(decode_reply(reply.data))  # type: ignore[arg-type]
    assert await client.call("kit.add", 40, 2) == 42  # nothing crashed


async def test_actor_state_across_calls_and_worker_restart(client: Mesh) -> None:
    await client.deploy(KIT)
    alice = client.actor("kit.Counter", "alice")
    bob = client.actor("kit.Counter", "bob")
    assert await alice.add(3) == 3
    assert await alice.add(4) == 7
    assert await bob.add(1) == 1
    pid = await alice.pid()
    os.kill(pid, signal.SIGKILL)  # the actor's worker dies; the agent restarts it

    async def restarted() -> int | None:
        insts = [i for i in await client.ops.ps() if i.mote == "Counter" and i.state == "ready"]
        return insts[0].pid if insts and insts[0].pid != pid and insts[0].restarts >= 1 else None

    new_pid = await eventually(restarted, what="a restarted Counter worker")
    assert await alice.add(1) == 8
    assert await bob.add(1) == 2
    assert await alice.pid() == new_pid
    with pytest.raises(AttributeError):
        await alice._private_thing()  # private names are not callable from outside
    with pytest.raises(BadArgument, match="no public method"):
        await client.actor("kit.Counter", "alice").missing()


async def test_logs_carry_worker_output(client: Mesh) -> None:
    await client.deploy(KIT)
    await client.call("kit.shout", "hello-logs")
    with pytest.raises(RemoteError):
        await client.call("kit.boom", "in-the-logs")

    async def seen() -> bool:
        text = [line.text async for b in client.ops.logs("kit") for line in b.lines]
        return any("shouting hello-logs" in t for t in text) and any(
            "in-the-logs" in t for t in text
        )

    await eventually(seen, what="worker output in `motes logs`")


async def test_leader_failover_then_deploy_places(client: Mesh, mesh: LocalMesh) -> None:
    await client.deploy(KIT)
    leader = next(s for s in await client.ops.nodes() if s.leader)
    await mesh.kill_node(leader.record.name)

    async def new_leader() -> str | None:
        live = [s for s in await client.ops.nodes() if s.state == "ready"]
        return next((s.record.id for s in live if s.leader), None)

    successor = await eventually(new_leader, what="a new scheduler leader")
    assert successor != leader.record.id
    digest = await client.deploy(APPS / "second.py")
    hello = [i for i in await client.ops.ps() if i.app == "second" and i.state == "ready"]
    assert len(hello) == 2 and all(i.digest == digest for i in hello)
    assert leader.record.id not in {i.node for i in hello}
    assert await client.call("second.hello", "mesh") == "hello mesh"
    # The dead node's echo instance came back on a live node.
    echo = await ready(client, "kit.echo", 3)
    assert leader.record.id not in {i.node for i in echo}


async def test_connect_fails_fast_without_a_mesh(tmp_path: object) -> None:
    with pytest.raises(motes.errors.MeshNotRunning):
        await motes.connect(home=str(tmp_path), timing=FAST)
    with pytest.raises(motes.errors.TransportError):
        await motes.connect("nats://127.0.0.1:1", timing=FAST)
