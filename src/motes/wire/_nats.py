"""The ``Bus`` on nats-py. With ``_nats_js`` (JetStream behind the ``Bus`` types) and
``_nats_errors`` (every nats-py exception mapped, once, to a Motes error: ``mapped``),
the only modules in Motes that import ``nats``.

Requests share one wildcard inbox subscription with a future per request (nats-py's own
``request`` starts a timer task per call, which is most of a small call's client cost).
Subscriptions are read straight from the queue nats-py fills, without the task per
message its message iterator creates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from ..config import LatticeConfig
from ..errors import (
    Forbidden,
    NoReply,
    NoResponders,
    PayloadTooLarge,
    TransportError,
    Unauthorized,
)
from ..identity.jwt import read_creds
from . import subjects
from ._nats_errors import VIOLATION, mapped, refusal
from ._nats_js import NatsKV, NatsObjects, NatsPull
from .bus import ConnState, StoredMsg, StreamState
from .resources import BucketSpec, StreamSpec

__all__ = ["NatsBus"]

log = logging.getLogger(__name__)
_DOMAIN_API = re.compile(r"^\$JS\.(?!API\.)[^.]+\.API\.")
_END = object()
"""Put in a subscription's queue to end its iterator."""


def _credential_callbacks(path: Path) -> dict[str, Any]:
    """Present the credential in ``path`` (a ``.creds`` file), read at every (re)connect,
    so a renewed one is used without restarting anything. Signing is done here, with the
    same library as every other signature of ours."""

    def read() -> tuple[str, Any]:
        try:
            return read_creds(path.read_text())
        except OSError as exc:
            raise Unauthorized(f"cannot read the credential {path}: {exc}") from None

    def jwt() -> bytes:
        return read()[0].encode()

    def sign(nonce: str) -> bytes:
        return base64.b64encode(read()[1].sign(nonce.encode()))

    return {"user_jwt_cb": jwt, "signature_cb": sign}


class _Sub:
    """A subscription whose iterator reads nats-py's pending queue directly."""

    def __init__(self, bus: NatsBus, sub: NatsSubscription) -> None:
        self._bus = bus
        self._sub = sub
        self._queue: asyncio.Queue[Any] = sub._pending_queue
        self._ended = False
        self._iterating = False
        self._done = asyncio.Event()

    def __aiter__(self) -> AsyncIterator[Msg]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Msg]:
        queue = self._queue
        sub = self._sub
        self._iterating = True
        try:
            while True:
                msg = await queue.get()
                queue.task_done()
                if msg is _END:
                    return
                sub._pending_size -= len(msg.data)
                yield msg
        finally:
            self._iterating = False
            self._done.set()

    @property
    def pending(self) -> int:
        return int(self._queue.qsize())

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)
            self._bus._subs.discard(self)

    async def drain(self) -> None:
        """Unsubscribe, then return once the reader has taken every message delivered."""
        if self._ended:
            return
        if self._bus._nc.is_connected:
            try:
                await self._sub._conn._send_unsubscribe(self._sub._id)
                await self._sub._conn.flush()
            except nats.errors.Error as exc:
                log.debug("drain: %r", exc)
        self._sub._closed = True
        self._sub._conn._remove_sub(self._sub._id)
        self._end()
        if self._iterating:
            await self._done.wait()

    async def unsubscribe(self) -> None:
        if self._ended:
            return
        try:
            await self._sub.unsubscribe()
        except nats.errors.Error as exc:
            log.debug("unsubscribe: %r", exc)
        # Calls that arrived but were not taken are dropped: the caller asked to stop now.
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
        self._end()

    async def __aenter__(self) -> _Sub:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.unsubscribe()


class _Replies:
    """One wildcard inbox subscription that routes replies to waiting requests."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox() + "."
        self._waiting: dict[str, Callable[[Msg], None]] = {}
        self._tokens = itertools.count(1)

    async def start(self) -> None:
        await self.nc.subscribe(self.prefix + "*", cb=self._on_reply, pending_msgs_limit=1_000_000)

    async def _on_reply(self, msg: Msg) -> None:
        deliver = self._waiting.get(msg.subject[len(self.prefix) :])
        if deliver is not None:
            deliver(msg)

    def open(self, deliver: Callable[[Msg], None]) -> str:
        token = str(next(self._tokens))
        self._waiting[token] = deliver
        return token

    def close(self, token: str) -> None:
        self._waiting.pop(token, None)


def _is_no_responders(msg: Msg) -> bool:
    return not msg.data and msg.headers is not None and msg.headers.get("Status") == "503"


class NatsBus:
    """A connection to nats-server, with the JetStream resources Motes shares."""

    def __init__(self, nc: Client, config: LatticeConfig) -> None:
        self._nc = nc
        self.config = config
        self._js: JetStreamContext = nc.jetstream(
            timeout=config.api_timeout_s, domain=config.domain or None
        )
        self._replies = _Replies(nc)
        self._kv: dict[str, NatsKV] = {}
        self._objects: dict[str, NatsObjects] = {}
        self._streams: set[str] = set()
        self._subs: set[_Sub] = set()
        self._watchers: list[asyncio.Queue[ConnState]] = []
        self._guards: dict[int, tuple[str, Callable[[Forbidden], None]]] = {}
        self._guard_ids = itertools.count()
        self.principal = config.inbox_prefix.removeprefix("_I.")
        self._refusal = ""

    @staticmethod
    def _as_checked(subject: str) -> str:
        """``subject`` as a hub checks its permission: JetStream's domain-named API (and
        the domain's mapping of bucket writes) mapped to the plain names first."""
        m = _DOMAIN_API.match(subject)
        if m is None:
            return subject
        rest = subject[m.end() :]
        return rest if rest.startswith("$KV.") else "$JS.API." + rest

    def _kv_put_prefix(self, bucket: str) -> str:
        via = self.config.domain if self.config.leaf else ""
        return subjects.kv_subject(bucket, "", via_domain=via)

    # --- refusals ---------------------------------------------------------------------

    def _refused(self, message: str) -> bool:
        """A permission violation the server reported: fail whoever waits on it."""
        m = VIOLATION.search(message)
        if m is None:
            return False
        action, subject = m.group(1), m.group(2)
        err = Forbidden(self.principal or "this connection", f"{action} to", subject)
        hit = False
        said = subject.lower()  # nats-py lowercases the server's message
        for hint, fail in list(self._guards.values()):
            if hint.lower() in said or self._as_checked(hint).lower() in said:
                fail(err)
                hit = True
        if not hit:
            log.warning("%s", err)
        return True

    @contextlib.asynccontextmanager
    async def _op(self, what: str, hint: str, *, cancel: bool = True) -> AsyncIterator[None]:
        """Map nats-py's errors (``mapped``), and fail fast on a refusal (``_guarded``)."""
        async with self._guarded(hint, cancel=cancel):
            with mapped(what):
                yield

    @contextlib.asynccontextmanager
    async def _guarded(self, hint: str, *, cancel: bool = True) -> AsyncIterator[None]:
        """Fail the block with ``Forbidden`` if the server refuses a subject that
        contains ``hint``: at once (cancelling what it waits on, instead of waiting out a
        timeout for an answer that will never come), or with ``cancel=False`` when it
        ends, for a block that must not be cancelled midway (a flush: nats-py then fails
        on the PONG it still expects)."""
        if not self.config.credentials:
            yield
            return
        task = asyncio.current_task()
        assert task is not None
        refused: list[Forbidden] = []

        def fail(err: Forbidden) -> None:
            if not refused:
                refused.append(err)
                if cancel:
                    task.cancel()

        key = next(self._guard_ids)
        self._guards[key] = (hint, fail)
        try:
            yield
        except asyncio.CancelledError:
            if refused and cancel:
                task.uncancel()
                raise refused[0] from None
            raise
        finally:
            self._guards.pop(key, None)
        if refused:
            # A cancel can be swallowed: 3.11's wait_for drops it when what it waits on
            # finished in the same step (a reply right behind the -ERR).
            if cancel and task.cancelling():
                task.uncancel()
            raise refused[0]

    @classmethod
    async def connect(cls, config: LatticeConfig, *, name: str = "motes") -> NatsBus:
        """Connect, failing fast (``TransportError``) when no server answers."""
        if not config.servers:
            raise TransportError("no lattice servers configured")
        holder: list[NatsBus] = []
        refusals: list[str] = []

        async def on_error(exc: Exception) -> None:
            if holder and holder[0]._refused(str(exc)):
                return
            reason = refusal(str(exc))
            if reason is not None:
                refusals.append(reason)
                if holder:
                    holder[0]._refusal = reason
            log.debug("nats: %r", exc)

        def state(s: ConnState) -> Callable[[], Awaitable[None]]:
            async def cb() -> None:
                if holder:
                    holder[0]._changed(s)

            return cb

        options: dict[str, Any] = {
            "name": name,
            "connect_timeout": config.connect_timeout_s,
            "max_reconnect_attempts": config.connect_attempts,
            "reconnect_time_wait": config.reconnect_wait_s,
            "allow_reconnect": True,
            "error_cb": on_error,
            "disconnected_cb": state(ConnState.DISCONNECTED),
            "reconnected_cb": state(ConnState.RECONNECTED),
            "closed_cb": state(ConnState.CLOSED),
            "pending_size": config.pending_bytes,
            "inbox_prefix": config.inbox_prefix,
        }
        if config.credentials:
            options.update(_credential_callbacks(Path(config.credentials)))
        if config.tls_ca:
            options["tls"] = _tls_context(config)
        servers = list(config.servers)
        where = ",".join(servers)
        try:
            nc = await nats.connect(servers, **options)
        except (OSError, TimeoutError, nats.errors.NoServersError) as exc:
            if refusals:
                raise Unauthorized(
                    f"the lattice at {where} refused the connection: {refusals[-1]}"
                ) from None
            raise TransportError(f"cannot reach the lattice at {where}: {exc}") from None
        except nats.errors.Error as exc:
            reason = refusal(str(exc))
            if reason is not None:
                raise Unauthorized(
                    f"the lattice at {where} refused the connection: {reason}"
                ) from None
            raise TransportError(f"cannot connect to {where}: {exc!r}") from None
        # Once connected, a lost server is retried for as long as we run.
        nc.options["max_reconnect_attempts"] = -1
        bus = cls(nc, config)
        holder.append(bus)
        await bus._replies.start()
        return bus

    # --- connection ------------------------------------------------------------------

    @property
    def max_payload(self) -> int:
        return int(self._nc.max_payload)

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    @property
    def closed(self) -> bool:
        return bool(self._nc.is_closed)

    @property
    def refused(self) -> str:
        return self._refusal

    def new_inbox(self) -> str:
        return str(self._nc.new_inbox())

    def _changed(self, state: ConnState) -> None:
        if state is ConnState.CLOSED and not self._refusal:
            # Shut out: the server sends 'User Authentication Revoked' (or 'Expired', or
            # 'Authorization Violation' on a reconnect) and closes the connection; nats-py
            # keeps that as its last error and does not reconnect.
            err = self._nc.last_error
            if isinstance(err, nats.errors.AuthorizationError):
                self._refusal = "its credential was refused"
            elif err is not None:
                self._refusal = refusal(str(err)) or ""
        for q in self._watchers:
            q.put_nowait(state)
        if state is ConnState.CLOSED:
            for sub in list(self._subs):
                sub._end()

    async def status(self) -> AsyncIterator[ConnState]:
        queue: asyncio.Queue[ConnState] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            if self._nc.is_closed:
                yield ConnState.CLOSED
                return
            while True:
                state = await queue.get()
                yield state
                if state is ConnState.CLOSED:
                    return
        finally:
            self._watchers.remove(queue)

    async def close(self) -> None:
        if self._nc.is_closed:
            return
        try:
            await self._nc.drain()
        except (TimeoutError, nats.errors.Error):
            await self._nc.close()
        for sub in list(self._subs):
            sub._end()

    async def flush(self, timeout: float = 10.0) -> None:
        with mapped("flushing"):
            await self._nc.flush(timeout=max(1, round(timeout)))

    # --- core messages -----------------------------------------------------------------

    async def publish(
        self, subject: str, data: bytes, *, reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        if len(data) > self._nc.max_payload:
            raise PayloadTooLarge(f"a message to {subject}", len(data), self.max_payload)
        with mapped(f"publishing to {subject}"):
            await self._nc.publish(subject, data, reply=reply, headers=headers)

    async def subscribe(self, subject: str, *, queue: str = "", pending: int = 65536) -> _Sub:
        sub = None
        try:
            async with self._op(f"subscribing to {subject}", subject, cancel=False):
                sub = await self._nc.subscribe(subject, queue=queue, pending_msgs_limit=pending)
                if self.config.credentials:
                    # A refused subscription is reported once, right away: wait for it
                    # here rather than keep one that will never deliver anything. nats-py
                    # writes a flush's PING straight to the socket, ahead of the SUB still
                    # queued for its flusher task; yielding once lets that task (woken
                    # first) write the SUB, so the PONG comes back behind any -ERR for it.
                    await asyncio.sleep(0)
                    await self._nc.flush()
        except Forbidden:
            if sub is not None:
                self._nc._remove_sub(sub._id)
            raise
        wrapped = _Sub(self, sub)
        self._subs.add(wrapped)
        return wrapped

    async def request(
        self, subject: str, data: bytes, *, timeout: float, headers: dict[str, str] | None = None
    ) -> Msg:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Msg] = loop.create_future()

        def deliver(msg: Msg) -> None:
            if not fut.done():
                fut.set_result(msg)

        token = self._replies.open(deliver)
        timer = loop.call_later(timeout, _expire, fut)
        guard = None
        if self.config.credentials:

            def refuse(err: Forbidden) -> None:
                if not fut.done():
                    fut.set_exception(err)

            guard = next(self._guard_ids)
            self._guards[guard] = (subject, refuse)
        try:
            await self.publish(subject, data, reply=self._replies.prefix + token, headers=headers)
            try:
                msg = await fut
            except TimeoutError:
                raise NoReply(subject, timeout) from None
        finally:
            timer.cancel()
            self._replies.close(token)
            if guard is not None:
                self._guards.pop(guard, None)
        if _is_no_responders(msg):
            raise NoResponders(subject)
        return msg

    async def scatter(
        self, subject: str, data: bytes, *, expected: int | None, timeout: float
    ) -> list[bytes]:
        answers: list[bytes] = []
        done = asyncio.Event()

        def deliver(msg: Msg) -> None:
            if _is_no_responders(msg):
                return
            answers.append(bytes(msg.data))
            if expected is not None and len(answers) >= expected:
                done.set()

        token = self._replies.open(deliver)
        try:
            await self.publish(subject, data, reply=self._replies.prefix + token)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await done.wait()
        finally:
            self._replies.close(token)
        return answers

    # --- JetStream ---------------------------------------------------------------------

    async def kv(self, bucket: BucketSpec) -> NatsKV:
        kv = self._kv.get(bucket.name)
        if kv is None:
            kv = self._kv[bucket.name] = NatsKV(await self._ensure_kv(bucket), bucket.name, self)
        return kv

    async def _ensure_kv(self, spec: BucketSpec) -> KeyValue:
        async with self._op(f"opening bucket {spec.name}", spec.name):
            try:
                return await self._js.key_value(spec.name)
            except nats.js.errors.BucketNotFoundError:
                pass
            config = KeyValueConfig(
                bucket=spec.name,
                history=spec.history,
                ttl=spec.ttl,
                storage=StorageType.FILE,
                replicas=self.config.replicas,
                # Gets by key put the key in the subject: readers can be scoped per key.
                direct=True,
            )
            try:
                return await self._js.create_key_value(config)
            except nats.js.errors.BadRequestError:
                # Another process created it between our look-up and create.
                return await self._js.key_value(spec.name)

    async def objects(self, bucket: BucketSpec) -> NatsObjects:
        store = self._objects.get(bucket.name)
        if store is None:
            async with self._op(f"opening object store {bucket.name}", bucket.name):
                try:
                    raw = await self._js.object_store(bucket.name)
                except nats.js.errors.BucketNotFoundError:
                    config = ObjectStoreConfig(
                        bucket=bucket.name, storage=StorageType.FILE, replicas=self.config.replicas
                    )
                    try:
                        raw = await self._js.create_object_store(bucket.name, config)
                    except nats.js.errors.BadRequestError:
                        raw = await self._js.object_store(bucket.name)
            store = self._objects[bucket.name] = NatsObjects(raw, bucket.name)
        return store

    async def ensure_stream(self, stream: StreamSpec) -> None:
        if stream.name in self._streams:
            return
        config = StreamConfig(
            name=stream.name,
            subjects=list(stream.subjects),
            retention=RetentionPolicy.WORK_QUEUE if stream.work_queue else RetentionPolicy.LIMITS,
            max_bytes=stream.max_bytes,
            max_msgs_per_subject=stream.max_msgs_per_subject,
            duplicate_window=stream.duplicate_window or 120.0,  # nats-server's own default
            max_msg_size=stream.max_msg_size if stream.max_msg_size > 0 else self.max_payload,
            storage=StorageType.FILE,
            num_replicas=self.config.replicas,
        )
        async with self._op(f"opening stream {stream.name}", stream.name):
            try:
                await self._js.stream_info(stream.name)
            except nats.js.errors.NotFoundError:
                try:
                    await self._js.add_stream(config)
                except nats.js.errors.BadRequestError:
                    pass  # another process created it first
        self._streams.add(stream.name)

    async def replicate(self, stream: str, replicas: int) -> None:
        async with self._op(f"replicating {stream}", stream):
            info = await self._js.stream_info(stream)
            if info.config.num_replicas != replicas:
                config = info.config
                config.num_replicas = replicas
                await self._js.update_stream(config)

    async def publish_durable(
        self, subject: str, data: bytes, *, msg_id: str = "", timeout: float = 10.0
    ) -> int:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        if len(data) > self._nc.max_payload:
            raise PayloadTooLarge(f"a message to {subject}", len(data), self.max_payload)
        async with self._op(f"storing a message on {subject}", subject):
            ack = await self._js.publish(subject, data, timeout=timeout, headers=headers)
        return int(ack.seq)

    async def publish_durable_nowait(
        self, subject: str, data: bytes, *, msg_id: str = ""
    ) -> Awaitable[int]:
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        if len(data) > self._nc.max_payload:
            raise PayloadTooLarge(f"a message to {subject}", len(data), self.max_payload)
        async with self._op(f"storing a message on {subject}", subject):
            fut = await self._js.publish_async(subject, data, headers=headers)

        async def acked() -> int:
            async with self._op(f"storing a message on {subject}", subject):
                return int((await fut).seq)

        return acked()

    async def stream_state(self, stream: str, subjects: str = "") -> StreamState | None:
        async with self._op(f"reading stream {stream}", stream):
            try:
                info = await self._js.stream_info(stream, subjects_filter=subjects or None)
            except nats.js.errors.NotFoundError:
                return None
        return StreamState(
            messages=int(info.state.messages), subjects=dict(info.state.subjects or {})
        )

    async def stream_first(self, stream: str, subject: str) -> StoredMsg | None:
        async with self._op(f"reading stream {stream}", stream):
            try:
                msg = await self._js.get_msg(stream, seq=1, next=True, subject=subject)
            except nats.js.errors.NotFoundError:
                return None
        when = msg.time.timestamp() if msg.time is not None else 0.0
        return StoredMsg(
            subject=msg.subject or subject, data=msg.data or b"", seq=msg.seq or 0, time=when
        )

    async def consumer_pending(self, stream: str, durable: str) -> int | None:
        async with self._op(f"reading consumer {durable}", stream):
            try:
                info = await self._js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError:
                return None
        return int(info.num_ack_pending or 0)

    async def pull(
        self,
        stream: StreamSpec,
        *,
        durable: str,
        subject: str,
        ack_wait: float,
        max_ack_pending: int,
    ) -> NatsPull:
        await self.ensure_stream(stream)
        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
            max_ack_pending=max_ack_pending,
            filter_subject=subject,
        )
        async with self._op(f"consuming {subject}", stream.name):
            sub = await self._js.pull_subscribe(
                subject, durable=durable, stream=stream.name, config=config
            )
        return NatsPull(sub, f"taking durable messages on {subject}")

    async def replay(
        self, stream: StreamSpec, subjects: str, *, follow: bool
    ) -> AsyncIterator[StoredMsg]:
        await self.ensure_stream(stream)
        async with self._op(f"reading stream {stream.name}", stream.name):
            sub = await self._js.subscribe(
                subjects, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=None if follow else 0.5)
                except nats.errors.TimeoutError:
                    return
                except nats.errors.Error as exc:
                    raise TransportError(f"reading stream {stream.name}: {exc!r}") from None
                meta = msg.metadata
                yield StoredMsg(
                    subject=msg.subject,
                    data=bytes(msg.data),
                    seq=int(meta.sequence.stream),
                    time=meta.timestamp.timestamp(),
                    pending=int(meta.num_pending),
                )
                if not follow and meta.num_pending == 0:
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


def _expire(fut: asyncio.Future[Msg]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError())


def _tls_context(config: LatticeConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.tls_ca)
    if config.tls_cert:
        ctx.load_cert_chain(config.tls_cert, config.tls_key or None)
    return ctx
