"""Durable calls across three node processes on a real nats-server.

The test app's motes append a line to a file per execution, so the tests count
executions; results are counted in the lattice's KV bucket.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from motes.client import Mesh
from motes.errors import (
    BadArgument,
    CallTimeout,
    RemoteError,
    RequestError,
    UnknownMote,
)
from motes.node.localmesh import LocalMesh
from motes.runtime.durable import _MAX_ACK_PENDING
from motes.testing import eventually
from motes.wire import resources, subjects
from motes.wire.codec import encode
from motes.wire.messages import DurableCall, Ok

from ..conftest import APPS

JOBS = APPS / "jobs.py"


def lines(path: Path, prefix: str = "") -> list[str]:
    if not path.exists():
        return []
    return [ln for ln in path.read_text().splitlines() if ln.startswith(prefix)]


async def queue_empty(client: Mesh) -> bool:
    return await client.calls.queue() == []


async def result_keys(client: Mesh, mote: str) -> list[str]:
    kv = await client.bus.kv(resources.RESULTS)
    return [k for k in await kv.items() if k.startswith(f"c.jobs.{mote}.")]


async def test_submit_and_result(client: Mesh, tmp_path: Path) -> None:
    await client.deploy(JOBS)
    log = tmp_path / "log"
    handle = await client.submit("jobs.square", str(log), 7)
    assert await handle.result(timeout=15) == 49
    assert await handle.done()
    # The result stays: a handle made later from the id reads it again, without a rerun.
    again = client.calls.handle("jobs.square", handle.id)
    assert await again.result(timeout=5) == 49
    assert lines(log) == ["square 7"]


async def test_same_key_runs_once_and_answers_alike(client: Mesh, tmp_path: Path) -> None:
    await client.deploy(JOBS)
    log = tmp_path / "log"
    first = await client.submit("jobs.square", str(log), 8, key="order-42")
    second = await client.submit("jobs.square", str(log), 8, key="order-42")
    assert first.id == second.id == "order-42"
    assert await first.result(timeout=15) == 64
    assert await second.result(timeout=15) == 64
    # Submitted again after it completed: answered from the stored result.
    third = await client.submit("jobs.square", str(log), 8, key="order-42")
    assert await third.result(timeout=15) == 64
    # A key that is not a plain token is stored under an encoded one, still once.
    odd = [await client.submit("jobs.square", str(log), 3, key="a b/ü.") for _ in range(2)]
    assert [await h.result(timeout=15) for h in odd] == [9, 9]
    assert sorted(lines(log)) == ["square 3", "square 8"]
    assert len(await result_keys(client, "square")) == 2


async def test_durable_map_keeps_input_order(client: Mesh) -> None:
    await client.deploy(JOBS)
    items = list(range(300))
    results = [r async for r in client.map("jobs.lazy", items, durable=True)]
    assert results == [x + 1 for x in items]
    assert [r async for r in client.map("jobs.lazy", [], durable=True)] == []
    mixed = [
        r async for r in client.map("jobs.lazy", [1, "x", 3], durable=True, return_exceptions=True)
    ]
    assert mixed[0] == 2 and mixed[2] == 4 and isinstance(mixed[1], BadArgument)


async def test_error_result_is_typed_and_final(client: Mesh) -> None:
    await client.deploy(JOBS)
    handle = await client.submit("jobs.fail", "kaput", key="doomed")
    with pytest.raises(RemoteError) as info:
        await handle.result(timeout=15)
    assert isinstance(info.value, ValueError)
    assert info.value.detail == "kaput" and "raise ValueError(message)" in info.value.traceback
    # A raised error completes the call: it is stored and acked, not redelivered.
    await eventually(lambda: queue_empty(client), what="the failed call acked")
    with pytest.raises(ValueError):
        await client.calls.handle("jobs.fail", "doomed").result(timeout=5)


async def test_requests_checked_before_queueing(client: Mesh) -> None:
    with pytest.raises(UnknownMote):
        await client.submit("jobs.square", "x", 1)
    await client.deploy(JOBS)
    with pytest.raises(UnknownMote, match=r"jobs\.nope"):
        await client.submit("jobs.nope", 1)
    with pytest.raises(RequestError, match="non-empty string"):
        await client.submit("jobs.lazy", 1, key="")
    with pytest.raises(RequestError, match="at most 256"):
        await client.submit("jobs.lazy", 1, key="k" * 257)
    with pytest.raises(RequestError, match="actor"):
        await client.submit("jobs.Tally", 1)
    with pytest.raises(CallTimeout):
        await (await client.submit("jobs.stranded", 1)).result(timeout=0.2)


async def test_min_zero_mote_starts_on_submit(client: Mesh) -> None:
    await client.deploy(JOBS)
    assert not [i for i in await client.ops.ps() if i.mote == "lazy"]
    handle = await client.submit("jobs.lazy", 41)
    assert await handle.result(timeout=20) == 42
    assert [i for i in await client.ops.ps() if i.mote == "lazy"]


async def test_queue_shows_calls_no_instance_can_take(client: Mesh, mesh: LocalMesh) -> None:
    await client.deploy(JOBS)
    handles = [await client.submit("jobs.stranded", i) for i in range(3)]
    stats = await client.calls.queue()
    assert [(q.mote, q.depth, q.running) for q in stats] == [("jobs.stranded", 3, 0)]
    assert stats[0].oldest_s >= 0
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "motes.cli", "--home", str(mesh.home), "--url", mesh.url, "queue"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    row = next(ln for ln in out.stdout.splitlines() if ln.startswith("jobs.stranded"))
    assert row.split()[1:3] == ["3", "0"]
    assert not any([await h.done() for h in handles])


async def test_malformed_message_is_dropped_not_fatal(client: Mesh, tmp_path: Path) -> None:
    await client.deploy(JOBS)
    await client.bus.ensure_stream(resources.CALLS)
    hostile = [
        b"",
        b"\xc1\xff",
        b"\x93\xa2d1\x90\x80",
        b"not msgpack",
        encode(DurableCall("x" * 5000, [], {}, 1000)),  # an id too long to be a key
        encode(DurableCall("ok", ["p", 1], {}, 1000, flow="no.such>flow")),  # not a name
    ]
    for garbage in hostile:
        await client.bus.publish_durable(subjects.durable("jobs", "square"), garbage)

    await eventually(lambda: queue_empty(client), what="garbage terminated, not redelivered")
    assert await (await client.submit("jobs.square", str(tmp_path / "log"), 5)).result(15) == 25


async def test_slow_sync_call_is_not_redelivered(client: Mesh, tmp_path: Path) -> None:
    """A sync mote running past the ack wait stays in progress: one execution only."""
    await client.deploy(JOBS)
    log = tmp_path / "log"
    handle = await client.submit("jobs.crunch", str(log), 1, 6.0)
    assert await handle.result(timeout=30) == 1
    assert lines(log) == ["crunch 1"]


async def test_killed_worker_call_is_redelivered_once(client: Mesh, tmp_path: Path) -> None:
    await client.deploy(JOBS)
    log = tmp_path / "log"
    handle = await client.submit("jobs.work", str(log), 1, 2.0, key="survivor")

    async def started() -> int | None:
        found = lines(log, "start 1 ")
        return int(found[0].split()[2]) if found else None

    pid = await eventually(started, what="the call to start")
    assert pid in {i.pid for i in await client.ops.ps() if i.mote == "work"}
    os.kill(pid, signal.SIGKILL)
    x, served_by = await handle.result(timeout=30)
    assert x == 1 and served_by != pid
    assert len(lines(log, "start 1 ")) == 2 and lines(log, "end 1 ") == [f"end 1 {served_by}"]
    assert await result_keys(client, "work") == ["c.jobs.work.survivor"]


async def test_node_killed_under_load_every_call_completes_once(
    client: Mesh, mesh: LocalMesh, tmp_path: Path
) -> None:
    """SIGKILL a whole node (agent and workers) while it holds calls: every call completes
    with exactly one stored result, and each result is the one every reader sees."""
    await client.deploy(JOBS)
    log = tmp_path / "log"
    n = 120
    handles = [
        await client.submit("jobs.work", str(log), i, 0.3, key=f"load-{i}") for i in range(n)
    ]

    async def busy_node() -> str | None:
        ends = lines(log, "end ")
        starts = {int(s.split()[2]) for s in lines(log, "start ")}
        if len(ends) < 10:
            return None
        names = {s.record.id: s.record.name for s in await client.ops.nodes()}
        for inst in await client.ops.ps():
            if inst.mote == "work" and inst.pid in starts and inst.inflight > 0:
                return names[inst.node]
        return None

    victim = await eventually(busy_node, what="a node holding calls")
    await mesh.kill_node(victim)  # SIGKILL to the node and its workers: a dead machine
    results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert [r[0] for r in results] == list(range(n))
    keys = await result_keys(client, "work")
    assert sorted(keys) == sorted(f"c.jobs.work.load-{i}" for i in range(n))
    # Every reader sees the one stored result.
    again = [await client.calls.handle("jobs.work", f"load-{i}").result(5) for i in range(n)]
    assert again == results
    ended = {int(e.split()[1]) for e in lines(log, "end ")}
    assert ended == set(range(n))
    await eventually(lambda: queue_empty(client), what="every call acked")


@pytest.mark.long
async def test_soak_calls_and_flow_items_survive_repeated_node_kills(
    client: Mesh, mesh: LocalMesh, tmp_path: Path
) -> None:
    """Durable calls and flow items under load while nodes die (SIGKILL, whole process
    group) one after another: every call and every item ends with exactly one result."""
    await client.deploy(JOBS)
    await client.deploy(APPS / "pipe.py")
    log, arrived = tmp_path / "log", tmp_path / "arrived"
    n, m = 600, 200
    calls = [await client.submit("jobs.work", str(log), i, 0.1, key=f"soak-{i}") for i in range(n)]
    ingest = client.calls.flow("pipe.ingest")
    items = [
        await ingest.submit({"id": i, "trail": [], "log": str(arrived), "pause": 0.01})
        for i in range(m)
    ]
    for victim, after in (("node-1", n // 4), ("node-2", n // 2)):

        async def progressed(after: int = after) -> bool:
            return len(lines(log, "end ")) >= after

        await eventually(progressed, timeout=60, what=f"{after} calls done")
        await mesh.kill_node(victim)
        await mesh.restart_node(victim)
    results = await asyncio.gather(*(h.result(timeout=120) for h in calls))
    assert [r[0] for r in results] == list(range(n))
    assert len(await result_keys(client, "work")) == n
    flowed = await asyncio.gather(*(h.result(timeout=120) for h in items))
    assert sorted(r["id"] for r in flowed) == list(range(m))
    assert all(r["trail"] == ["fetch", "parse", "store"] for r in flowed)
    assert {int(x) for x in arrived.read_text().split()} == set(range(m))
    await eventually(lambda: queue_empty(client), what="every call acked")


async def test_a_redelivered_call_is_answered_from_its_stored_result(
    client: Mesh, tmp_path: Path
) -> None:
    """A worker stored the result and died before its ack: the redelivery finds the
    result and acks it, the mote does not run again. (A first delivery is not looked up:
    a late repeat runs, and the first stored result still stands.)"""
    await client.deploy(JOBS)
    log = tmp_path / "log"
    kv = await client.bus.kv(resources.RESULTS)
    subject = subjects.durable("jobs", "crunch")
    pull = await client.bus.pull(  # as the worker will (crunch has no instance yet)
        resources.CALLS,
        durable=subjects.durable_consumer("jobs", "crunch"),
        subject=subject,
        ack_wait=client.config.timing.ack_wait_s,
        max_ack_pending=_MAX_ACK_PENDING,
    )
    call = DurableCall("stored-first", [str(log), 7, 0.0], {}, 30_000)
    await client.bus.publish_durable(subject, encode(call), msg_id="m-stored-first")
    [taken] = await pull.fetch(1, timeout=10)
    assert taken.deliveries == 1
    await kv.create(subjects.call_result_key("jobs", "crunch", "stored-first"), encode(Ok(70)))
    await taken.nak()  # as if its worker died after storing: delivered again
    await pull.close()

    other = await client.submit("jobs.crunch", str(log), 8, 0.0)  # starts an instance
    assert await other.result(timeout=60) == 8
    await eventually(lambda: queue_empty(client), timeout=60, what="the redelivery acked")
    assert lines(log) == ["crunch 8"]  # the stored call did not run again
    handle = client.calls.handle("jobs.crunch", "stored-first")
    assert await handle.result(timeout=5) == 70

    # A late repeat (a new message for a call id that has a result) runs, answered alike.
    late = DurableCall("stored-first", [str(log), 9, 0.0], {}, 30_000)
    await client.bus.publish_durable(subject, encode(late), msg_id="m-late-repeat")

    async def repeat_ran() -> list[str]:
        return lines(log, "crunch 9")

    await eventually(repeat_ran, timeout=60, what="the late repeat run")
    await eventually(lambda: queue_empty(client), timeout=60, what="the late repeat acked")
    assert await handle.result(timeout=5) == 70


async def test_an_async_motes_durable_calls_overlap(client: Mesh, tmp_path: Path) -> None:
    await client.deploy(JOBS)
    log = tmp_path / "log"
    handles = [await client.submit("jobs.work", str(log), i, 1.0) for i in range(6)]
    assert [(await h.result(timeout=30))[0] for h in handles] == list(range(6))
    # One instance started a second call before it finished its first.
    order: dict[str, list[str]] = {}
    for line in lines(log):
        kind, _, pid = line.split()
        order.setdefault(pid, []).append(kind)
    assert any(kinds[:2] == ["start", "start"] for kinds in order.values()), order


async def test_a_durable_backlog_scales_the_mote_out(client: Mesh) -> None:
    """Calls waiting in the stream count as the mote's queue: one busy sync instance
    with a backlog behind it is scaled out (max=3)."""
    await client.deploy(APPS / "backlog.py")
    handles = [await client.submit("backlog.slow", i) for i in range(80)]

    async def scaled_out() -> bool:
        ready = [i for i in await client.ops.ps() if i.mote == "slow" and i.state == "ready"]
        return len(ready) >= 2

    await eventually(scaled_out, timeout=60, what="a second instance for the backlog")
    assert [await h.result(timeout=60) for h in handles] == list(range(80))
