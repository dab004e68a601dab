"""JetStream on nats-py behind the ``Bus`` types: buckets (``NatsKV``, ``NatsWatch``), object
stores (``NatsObjects``), stream messages (``NatsJetMsg``) and pull consumers (``NatsPull``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from ..errors import NoReply
from ._nats_errors import mapped
from .bus import Entry, JetMsg, Op

if TYPE_CHECKING:
    from ._nats import NatsBus

log = logging.getLogger(__name__)
_EXPECT_LAST = "Nats-Expected-Last-Subject-Sequence"


class NatsKV:
    """A bucket. Writes are JetStream publishes to ``{put_prefix}{key}``: the bucket's
    own ``$KV.{bucket}.`` subjects, or from a leaf, the hubs' domain mapping of them
    (``$JS.{domain}.API.$KV.{bucket}.``: the plain subjects do not cross a leaf link to
    JetStream in another domain, nats-server#4819)."""

    def __init__(self, kv: KeyValue, name: str, bus: NatsBus) -> None:
        self._kv = kv
        self._name = name
        self._guarded = bus._guarded
        self._js = bus._js
        self._pre = bus._kv_put_prefix(name)

    @contextlib.asynccontextmanager
    async def _op(self, what: str, key: str = "", expected: int = 0) -> AsyncIterator[None]:
        async with self._guarded(self._name):
            with mapped(what, key, expected):
                yield

    @property
    def name(self) -> str:
        return self._name

    async def get(self, key: str, *, deleted: bool = False) -> Entry | None:
        async with self._op(f"reading {self._name}/{key}"):
            try:
                e = await self._kv.get(key)
            except nats.js.errors.KeyNotFoundError as exc:
                # nats-py raises this for a deleted key too, with the delete marker in it.
                marker = getattr(exc, "entry", None)
                if deleted and marker is not None:
                    op = Op.PURGE if getattr(exc, "op", "") == "PURGE" else Op.DEL
                    return Entry(key=key, value=None, revision=int(marker.revision or 0), op=op)
                return None
        return entry_of(e)

    async def _publish(self, key: str, value: bytes, headers: dict[str, str] | None) -> int:
        try:
            ack = await self._js.publish(self._pre + key, value, headers=headers)
        except nats.js.errors.APIError as err:
            # 10071/10164: the key's last revision is not the one expected.
            if err.err_code in (10071, 10164):
                raise nats.js.errors.KeyWrongLastSequenceError(
                    description=err.description
                ) from None
            raise
        return int(ack.seq)

    async def put(self, key: str, value: bytes) -> int:
        async with self._op(f"writing {self._name}/{key}"):
            return await self._publish(key, value, None)

    async def create(self, key: str, value: bytes) -> int:
        async with self._op(f"creating {self._name}/{key}", key=f"{self._name}/{key}"):
            try:
                return await self._publish(key, value, {_EXPECT_LAST: "0"})
            except nats.js.errors.KeyWrongLastSequenceError:
                # Deleted keys keep a marker: creating one again expects the marker.
                marker = await self.get(key, deleted=True)
                if marker is None or marker.op is Op.PUT:
                    raise
                return await self._publish(key, value, {_EXPECT_LAST: str(marker.revision)})

    async def update(self, key: str, value: bytes, *, last: int) -> int:
        async with self._op(
            f"updating {self._name}/{key}", key=f"{self._name}/{key}", expected=last
        ):
            return await self._publish(key, value, {_EXPECT_LAST: str(last)})

    async def delete(self, key: str) -> None:
        async with self._op(f"deleting {self._name}/{key}"):
            await self._publish(key, b"", {"KV-Operation": "DEL"})

    async def history(self, key: str) -> list[Entry]:
        async with self._op(f"history of {self._name}/{key}"):
            try:
                entries = await self._kv.history(key)
            except nats.js.errors.NoKeysError:
                return []
        return [entry_of(e) for e in entries]

    async def items(self, keys: str = ">") -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        async with self._op(f"listing {self._name}"):
            watcher = await self._kv.watch(keys)
            try:
                async for e in watcher:
                    if e is None:
                        # nats-py's "nothing to read" marker can come before entries
                        # that are already on their way (it races the consumer's
                        # first deliveries): the consumer itself says which it is.
                        assert watcher._sub is not None
                        info = await watcher._sub.consumer_info()
                        if info.delivered.consumer_seq == 0 and info.num_pending == 0:
                            break
                        continue
                    if e.operation is None:  # a put; deletes and purges are markers
                        out[e.key] = entry_of(e)
                    else:
                        out.pop(e.key, None)
                    if e.delta == 0:
                        break
            finally:
                await watcher.stop()
        return out

    async def watch(
        self, keys: str = ">", *, history: bool = False, updates_only: bool = False
    ) -> NatsWatch:
        async with self._op(f"watching {self._name}"):
            # Revisions are the bucket stream's sequence: anything at or below its last
            # one now is a current value, not an update.
            after = (await self._kv.status()).stream_info.state.last_seq if updates_only else 0
            watcher = await self._kv.watch(keys, include_history=history)
        return NatsWatch(watcher, after)


class NatsWatch:
    def __init__(self, watcher: KeyValue.KeyWatcher, after: int = 0) -> None:
        self._w = watcher
        self._after = after
        self._stopped = False

    def __aiter__(self) -> AsyncIterator[Entry]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Entry]:
        async for e in self._w:
            if e is not None and (e.revision or 0) > self._after:
                yield entry_of(e)

    async def next(self, timeout: float) -> Entry | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                e = await self._w.updates(timeout=left)
            except nats.errors.TimeoutError:
                return None
            if e is not None and (e.revision or 0) > self._after:
                return entry_of(e)

    async def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            try:
                await self._w.stop()
            except nats.errors.Error as exc:
                log.debug("watch stop: %r", exc)

    async def __aenter__(self) -> NatsWatch:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def entry_of(e: KeyValue.Entry) -> Entry:
    op = Op.PUT
    if e.operation == "DEL":
        op = Op.DEL
    elif e.operation == "PURGE":
        op = Op.PURGE
    value = None if op is not Op.PUT else bytes(e.value or b"")
    when: Any = getattr(e, "created", None)  # a datetime, from the message's metadata
    created = when.timestamp() if hasattr(when, "timestamp") else 0.0
    return Entry(key=e.key, value=value, revision=int(e.revision or 0), op=op, created=created)


class NatsObjects:
    def __init__(self, store: Any, name: str) -> None:
        self._store = store
        self._name = name

    async def get(self, name: str) -> bytes | None:
        with mapped(f"reading {self._name}/{name}"):
            try:
                obj = await self._store.get(name)
            except nats.js.errors.NotFoundError:
                return None
        return bytes(obj.data) if obj.data is not None else None

    async def put(self, name: str, data: bytes) -> None:
        with mapped(f"storing {self._name}/{name}"):
            await self._store.put(name, data)

    async def exists(self, name: str) -> bool:
        with mapped(f"looking up {self._name}/{name}"):
            try:
                await self._store.get_info(name)
            except nats.js.errors.NotFoundError:
                return False
        return True


class NatsJetMsg:
    __slots__ = ("_msg",)

    def __init__(self, msg: Msg) -> None:
        self._msg = msg

    @property
    def subject(self) -> str:
        return str(self._msg.subject)

    @property
    def data(self) -> bytes:
        return bytes(self._msg.data)

    @property
    def deliveries(self) -> int:
        return int(self._msg.metadata.num_delivered)

    @property
    def pending(self) -> int:
        return int(self._msg.metadata.num_pending or 0)

    async def ack(self) -> None:
        with mapped("acknowledging a durable message"):
            await self._msg.ack()

    async def nak(self, delay: float = 0.0) -> None:
        with mapped("returning a durable message"):
            await self._msg.nak(delay=delay or None)

    async def term(self) -> None:
        with mapped("terminating a durable message"):
            await self._msg.term()

    async def in_progress(self) -> None:
        with mapped("extending a durable message"):
            await self._msg.in_progress()


class NatsPull:
    def __init__(self, sub: JetStreamContext.PullSubscription, what: str) -> None:
        self._sub = sub
        self._what = what

    async def fetch(self, batch: int, timeout: float) -> list[JetMsg]:
        try:
            with mapped(self._what):
                msgs = await self._sub.fetch(batch, timeout=timeout)
        except NoReply:
            return []
        return [NatsJetMsg(m) for m in msgs]

    async def close(self) -> None:
        try:
            await self._sub.unsubscribe()
        except (nats.errors.Error, ValueError) as exc:
            log.debug("pull unsubscribe: %r", exc)
