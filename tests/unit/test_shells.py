"""The I/O shells on the in-memory lattice: a worker serving, timing out and draining; the
scheduler service electing, placing and stepping down; an agent converging on what the
scheduler assigns it, and not reporting ready while its store service is not.

The same code the processes run, on ``wire.memory`` (kept honest by the bus contract
suite), so these run in seconds without servers or processes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sched_builders import node as node_record

from motes.app import build_bundle, load_app_file
from motes.app.bundle import extract_bundle
from motes.client import Mesh
from motes.config import Config, NodeConfig, Timing
from motes.errors import CallTimeout
from motes.identity import KeyKind, SigningKey
from motes.identity.records import open_assignment, seal_app, seal_node
from motes.node.agent import NodeAgent
from motes.runtime.worker import Worker, WorkerState
from motes.scheduler.service import SchedulerService
from motes.testing import eventually
from motes.testing.inmemory import TaskLauncher
from motes.wire import resources, subjects
from motes.wire.bus import Bus
from motes.wire.codec import decode_reply, encode, encode_request, raise_for
from motes.wire.memory import MemoryLattice
from motes.wire.messages import (
    ActorCall,
    AppRecord,
    Call,
    Heartbeat,
    InstanceSpec,
    Load,
    MoteSpec,
    NodeAssignment,
    NodeState,
    NodeStatus,
    Ok,
    WorkerAssign,
    WorkerStop,
)

APPS = Path(__file__).resolve().parents[1] / "e2e" / "apps"
TIMING = Timing(heartbeat_s=0.05, failure_timeout_s=0.5, lease_ttl_s=0.4, scatter_s=0.2)


async def call(bus: Bus, app: str, mote: str, *args: object, timeout_ms: int = 5000) -> object:
    data = encode_request(Call(list(args), {}, timeout_ms), bus.max_payload, f"{app}.{mote}")
    reply = await bus.request(subjects.call(app, mote), data, timeout=10)
    result = decode_reply(reply.data)
    assert isinstance(result, Ok) or not isinstance(result, list)
    return raise_for(result)  # type: ignore[arg-type]


# --- the worker ----------------------------------------------------------------------


@asynccontextmanager
async def worker_serving(
    tmp_path: Path, lattice: MemoryLattice, mote: str, kind: str = "function"
) -> AsyncIterator[tuple[Worker, asyncio.Task[None]]]:
    bundle = build_bundle(load_app_file(APPS / "kit.py"))
    bundle_dir = tmp_path / "bundle"
    extract_bundle(bundle.data, bundle.digest, bundle_dir)
    config = Config(node=NodeConfig(id="n1", home=str(tmp_path)), timing=TIMING)
    worker = Worker(lattice.connect("worker"), config, "w1", mote_config=False)
    client = lattice.connect("agent")
    async with asyncio.TaskGroup() as tg:
        started = asyncio.Event()
        run = tg.create_task(worker.run(started=started))
        await started.wait()
        spec = InstanceSpec(
            iid="i1",
            app="kit",
            mote=mote,
            digest=bundle.digest,
            module=bundle.module,
            kind=kind,  # type: ignore[arg-type]
            shards=list(range(64)) if kind == "actor" else [],
            nshards=64 if kind == "actor" else 0,
        )
        assign = WorkerAssign(spec=spec, bundle_dir=str(bundle_dir), node="n1")
        reply = await client.request(subjects.worker("n1", "w1"), encode(assign), timeout=10)
        assert decode_reply(reply.data) == Ok(None)
        assert worker.state is WorkerState.READY
        try:
            yield worker, run
        finally:
            worker.stop(grace=0)


async def test_a_worker_serves_times_out_and_drains(tmp_path: Path) -> None:
    lattice = MemoryLattice()
    client = lattice.connect("client")
    async with worker_serving(tmp_path, lattice, "slow") as (worker, run):
        assert await call(client, "kit", "slow", 0.01) == "done"
        # The call's deadline bounds the mote: an async one is cancelled at it.
        with pytest.raises(CallTimeout):
            await call(client, "kit", "slow", 5.0, timeout_ms=100)
        # Draining: the call in hand is finished and answered, then the worker stops.
        async with asyncio.TaskGroup() as tg:
            pending = tg.create_task(call(client, "kit", "slow", 0.3))

            async def in_flight() -> bool:
                return worker.meter.inflight == 1

            await eventually(in_flight, what="a call in flight")
            stop = encode(WorkerStop(grace_s=5.0))
            await client.request(subjects.worker("n1", "w1"), stop, timeout=5)
            assert await pending == "done"
        await asyncio.wait_for(run, 5)
        assert worker.state is WorkerState.STOPPED
        assert worker.meter.usage.served == 3 and worker.meter.usage.failed == 1


async def test_a_worker_keeps_actor_state_in_kv(tmp_path: Path) -> None:
    lattice = MemoryLattice()
    client = lattice.connect("client")
    async with worker_serving(tmp_path, lattice, "Counter", kind="actor"):
        from motes.runtime.actors import key_token, shard_of

        for n, total in ((3, 3), (4, 7)):
            data = encode(ActorCall("alice", "add", [n], {}, 5000))
            subject = subjects.actor("kit", "Counter", shard_of("alice", 64))
            reply = await client.request(subject, data, timeout=5)
            assert raise_for(decode_reply(reply.data)) == total  # type: ignore[arg-type]
        kv = await client.kv(resources.ACTORS)
        entry = await kv.get(subjects.actor_kv_key("kit", "Counter", key_token("alice")))
        assert entry is not None and b"total" in (entry.value or b"")


# --- the scheduler service ----------------------------------------------------------


async def test_the_scheduler_service_elects_places_and_steps_down() -> None:
    lattice = MemoryLattice()
    bus = lattice.connect("scheduler")
    key, deployer = SigningKey.generate(KeyKind.NODE), SigningKey.generate(KeyKind.PERSON)
    n1 = key.id
    service = SchedulerService(bus, n1, TIMING, key=key)
    # Records as the lattice holds them: each signed by its author.
    await (await bus.kv(resources.NODES)).put(n1, seal_node(key, node_record(n1)))
    record = AppRecord(name="a", digest="sha256:1", module="a", motes=[MoteSpec(name="f", min=1)])
    await (await bus.kv(resources.APPS)).put("a", seal_app(deployer, record))
    place = await bus.kv(resources.PLACE)

    async def heartbeats() -> None:
        for seq in range(1, 10_000):
            beat = Heartbeat(node=n1, seq=seq, load=Load())
            await bus.publish(subjects.heartbeat(n1), encode(beat))
            await asyncio.sleep(TIMING.heartbeat_s)

    async def assignment() -> NodeAssignment | None:
        entry = await place.get(n1)
        return open_assignment(entry.value)[0] if entry and entry.value else None

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(heartbeats()), tg.create_task(service.run())]

        async def leading() -> bool:
            return service.is_leader

        await eventually(leading, timeout=5, what="the scheduler elected")
        first = await eventually(assignment, timeout=5, what="a.f placed on n1")
        assert open_assignment((await place.get(n1)).value)[1] == n1  # type: ignore[union-attr,arg-type]
        assert [(i.app, i.mote) for i in first.instances] == [("a", "f")]
        epoch = first.epoch

        # Another leader writes n1's assignment behind our back: the next write of ours
        # finds a revision it did not expect, and the service steps down, then (the lease
        # lapsing) is elected again with a new epoch, from what the lattice holds.
        entry = await place.get(n1)
        assert entry is not None and entry.value is not None
        await place.put(n1, entry.value)
        newer = AppRecord(
            name="a", digest="sha256:2", module="a", motes=[MoteSpec(name="f", min=1)]
        )
        await (await bus.kv(resources.APPS)).put("a", seal_app(deployer, newer))

        async def re_elected() -> NodeAssignment | None:
            a = await assignment()
            return a if a is not None and a.epoch > epoch and service.is_leader else None

        again = await eventually(re_elected, timeout=10, what="a new epoch")
        # The new version starts beside the old one (which stays until it is ready).
        assert sorted(i.digest for i in again.instances) == ["sha256:1", "sha256:2"]
        for task in tasks:
            task.cancel()


# --- the agent -----------------------------------------------------------------------


@asynccontextmanager
async def agent_running(
    tmp_path: Path, *, store_fails: bool = False
) -> AsyncIterator[tuple[NodeAgent, Mesh, asyncio.Event]]:
    lattice = MemoryLattice()
    key = SigningKey.generate(KeyKind.NODE)
    home = tmp_path / "node"
    config = Config(
        home=str(tmp_path),
        timing=TIMING,
        node=NodeConfig(name="solo", home=str(home), id=key.id),
    )
    launcher = TaskLauncher(lattice, config, store_fails=store_fails)
    agent = NodeAgent(lattice.connect("agent"), config, launcher=launcher, key=key)
    mesh = Mesh(lattice.connect("client"), config)
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(agent.run(started=ready))
        try:
            yield agent, mesh, ready
        finally:
            agent.stop()
            await asyncio.wait_for(task, 10)
            await launcher.close()


async def test_an_agent_converges_on_its_assignment(tmp_path: Path) -> None:
    async with agent_running(tmp_path) as (agent, mesh, ready):
        await asyncio.wait_for(ready.wait(), 10)
        assert agent.state is NodeState.READY
        await mesh.deploy(APPS / "second.py", timeout=20)
        insts = [i for i in await mesh.ops.ps() if i.app == "second"]
        assert len(insts) == 2 and all(i.state == "ready" for i in insts)
        assert await mesh.call("second.hello", "memory") == "hello memory"

        # Drained: the scheduler assigns it nothing, and the agent stops what it ran.
        await mesh.ops.drain("solo")

        async def stopped() -> bool:
            return not agent.instances

        await eventually(stopped, timeout=10, what="the instances stopped")


async def test_a_node_whose_store_does_not_start_is_not_ready(tmp_path: Path) -> None:
    async with agent_running(tmp_path, store_fails=True) as (agent, mesh, ready):
        statuses: list[NodeStatus] = []

        async def answered() -> bool:
            statuses[:] = await mesh.ops.nodes()
            return bool(statuses)

        await eventually(answered, timeout=5, what="the node answering")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ready.wait(), 1.0)
        assert agent.state is NodeState.STARTING
        assert [s.state for s in statuses] == ["starting"]


async def test_a_store_that_dies_is_restarted_while_the_nodes_motes_keep_serving(
    tmp_path: Path,
) -> None:
    async with agent_running(tmp_path) as (agent, mesh, ready):
        await asyncio.wait_for(ready.wait(), 10)
        await mesh.deploy(APPS / "second.py", timeout=20)
        workers = {iid: i.worker for iid, i in agent.instances.items()}
        first = agent._store
        assert first is not None and first.alive
        first.signal(signal.SIGKILL)  # the store service's task ends, as in a crash
        assert await first.wait() == -signal.SIGKILL
        assert await mesh.call("second.hello", "memory") == "hello memory"

        async def restarted() -> bool:
            store = agent._store
            return store is not first and store is not None and await store.ready(0.1)

        await eventually(restarted, timeout=10, what="a new store service")
        assert agent.state is NodeState.READY
        assert {iid: i.worker for iid, i in agent.instances.items()} == workers
        assert all(w is not None and w.alive for w in workers.values())
