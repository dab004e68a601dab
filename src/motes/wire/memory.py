"""An in-memory lattice, for fast tests of the I/O shells (scheduler, agent, worker, store).

``MemoryLattice`` plays nats-server: subjects with ``*`` and ``>`` wildcards, queue
groups, no-responder replies, KV buckets with revisions, history and TTLs, streams with
limits, de-duplication and work-queue consumers that redeliver unacked messages, and an
object store. ``MemoryLattice.connect()`` gives a ``MemoryBus``, which keeps the ``Bus``
contract: ``tests/wire/test_bus_contract.py`` runs the same tests against it and against
a real nats-server, so the fake cannot drift from the real thing.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType

from ..errors import Conflict, NoReply, NoResponders, PayloadTooLarge, TransportError
from .bus import ConnState, Entry, JetMsg, Op, StoredMsg, StreamState
from .resources import BucketSpec, StreamSpec

__all__ = ["MemoryBus", "MemoryLattice", "subject_matches"]

_END = object()


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` is one or more."""
    p = pattern.split(".")
    s = subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


@dataclass(frozen=True, slots=True)
class _Msg:
    subject: str
    data: bytes
    reply: str = ""
    headers: dict[str, str] | None = None


_NO_RESPONDERS = {"Status": "503"}


class _Sub:
    def __init__(self, bus: MemoryBus, subject: str, queue: str, pending: int) -> None:
        self.bus = bus
        self.subject = subject
        self.queue_group = queue
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._limit = pending
        self._ended = False
        self._iterating = False
        self._done = asyncio.Event()

    def offer(self, msg: _Msg) -> None:
        if not self._ended and self._queue.qsize() < self._limit:
            self._queue.put_nowait(msg)

    def __aiter__(self) -> AsyncIterator[_Msg]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[_Msg]:
        self._iterating = True
        try:
            while True:
                msg = await self._queue.get()
                if msg is _END:
                    return
                assert isinstance(msg, _Msg)
                yield msg
        finally:
            self._iterating = False
            self._done.set()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self.bus.lattice._subs.discard(self)
            self._queue.put_nowait(_END)

    async def drain(self) -> None:
        if self._ended:
            return
        self._end()
        if self._iterating:
            await self._done.wait()

    async def unsubscribe(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
        self._end()

    async def __aenter__(self) -> _Sub:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.unsubscribe()


# --- KV ----------------------------------------------------------------------------------


class _Bucket:
    def __init__(self, lattice: MemoryLattice, spec: BucketSpec) -> None:
        self.lattice = lattice
        self.spec = spec
        self.entries: dict[str, list[Entry]] = {}
        self.rev = 0
        self.watchers: list[tuple[str, asyncio.Queue[Entry]]] = []

    def _live(self, key: str) -> Entry | None:
        history = self.entries.get(key)
        if not history:
            return None
        last = history[-1]
        if self.spec.ttl is not None and self.lattice.clock() - last.created > self.spec.ttl:
            return None
        return last

    def latest_revision(self, key: str) -> int:
        entry = self._live(key)
        return entry.revision if entry is not None else 0

    def write(self, key: str, value: bytes | None, op: Op) -> int:
        self.rev += 1
        entry = Entry(key=key, value=value, revision=self.rev, op=op, created=self.lattice.clock())
        history = self.entries.setdefault(key, [])
        history.append(entry)
        del history[: max(0, len(history) - self.spec.history)]
        for pattern, queue in self.watchers:
            if subject_matches(pattern, key):
                queue.put_nowait(entry)
        return self.rev

    def current(self, pattern: str) -> list[Entry]:
        out = [e for k in self.entries if subject_matches(pattern, k) if (e := self._live(k))]
        return sorted(out, key=lambda e: e.revision)


class _KV:
    def __init__(self, bucket: _Bucket, bus: MemoryBus) -> None:
        self._b = bucket
        self._bus = bus

    @property
    def name(self) -> str:
        return self._b.spec.name

    async def get(self, key: str, *, deleted: bool = False) -> Entry | None:
        self._bus._check()
        entry = self._b._live(key)
        return entry if entry is not None and (deleted or entry.op is Op.PUT) else None

    async def put(self, key: str, value: bytes) -> int:
        self._bus._check_size(key, value)
        return self._b.write(key, bytes(value), Op.PUT)

    async def create(self, key: str, value: bytes) -> int:
        self._bus._check_size(key, value)
        entry = self._b._live(key)
        if entry is not None and entry.op is Op.PUT:
            raise Conflict(f"{self.name}/{key}", 0, "the key exists")
        return self._b.write(key, bytes(value), Op.PUT)

    async def update(self, key: str, value: bytes, *, last: int) -> int:
        self._bus._check_size(key, value)
        if self._b.latest_revision(key) != last:
            raise Conflict(f"{self.name}/{key}", last, "wrong last sequence")
        return self._b.write(key, bytes(value), Op.PUT)

    async def delete(self, key: str) -> None:
        self._bus._check()
        self._b.write(key, None, Op.DEL)

    async def history(self, key: str) -> list[Entry]:
        self._bus._check()
        return list(self._b.entries.get(key, []))

    async def items(self, keys: str = ">") -> dict[str, Entry]:
        self._bus._check()
        return {e.key: e for e in self._b.current(keys) if e.op is Op.PUT}

    async def watch(
        self, keys: str = ">", *, history: bool = False, updates_only: bool = False
    ) -> _Watch:
        self._bus._check()
        queue: asyncio.Queue[Entry] = asyncio.Queue()
        if updates_only:
            first: list[Entry] = []
        elif history:
            first = sorted(
                (e for k, h in self._b.entries.items() if subject_matches(keys, k) for e in h),
                key=lambda e: e.revision,
            )
        else:
            first = self._b.current(keys)
        for entry in first:
            queue.put_nowait(entry)
        watcher = (keys, queue)
        self._b.watchers.append(watcher)
        return _Watch(self._b, watcher)


class _Watch:
    def __init__(self, bucket: _Bucket, watcher: tuple[str, asyncio.Queue[Entry]]) -> None:
        self._b = bucket
        self._w = watcher
        self._stopped = False

    def __aiter__(self) -> AsyncIterator[Entry]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Entry]:
        while not self._stopped:
            yield await self._w[1].get()

    async def next(self, timeout: float) -> Entry | None:
        try:
            async with asyncio.timeout(timeout):
                return await self._w[1].get()
        except TimeoutError:
            return None

    async def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._b.watchers.remove(self._w)

    async def __aenter__(self) -> _Watch:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class _Objects:
    def __init__(self, data: dict[str, bytes], bus: MemoryBus) -> None:
        self._data = data
        self._bus = bus

    async def get(self, name: str) -> bytes | None:
        self._bus._check()
        return self._data.get(name)

    async def put(self, name: str, data: bytes) -> None:
        self._bus._check()
        self._data[name] = bytes(data)

    async def exists(self, name: str) -> bool:
        self._bus._check()
        return name in self._data


# --- streams -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Stored:
    seq: int
    subject: str
    data: bytes
    time: float


@dataclass(slots=True)
class _Consumer:
    durable: str
    subject: str
    ack_wait: float
    max_ack_pending: int
    inflight: dict[int, float] = field(default_factory=dict)
    """seq -> when it is redelivered unless acked."""
    later: dict[int, float] = field(default_factory=dict)
    """seq -> when a nak'd message may be delivered again."""
    deliveries: dict[int, int] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)


class _Stream:
    def __init__(self, lattice: MemoryLattice, spec: StreamSpec) -> None:
        self.lattice = lattice
        self.spec = spec
        self.msgs: dict[int, _Stored] = {}
        self.seq = 0
        self.ids: dict[str, float] = {}
        self.consumers: dict[str, _Consumer] = {}
        self._changed = asyncio.Event()

    def notify(self) -> None:
        """Wake everyone waiting for this stream to change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout: float | None = None) -> None:
        """Until the stream changes (or ``timeout`` passes)."""
        event = self._changed
        try:
            async with asyncio.timeout(timeout):
                await event.wait()
        except TimeoutError:
            pass

    def store(self, subject: str, data: bytes, msg_id: str) -> int:
        now = self.lattice.clock()
        window = self.spec.duplicate_window or 120.0
        self.ids = {k: t for k, t in self.ids.items() if now - t < window}
        if msg_id and msg_id in self.ids:
            return 0
        if msg_id:
            self.ids[msg_id] = now
        self.seq += 1
        self.msgs[self.seq] = _Stored(self.seq, subject, bytes(data), now)
        self._limit(subject)
        self.notify()
        return self.seq

    def _limit(self, subject: str) -> None:
        if self.spec.max_msgs_per_subject > 0:
            same = [s for s, m in self.msgs.items() if m.subject == subject]
            for s in same[: max(0, len(same) - self.spec.max_msgs_per_subject)]:
                del self.msgs[s]
        if self.spec.max_bytes > 0:
            while sum(len(m.data) for m in self.msgs.values()) > self.spec.max_bytes:
                del self.msgs[min(self.msgs)]

    def available(self, c: _Consumer, now: float) -> list[int]:
        for seq, due in list(c.inflight.items()):
            if due <= now:  # not acked in time: redelivered
                del c.inflight[seq]
        ready = [
            s
            for s, m in sorted(self.msgs.items())
            if subject_matches(c.subject, m.subject)
            and s not in c.inflight
            and c.later.get(s, 0.0) <= now
            and s not in c.acked
        ]
        return ready[: max(0, c.max_ack_pending - len(c.inflight))]


class _JetMsg:
    def __init__(self, stream: _Stream, consumer: _Consumer, stored: _Stored, pending: int) -> None:
        self._stream = stream
        self._c = consumer
        self._m = stored
        self._pending = pending

    @property
    def subject(self) -> str:
        return self._m.subject

    @property
    def data(self) -> bytes:
        return self._m.data

    @property
    def deliveries(self) -> int:
        return self._c.deliveries.get(self._m.seq, 1)

    @property
    def pending(self) -> int:
        return self._pending

    async def ack(self) -> None:
        self._c.inflight.pop(self._m.seq, None)
        self._c.later.pop(self._m.seq, None)
        self._c.acked.add(self._m.seq)
        if self._stream.spec.work_queue:
            self._stream.msgs.pop(self._m.seq, None)

    async def term(self) -> None:
        await self.ack()

    async def nak(self, delay: float = 0.0) -> None:
        self._c.inflight.pop(self._m.seq, None)
        self._c.later[self._m.seq] = self._stream.lattice.clock() + delay
        self._stream.notify()  # a waiting fetch looks again, and waits out the delay

    async def in_progress(self) -> None:
        if self._m.seq in self._c.inflight:
            self._c.inflight[self._m.seq] = self._stream.lattice.clock() + self._c.ack_wait


class _Pull:
    def __init__(self, stream: _Stream, consumer: _Consumer, bus: MemoryBus) -> None:
        self._s = stream
        self._c = consumer
        self._bus = bus

    async def fetch(self, batch: int, timeout: float) -> list[JetMsg]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._bus._check()
            now = self._s.lattice.clock()
            available = self._s.available(self._c, now)
            ready = available[:batch]
            if ready:
                out: list[JetMsg] = []
                for i, seq in enumerate(ready):
                    self._c.inflight[seq] = now + self._c.ack_wait
                    self._c.later.pop(seq, None)
                    self._c.deliveries[seq] = self._c.deliveries.get(seq, 0) + 1
                    pending = len(available) - i - 1
                    out.append(_JetMsg(self._s, self._c, self._s.msgs[seq], pending))
                return out
            left = deadline - loop.time()
            if left <= 0:
                return []
            # Wake for a publish, a nak's delay, or the earliest redelivery.
            dues = [*self._c.inflight.values(), *self._c.later.values()]
            await self._s.changed(min([left, *(max(d - now, 0.001) for d in dues)]))

    async def close(self) -> None:
        return None


class MemoryLattice:
    """The server side of an in-memory lattice; ``connect()`` as many buses as needed."""

    def __init__(
        self, *, max_payload: int = 8 << 20, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_payload = max_payload
        self.clock = clock
        self._subs: set[_Sub] = set()
        self._buckets: dict[str, _Bucket] = {}
        self._objects: dict[str, dict[str, bytes]] = {}
        self._streams: dict[str, _Stream] = {}
        self._rr = itertools.count()
        self._inboxes = itertools.count(1)
        self.buses: list[MemoryBus] = []

    def connect(self, name: str = "motes", *, inbox_prefix: str = "_INBOX") -> MemoryBus:
        bus = MemoryBus(self, name, f"{inbox_prefix}.m{next(self._inboxes)}")
        self.buses.append(bus)
        return bus

    def route(self, msg: _Msg) -> int:
        """Deliver to every plain subscriber and one member of each queue group."""
        plain: list[_Sub] = []
        groups: dict[str, list[_Sub]] = {}
        for sub in list(self._subs):
            if subject_matches(sub.subject, msg.subject):
                if sub.queue_group:
                    groups.setdefault(sub.queue_group, []).append(sub)
                else:
                    plain.append(sub)
        for sub in plain:
            sub.offer(msg)
        for members in groups.values():
            random.choice(members).offer(msg)
        return len(plain) + len(groups)

    def stream_for(self, subject: str) -> _Stream | None:
        for stream in self._streams.values():
            if any(subject_matches(p, subject) for p in stream.spec.subjects):
                return stream
        return None


class MemoryBus:
    """One connection to a ``MemoryLattice``; the same contract as ``NatsBus``."""

    def __init__(self, lattice: MemoryLattice, name: str, inbox: str) -> None:
        self.lattice = lattice
        self.name = name
        self._inbox = inbox
        self._inboxes = itertools.count(1)
        self._closed = False
        self._status: list[asyncio.Queue[ConnState]] = []

    @property
    def max_payload(self) -> int:
        return self.lattice.max_payload

    @property
    def connected(self) -> bool:
        return not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def refused(self) -> str:
        return ""  # the in-memory lattice authenticates no one

    def _check(self) -> None:
        if self._closed:
            raise TransportError(f"{self.name}: the connection is closed")

    def _check_size(self, what: str, data: bytes) -> None:
        self._check()
        if len(data) > self.max_payload:
            raise PayloadTooLarge(f"a message to {what}", len(data), self.max_payload)

    def new_inbox(self) -> str:
        return f"{self._inbox}.{next(self._inboxes)}"

    async def publish(
        self, subject: str, data: bytes, *, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        self._check_size(subject, data)
        delivered = self.lattice.route(_Msg(subject, bytes(data), reply, headers))
        if not delivered and reply:
            self.lattice.route(_Msg(reply, b"", "", dict(_NO_RESPONDERS)))

    async def subscribe(self, subject: str, *, queue: str = "", pending: int = 65536) -> _Sub:
        self._check()
        sub = _Sub(self, subject, queue, pending)
        self.lattice._subs.add(sub)
        return sub

    async def request(
        self, subject: str, data: bytes, *, timeout: float, headers: dict[str, str] | None = None
    ) -> _Msg:
        inbox = self.new_inbox()
        async with await self.subscribe(inbox) as sub:
            await self.publish(subject, data, reply=inbox, headers=headers)
            try:
                async with asyncio.timeout(timeout):
                    async for msg in sub:
                        if msg.headers == _NO_RESPONDERS and not msg.data:
                            raise NoResponders(subject)
                        return msg
            except TimeoutError:
                raise NoReply(subject, timeout) from None
        raise TransportError(f"request to {subject}: the connection closed")

    async def scatter(
        self, subject: str, data: bytes, *, expected: int | None, timeout: float
    ) -> list[bytes]:
        inbox = self.new_inbox()
        answers: list[bytes] = []
        async with await self.subscribe(inbox) as sub:
            await self.publish(subject, data, reply=inbox)
            try:
                async with asyncio.timeout(timeout):
                    async for msg in sub:
                        if msg.headers == _NO_RESPONDERS and not msg.data:
                            continue
                        answers.append(msg.data)
                        if expected is not None and len(answers) >= expected:
                            break
            except TimeoutError:
                pass
        return answers

    async def flush(self, timeout: float = 10.0) -> None:
        self._check()

    async def status(self) -> AsyncIterator[ConnState]:
        queue: asyncio.Queue[ConnState] = asyncio.Queue()
        self._status.append(queue)
        try:
            if self._closed:
                yield ConnState.CLOSED
                return
            while True:
                state = await queue.get()
                yield state
                if state is ConnState.CLOSED:
                    return
        finally:
            self._status.remove(queue)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in [s for s in self.lattice._subs if s.bus is self]:
            sub._end()
        for q in self._status:
            q.put_nowait(ConnState.CLOSED)

    # --- JetStream ---------------------------------------------------------------------

    async def kv(self, bucket: BucketSpec) -> _KV:
        self._check()
        held = self.lattice._buckets.get(bucket.name)
        if held is None:
            held = self.lattice._buckets[bucket.name] = _Bucket(self.lattice, bucket)
        return _KV(held, self)

    async def objects(self, bucket: BucketSpec) -> _Objects:
        self._check()
        return _Objects(self.lattice._objects.setdefault(bucket.name, {}), self)

    async def ensure_stream(self, stream: StreamSpec) -> None:
        self._check()
        if stream.name not in self.lattice._streams:
            self.lattice._streams[stream.name] = _Stream(self.lattice, stream)

    async def replicate(self, stream: str, replicas: int) -> None:
        """One in-memory copy stands for any number; an unknown stream is refused as
        nats-server refuses it."""
        self._check()
        known = set(self.lattice._streams) | {f"KV_{b}" for b in self.lattice._buckets}
        if stream not in known and not stream.startswith("OBJ_"):
            raise TransportError(f"replicating {stream}: no such stream")

    def _stream_for(self, subject: str) -> _Stream:
        stream = self.lattice.stream_for(subject)
        if stream is None:
            raise TransportError(f"storing a message on {subject}: no stream takes it")
        return stream

    async def publish_durable(
        self, subject: str, data: bytes, *, msg_id: str = "", timeout: float = 10.0
    ) -> int:
        self._check_size(subject, data)
        return self._stream_for(subject).store(subject, data, msg_id)

    async def publish_durable_nowait(
        self, subject: str, data: bytes, *, msg_id: str = ""
    ) -> Awaitable[int]:
        seq = await self.publish_durable(subject, data, msg_id=msg_id)

        async def acked() -> int:
            return seq

        return acked()

    async def stream_state(self, stream: str, subjects: str = "") -> StreamState | None:
        self._check()
        held = self.lattice._streams.get(stream)
        if held is None:
            return None
        per: dict[str, int] = {}
        if subjects:
            for m in held.msgs.values():
                if subject_matches(subjects, m.subject):
                    per[m.subject] = per.get(m.subject, 0) + 1
        return StreamState(messages=len(held.msgs), subjects=per)

    async def stream_first(self, stream: str, subject: str) -> StoredMsg | None:
        self._check()
        held = self.lattice._streams.get(stream)
        for m in sorted(held.msgs.values(), key=lambda m: m.seq) if held else []:
            if subject_matches(subject, m.subject):
                return StoredMsg(subject=m.subject, data=m.data, seq=m.seq, time=m.time)
        return None

    async def consumer_pending(self, stream: str, durable: str) -> int | None:
        self._check()
        held = self.lattice._streams.get(stream)
        consumer = held.consumers.get(durable) if held else None
        return None if consumer is None else len(consumer.inflight)

    async def pull(
        self,
        stream: StreamSpec,
        *,
        durable: str,
        subject: str,
        ack_wait: float,
        max_ack_pending: int,
    ) -> _Pull:
        await self.ensure_stream(stream)
        held = self.lattice._streams[stream.name]
        consumer = held.consumers.get(durable)
        if consumer is None:
            consumer = held.consumers[durable] = _Consumer(
                durable, subject, ack_wait, max_ack_pending
            )
        return _Pull(held, consumer, self)

    async def replay(
        self, stream: StreamSpec, subjects: str, *, follow: bool
    ) -> AsyncIterator[StoredMsg]:
        await self.ensure_stream(stream)
        held = self.lattice._streams[stream.name]
        last = 0
        while True:
            self._check()
            fresh = [
                m
                for s, m in sorted(held.msgs.items())
                if s > last and subject_matches(subjects, m.subject)
            ]
            for i, m in enumerate(fresh):
                last = m.seq
                yield StoredMsg(
                    subject=m.subject,
                    data=m.data,
                    seq=m.seq,
                    time=m.time,
                    pending=len(fresh) - i - 1,
                )
            if not follow:
                return
            await held.changed()
