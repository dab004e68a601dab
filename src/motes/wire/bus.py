"""Connections to the lattice and the JetStream resources every component shares.

``Lattice`` wraps one nats-py connection with the KV buckets, the bundle object store, the
log stream and the durable-call stream, created on first use with the same settings by
whoever comes first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from ..errors import TransportError
from . import subjects
from .codec import decode

__all__ = ["Lattice", "scatter", "watch_key", "watch_puts"]

log = logging.getLogger(__name__)
T = TypeVar("T")

RESULT_TTL_S = 24 * 3600.0
"""How long a durable call's result is kept (and answers a repeated call id)."""
HOLDINGS_TTL_S = 20.0
"""A store's holdings record lapses this long after its last report (a dead node's goes)."""
DUPLICATE_WINDOW_S = 120.0
"""A durable call re-published with the same id within this window is dropped."""


@dataclass(frozen=True, slots=True)
class _Bucket:
    name: str
    history: int = 1
    ttl: float | None = None


_BUCKETS = (
    _Bucket(subjects.KV_NODES),
    _Bucket(subjects.KV_APPS, history=8),
    _Bucket(subjects.KV_PLACE),
    _Bucket(subjects.KV_ACTORS),
    _Bucket(subjects.KV_CTX),
    _Bucket(subjects.KV_RESULTS, ttl=RESULT_TTL_S),
    _Bucket(subjects.KV_FLOWS, history=8),
    _Bucket(subjects.KV_STORE),
    _Bucket(subjects.KV_FILES),
    _Bucket(subjects.KV_HOLDINGS, ttl=HOLDINGS_TTL_S),
    _Bucket(subjects.KV_DATASETS, history=8),
)


class Lattice:
    """One connection to NATS, plus handles on the shared JetStream resources."""

    def __init__(self, nc: Client, replicas: int = 1) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=10.0)
        self.replicas = replicas
        self._kv: dict[str, KeyValue] = {}
        self._bundles: ObjectStore | None = None
        self._calls_stream = False

    @classmethod
    async def connect(cls, url: str, *, name: str = "motes", replicas: int = 1) -> Lattice:
        """Connect, failing fast (TransportError) when no server answers at ``url``.

        ``url`` may list several servers of a cluster, comma-separated.
        """

        async def _quiet(exc: Exception) -> None:
            log.debug("nats: %s", exc)

        try:
            nc = await nats.connect(
                [u.strip() for u in url.split(",") if u.strip()],
                name=name,
                connect_timeout=2,
                max_reconnect_attempts=2,  # the first connect fails fast ...
                reconnect_time_wait=0.25,
                allow_reconnect=True,
                error_cb=_quiet,
                # Bytes buffered while reconnecting; calls beyond it fail instead of queueing.
                pending_size=64 * 1024 * 1024,
            )
        except (OSError, nats.errors.NoServersError, nats.errors.TimeoutError) as exc:
            raise TransportError(f"cannot reach the lattice at {url}: {exc}") from None
        # ... but once connected, a lost server is retried for as long as we run.
        nc.options["max_reconnect_attempts"] = -1
        return cls(nc, replicas)

    @property
    def max_payload(self) -> int:
        return int(self.nc.max_payload)

    async def close(self) -> None:
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except (TimeoutError, nats.errors.Error):
                await self.nc.close()

    async def kv(self, bucket: str) -> KeyValue:
        """The KV bucket, created with the shared settings if it does not exist yet."""
        kv = self._kv.get(bucket)
        if kv is not None:
            return kv
        if bucket == subjects.KV_LEASE:
            raise ValueError("use lease_kv(ttl) for the lease bucket")
        spec = next(b for b in _BUCKETS if b.name == bucket)
        kv = await self._ensure_kv(spec)
        self._kv[bucket] = kv
        return kv

    async def lease_kv(self, ttl: float) -> KeyValue:
        """The scheduler lease bucket: entries expire ``ttl`` seconds after their last put."""
        kv = self._kv.get(subjects.KV_LEASE)
        if kv is None:
            kv = await self._ensure_kv(_Bucket(subjects.KV_LEASE, ttl=ttl))
            self._kv[subjects.KV_LEASE] = kv
        return kv

    async def _ensure_kv(self, spec: _Bucket) -> KeyValue:
        try:
            return await self.js.key_value(spec.name)
        except nats.js.errors.BucketNotFoundError:
            pass
        config = KeyValueConfig(
            bucket=spec.name,
            history=spec.history,
            ttl=spec.ttl,
            storage=StorageType.FILE,
            replicas=self.replicas,
        )
        try:
            return await self.js.create_key_value(config)
        except nats.js.errors.BadRequestError:
            # Another process created it between our look-up and create.
            return await self.js.key_value(spec.name)

    async def bundles(self) -> ObjectStore:
        if self._bundles is None:
            try:
                self._bundles = await self.js.object_store(subjects.OBJ_BUNDLES)
            except nats.js.errors.BucketNotFoundError:
                config = ObjectStoreConfig(
                    bucket=subjects.OBJ_BUNDLES, storage=StorageType.FILE, replicas=self.replicas
                )
                try:
                    self._bundles = await self.js.create_object_store(subjects.OBJ_BUNDLES, config)
                except nats.js.errors.BadRequestError:
                    self._bundles = await self.js.object_store(subjects.OBJ_BUNDLES)
        return self._bundles

    async def ensure_log_stream(self) -> None:
        """The stream that keeps worker output: bounded, oldest dropped first."""
        config = StreamConfig(
            name=subjects.STREAM_LOGS,
            subjects=[subjects.LOGS_ALL],
            max_bytes=64 * 1024 * 1024,
            max_msgs_per_subject=2000,
            storage=StorageType.FILE,
            num_replicas=self.replicas,
        )
        try:
            await self.js.stream_info(subjects.STREAM_LOGS)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:
                pass

    async def ensure_calls_stream(self) -> None:
        """The work queue of durable calls: a message leaves it when a worker acks it."""
        if self._calls_stream:
            return
        config = StreamConfig(
            name=subjects.STREAM_CALLS,
            subjects=[subjects.DURABLE_ALL],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_S,
            max_msg_size=self.max_payload,
            num_replicas=self.replicas,
        )
        try:
            await self.js.stream_info(subjects.STREAM_CALLS)
        except nats.js.errors.NotFoundError:
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError:
                pass  # another process created it first
        self._calls_stream = True

    async def kv_raw(self, bucket: str) -> dict[str, tuple[bytes, int]]:
        """Every live key of a bucket with its value and revision."""
        kv = await self.kv(bucket)
        out: dict[str, tuple[bytes, int]] = {}
        watcher = await kv.watchall(ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.value:
                    out[entry.key] = (entry.value, entry.revision)
                if entry.delta == 0:
                    break
        finally:
            await watcher.stop()
        return out

    async def kv_values(self, bucket: str, type_: type[T]) -> dict[str, tuple[T, int]]:
        """Every live key of a bucket, decoded, with its revision."""
        raw = await self.kv_raw(bucket)
        return {k: (decode(v, type_), rev) for k, (v, rev) in raw.items()}


async def scatter(
    nc: Client,
    subject: str,
    payload: bytes,
    decode_one: Callable[[bytes], T],
    *,
    expected: int | None,
    timeout: float,
) -> list[T]:
    """Publish one request that many answer; collect answers until ``expected`` or timeout.

    Undecodable answers are logged and skipped: one broken responder does not hide the rest.
    """
    inbox = nc.new_inbox()
    answers: list[T] = []
    done = asyncio.Event()

    async def on_msg(msg: Msg) -> None:
        if not msg.data and msg.headers:  # a status message (e.g. 503: nobody listens)
            return
        try:
            answers.append(decode_one(msg.data))
        except Exception as exc:  # a responder's bug must not break the query
            log.warning("ignoring a malformed answer on %s: %s", subject, exc)
        if expected is not None and len(answers) >= expected:
            done.set()

    sub = await nc.subscribe(inbox, cb=on_msg)
    try:
        await nc.publish(subject, payload, reply=inbox)
        try:
            async with asyncio.timeout(timeout):
                await done.wait()
        except TimeoutError:
            pass
    finally:
        await sub.unsubscribe()
    return answers


async def watch_key(kv: KeyValue, key: str) -> AsyncIterator[bytes | None]:
    """Yield the value of ``key`` now and after every change (None when deleted)."""
    watcher = await kv.watch(key)
    try:
        async for entry in watcher:
            if entry is None:
                continue
            yield None if entry.operation in ("DEL", "PURGE") else entry.value
    finally:
        await watcher.stop()


async def watch_puts(
    kv: KeyValue, keys: str, *, idle: float
) -> AsyncGenerator[tuple[str, bytes] | None, None]:
    """Yield ``(key, value)`` for every value of ``keys`` (a key or a filter), the current
    ones first, then each new one; yield None after ``idle`` seconds without one.

    Use it inside ``contextlib.aclosing`` so the watcher stops as soon as you are done.
    """
    watcher = await kv.watch(keys)
    try:
        while True:
            try:
                entry = await watcher.updates(timeout=idle)
            except nats.errors.TimeoutError:
                yield None
                continue
            if entry is not None and entry.value and entry.operation is None:
                yield entry.key, bytes(entry.value)
    finally:
        await watcher.stop()
