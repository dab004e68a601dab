"""The Bus contract: every test runs against a real nats-server and the in-memory lattice.

If the in-memory bus passes something the real one does not (or the other way round),
the fake has drifted; these tests are what keep the shells' unit tests honest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from motes.config import LatticeConfig
from motes.errors import Conflict, NoReply, NoResponders, PayloadTooLarge, TransportError
from motes.lattice import NatsServer, ServerConfig
from motes.testing import eventually
from motes.wire.bus import Bus, ConnState, Message, Op
from motes.wire.memory import MemoryLattice, subject_matches
from motes.wire.resources import BucketSpec, StreamSpec

Connect = Callable[[], "asyncio.Future[Bus]"]


@pytest.fixture(params=["nats", "memory"])
async def connect(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Connect]:
    """A factory of connections to one lattice: a real nats-server, or the in-memory one."""
    async with AsyncExitStack() as stack:
        if request.param == "nats":
            from motes.wire._nats import NatsBus

            server = await NatsServer.start(
                ServerConfig(store_dir=tmp_path / "js", max_payload_mb=1), workdir=tmp_path
            )
            stack.push_async_callback(server.stop)

            async def make() -> Bus:
                bus = await NatsBus.connect(LatticeConfig(servers=(server.url,)))
                stack.push_async_callback(bus.close)
                return bus

        else:
            lattice = MemoryLattice(max_payload=1 << 20)

            async def make() -> Bus:
                bus = lattice.connect()
                stack.push_async_callback(bus.close)
                return bus

        yield make  # type: ignore[misc]


async def _request_when_seen(bus: Bus, subject: str, data: bytes) -> Message:
    """A request to a subject whose subscriber has just flushed.

    nats-server 2.15 now and then answers "no responders" to a request sent right after
    another connection's subscription was flushed (about 1 in 100 with fresh
    connections, measured); interest shows up within milliseconds. Callers of the Bus
    (the client's call path) treat no responders as "look again", and so does this.
    """
    async with asyncio.timeout(5):
        while True:
            try:
                return await bus.request(subject, data, timeout=5)
            except NoResponders:
                await asyncio.sleep(0.01)


async def _interest_seen(a: Bus, b: Bus) -> None:
    """Return once ``a`` sees subscriptions ``b`` made so far (a request round trip)."""
    sub = await b.subscribe("contract.ping")

    async def pong() -> None:
        async for msg in sub:
            await b.publish(msg.reply, b"pong")

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(pong())
        await b.flush()
        await _request_when_seen(a, "contract.ping", b"")
        task.cancel()
    await sub.unsubscribe()


async def _take(sub: object, n: int, timeout: float = 5.0) -> list[bytes]:
    out: list[bytes] = []
    async with asyncio.timeout(timeout):
        async for msg in sub:  # type: ignore[attr-defined]
            out.append(msg.data)
            if len(out) == n:
                break
    return out


# --- core ----------------------------------------------------------------------------


async def test_publish_reaches_matching_subscribers(connect: Connect) -> None:
    a, b = await connect(), await connect()
    star = await b.subscribe("t.*.x")
    tail = await b.subscribe("t.>")
    exact = await b.subscribe("t.1.x")
    await _interest_seen(a, b)
    for subject in ("t.1.x", "t.2.y", "u.1.x"):
        await a.publish(subject, subject.encode())
    await a.flush()
    assert await _take(star, 1) == [b"t.1.x"]
    assert await _take(tail, 2) == [b"t.1.x", b"t.2.y"]
    assert await _take(exact, 1) == [b"t.1.x"]


async def test_a_queue_group_gives_each_message_to_one_member(connect: Connect) -> None:
    a, b = await connect(), await connect()
    members = [await b.subscribe("work", queue="q") for _ in range(3)]
    await b.flush()
    got: list[bytes] = []
    all_in = asyncio.Event()

    async def member(sub: object) -> None:
        async for msg in sub:  # type: ignore[attr-defined]
            got.append(msg.data)
            if len(got) == 60:
                all_in.set()

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(member(m)) for m in members]
        await _interest_seen(a, b)
        for i in range(60):
            await a.publish("work", str(i).encode())
        await asyncio.wait_for(all_in.wait(), 5)
        await a.flush()
        await b.flush()
        for t in tasks:
            t.cancel()
    assert sorted(got, key=int) == [str(i).encode() for i in range(60)]


async def test_request_reply_no_responders_and_timeout(connect: Connect) -> None:
    a, b = await connect(), await connect()
    sub = await b.subscribe("echo")

    async def serve() -> None:
        async for msg in sub:
            await b.publish(msg.reply, msg.data + b"!")

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(serve())
        await b.flush()
        assert (await _request_when_seen(a, "echo", b"hi")).data == b"hi!"
        with pytest.raises(NoResponders):
            await a.request("nobody.listens", b"", timeout=5)
        quiet = await b.subscribe("quiet")
        await _interest_seen(a, b)
        with pytest.raises(NoReply):
            await a.request("quiet", b"", timeout=0.2)
        await quiet.unsubscribe()
        task.cancel()


async def test_scatter_collects_every_answer(connect: Connect) -> None:
    a, b = await connect(), await connect()
    subs = [await b.subscribe("who") for _ in range(3)]

    async def answer(i: int, sub: object) -> None:
        async for msg in sub:  # type: ignore[attr-defined]
            await b.publish(msg.reply, str(i).encode())

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(answer(i, s)) for i, s in enumerate(subs)]
        await b.flush()
        async with asyncio.timeout(5):  # interest can take a moment to show (see above)
            while len(got := await a.scatter("who", b"", expected=3, timeout=1)) < 3:
                pass
        assert sorted(got) == [b"0", b"1", b"2"]
        assert await a.scatter("nobody", b"", expected=None, timeout=0.2) == []
        for t in tasks:
            t.cancel()


async def test_drain_yields_what_was_delivered_then_ends(connect: Connect) -> None:
    a, b = await connect(), await connect()
    sub = await b.subscribe("d")
    await _interest_seen(a, b)
    for i in range(5):
        await a.publish("d", bytes([i]))
    await a.flush()
    await b.flush()
    seen: list[bytes] = []
    reading = asyncio.Event()

    async def read() -> None:
        async for msg in sub:
            reading.set()
            seen.append(msg.data)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(read())
        await asyncio.wait_for(reading.wait(), 5)
        await sub.drain()
    assert seen == [bytes([i]) for i in range(5)]


async def test_oversize_messages_are_refused_before_sending(connect: Connect) -> None:
    a = await connect()
    with pytest.raises(PayloadTooLarge):
        await a.publish("big", b"x" * (a.max_payload + 1))


async def test_closing_ends_subscriptions_and_reports_closed(connect: Connect) -> None:
    a = await connect()
    sub = await a.subscribe("x")
    states: list[ConnState] = []

    async def follow() -> None:
        async for s in a.status():
            states.append(s)

    async def read() -> list[bytes]:
        return [m.data async for m in sub]

    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(follow())
        reader = tg.create_task(read())
        await a.flush()  # both tasks are waiting by the time the round trip is back
        await a.close()
        assert await reader == []
        await asyncio.wait_for(watcher, 5)
    assert states[-1] is ConnState.CLOSED
    with pytest.raises(TransportError):
        await a.publish("x", b"")


# --- KV ------------------------------------------------------------------------------


BUCKET = BucketSpec("contract_kv", history=4)


async def test_kv_get_put_create_update_delete(connect: Connect) -> None:
    kv = await (await connect()).kv(BUCKET)
    assert await kv.get("k") is None
    r1 = await kv.create("k", b"one")
    with pytest.raises(Conflict):
        await kv.create("k", b"again")
    r2 = await kv.update("k", b"two", last=r1)
    with pytest.raises(Conflict):
        await kv.update("k", b"stale", last=r1)
    entry = await kv.get("k")
    assert entry is not None and entry.value == b"two" and entry.revision == r2
    await kv.delete("k")
    assert await kv.get("k") is None
    marker = await kv.get("k", deleted=True)
    assert marker is not None and marker.op is Op.DEL and marker.value is None
    assert await kv.get("never", deleted=True) is None
    r3 = await kv.create("k", b"back")  # create works again after a delete
    assert r3 > r2
    history = await kv.history("k")
    assert [e.op for e in history] == [Op.PUT, Op.PUT, Op.DEL, Op.PUT]
    assert [e.value for e in history] == [b"one", b"two", None, b"back"]
    assert await kv.history("never") == []


async def test_kv_items_and_watch(connect: Connect) -> None:
    bus = await connect()
    kv = await bus.kv(BUCKET)
    await kv.put("a.1", b"x")
    await kv.put("a.2", b"y")
    await kv.put("b.1", b"z")
    await kv.put("c.1", b"")
    await kv.delete("a.2")
    everything = {k: e.value for k, e in (await kv.items()).items()}
    assert everything == {"a.1": b"x", "b.1": b"z", "c.1": b""}
    assert await kv.items("d.*") == {}
    assert set(await kv.items("a.*")) == {"a.1"}
    async with await kv.watch("a.*") as watch:
        first = [await watch.next(5), await watch.next(5)]
        assert {(e.key, e.op) for e in first if e} == {("a.1", Op.PUT), ("a.2", Op.DEL)}
        await kv.put("a.3", b"new")
        await kv.put("b.2", b"other")
        nxt = await watch.next(5)
        assert nxt is not None and (nxt.key, nxt.value) == ("a.3", b"new")
        assert await watch.next(0.2) is None  # b.2 is not ours
    async with await kv.watch(updates_only=True) as watch:
        assert await watch.next(0.2) is None  # what is there already is not news
        await kv.put("b.3", b"news")
        nxt = await watch.next(5)
        assert nxt is not None and (nxt.key, nxt.value) == ("b.3", b"news")


async def test_replicating_a_stream_names_one_that_exists(connect: Connect) -> None:
    bus = await connect()
    await bus.kv(BUCKET)
    await bus.replicate(f"KV_{BUCKET.name}", 1)  # one server: one copy is all there is
    with pytest.raises(TransportError):
        await bus.replicate("NO_SUCH_STREAM", 1)


async def test_kv_entries_expire_after_the_bucket_ttl(connect: Connect) -> None:
    kv = await (await connect()).kv(BucketSpec("contract_ttl", ttl=1.0))
    await kv.put("k", b"v")
    assert await kv.get("k") is not None

    async def gone() -> bool:
        return await kv.get("k") is None

    await eventually(gone, timeout=10, what="the entry expiring")
    assert await kv.create("k", b"again") > 0  # an expired key can be taken again


# --- streams -------------------------------------------------------------------------

QUEUE = StreamSpec("CONTRACT_Q", ("cq.>",), work_queue=True, duplicate_window=60)
LIMITED = StreamSpec("CONTRACT_L", ("cl.>",), max_msgs_per_subject=3)


async def test_durable_publish_deduplicates_and_counts(connect: Connect) -> None:
    bus = await connect()
    await bus.ensure_stream(QUEUE)
    assert await bus.publish_durable("cq.a", b"1", msg_id="one") > 0
    await bus.publish_durable("cq.a", b"1 again", msg_id="one")
    acks = [await bus.publish_durable_nowait("cq.b", bytes([i])) for i in range(3)]
    for ack in acks:
        assert await ack > 0
    state = await bus.stream_state(QUEUE.name, "cq.>")
    assert state is not None and state.subjects == {"cq.a": 1, "cq.b": 3}
    first = await bus.stream_first(QUEUE.name, "cq.b")
    assert first is not None and first.data == b"\x00" and first.time > 0
    assert await bus.stream_state("NO_SUCH_STREAM") is None
    with pytest.raises(TransportError):
        await bus.publish_durable("nowhere.x", b"")


async def test_pull_consumer_acks_naks_and_redelivers(connect: Connect) -> None:
    bus = await connect()
    await bus.ensure_stream(QUEUE)
    for i in range(3):
        await bus.publish_durable("cq.job", bytes([i]))
    pull = await bus.pull(QUEUE, durable="c1", subject="cq.job", ack_wait=1.0, max_ack_pending=10)
    msgs = await pull.fetch(3, timeout=5)
    assert [m.data for m in msgs] == [b"\x00", b"\x01", b"\x02"]
    assert all(m.deliveries == 1 for m in msgs)
    await msgs[0].ack()
    await msgs[1].nak()
    await msgs[2].term()
    again = await pull.fetch(3, timeout=5)
    assert [(m.data, m.deliveries) for m in again] == [(b"\x01", 2)]
    assert await bus.consumer_pending(QUEUE.name, "c1") == 1
    # Not acked within ack_wait: delivered again.
    late = await pull.fetch(1, timeout=5)
    assert [(m.data, m.deliveries) for m in late] == [(b"\x01", 3)]
    await late[0].ack()
    assert await pull.fetch(1, timeout=0.3) == []
    state = await bus.stream_state(QUEUE.name, "cq.job")
    assert state is not None and state.subjects.get("cq.job", 0) == 0
    await pull.close()


async def test_pulled_messages_say_how_many_wait_behind_them(connect: Connect) -> None:
    bus = await connect()
    await bus.ensure_stream(QUEUE)
    for i in range(4):
        await bus.publish_durable("cq.backlog", bytes([i]))
    pull = await bus.pull(
        QUEUE, durable="c2", subject="cq.backlog", ack_wait=30.0, max_ack_pending=10
    )
    first = await pull.fetch(1, timeout=5)
    assert [(m.data, m.pending) for m in first] == [(b"\x00", 3)]
    rest = await pull.fetch(3, timeout=5)
    assert [(m.data, m.pending) for m in rest] == [(b"\x01", 2), (b"\x02", 1), (b"\x03", 0)]
    for m in first + rest:
        await m.ack()
    await pull.close()


async def test_replay_reads_a_stream_from_its_start(connect: Connect) -> None:
    bus = await connect()
    await bus.ensure_stream(LIMITED)
    for i in range(5):
        await bus.publish_durable("cl.a", bytes([i]))
    await bus.publish_durable("cl.b", b"b")
    got = [m.data async for m in bus.replay(LIMITED, "cl.a", follow=False)]
    assert got == [b"\x02", b"\x03", b"\x04"]  # only the last 3 per subject are kept
    followed: list[bytes] = []
    caught_up = asyncio.Event()

    async def follow() -> None:
        async for m in bus.replay(LIMITED, "cl.b", follow=True):
            followed.append(m.data)
            caught_up.set()
            if len(followed) == 2:
                return

    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(follow())
        await asyncio.wait_for(caught_up.wait(), 5)
        await bus.publish_durable("cl.b", b"later")
        await asyncio.wait_for(task, 5)
    assert followed == [b"b", b"later"]


async def test_object_store(connect: Connect) -> None:
    objects = await (await connect()).objects(BucketSpec("contract_obj", objects=True))
    assert not await objects.exists("sha256:abc")
    assert await objects.get("sha256:abc") is None
    await objects.put("sha256:abc", b"bundle" * 1000)
    assert await objects.exists("sha256:abc")
    assert await objects.get("sha256:abc") == b"bundle" * 1000


def test_subject_matching() -> None:
    assert subject_matches("a.*.c", "a.b.c")
    assert not subject_matches("a.*.c", "a.b.d")
    assert subject_matches("a.>", "a.b.c")
    assert not subject_matches("a.>", "a")
    assert not subject_matches("a.b", "a.b.c")
