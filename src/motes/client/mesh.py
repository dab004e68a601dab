"""``motes.connect()`` and ``Mesh``: calls, map, actors, deploy and mesh queries.

A call is one NATS request to the mote's subject; the worker that takes it (one of a queue
group) replies directly, so a call crosses the lattice exactly twice. When nobody listens
the server says so at once (no responders): the client then asks what is wrong, so the
caller gets UnknownMote (not deployed) or, after holding the call while an instance
starts, NoInstance; never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.js.api import DeliverPolicy

from ..app import App, build_bundle, load_app_file
from ..config import Timing, read_mesh_file, resolve_home
from ..errors import (
    BadApp,
    BadMessage,
    CallTimeout,
    EncodeError,
    MotesError,
    NoInstance,
    PayloadTooLarge,
    RequestError,
    StartupError,
    TransportError,
    UnknownMote,
)
from ..identity.keys import fingerprint
from ..ids import MoteRef
from ..runtime.actors import shard_of
from ..store.caps import parse_cap
from ..store.client import StoreClient
from ..wire import subjects
from ..wire.bus import Lattice, scatter
from ..wire.codec import batch_results, decode, decode_reply, encode, encode_request, raise_for
from ..wire.messages import (
    ActorCall,
    AppRecord,
    Call,
    Err,
    FlowDef,
    InstanceStatus,
    Load,
    LogBatch,
    MoteQuery,
    MoteSpec,
    NodeRecord,
    NodeStatus,
    Ok,
    WhyReply,
)
from ._items import aiter_of, item_result
from ._replies import NoResponders, Replies, ReplyTimeout
from .durable import CallHandle, Durable, Flow, QueueStat

__all__ = ["ActorRef", "CallHandle", "Flow", "Mesh", "QueueStat", "connect"]

log = logging.getLogger(__name__)

_BATCH_BYTES = 256 * 1024
_BATCH_ITEMS = 512
_raw_encoder = msgspec.msgpack.Encoder()


class _RawBatch(msgspec.Struct, array_like=True, tag="b1"):
    """Encodes exactly like ``Batch``, from items already encoded one by one."""

    items: list[msgspec.Raw]
    timeout_ms: int


class Mesh:
    """A connection to a mesh. Get one with ``async with motes.connect() as mesh``."""

    def __init__(
        self,
        lattice: Lattice,
        timing: Timing,
        cache_dir: Path | None = None,
        node: tuple[str, Path] | None = None,
    ) -> None:
        self.lattice = lattice
        self.timing = timing
        self.store = StoreClient(
            lattice, scatter_s=timing.scatter_s, cache_dir=cache_dir, node=node
        )
        """The mesh's store: ``put``, ``get``, ``open``, ``writer``, ``ls``, ``check``, datasets."""
        self._replies = Replies(lattice.nc)
        self._refs: dict[str, MoteRef] = {}
        self._specs: dict[tuple[str, str], MoteSpec] = {}
        self._durable = Durable(
            lattice,
            call_timeout_s=timing.call_timeout_s,
            spec=self._spec,
            demand=self._demand,
            app=self._app,
        )

    async def _start(self) -> None:
        await self._replies.start()

    async def close(self) -> None:
        await self._replies.stop()
        await self.lattice.close()

    async def __aenter__(self) -> Mesh:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- calls -------------------------------------------------------------------------

    def _ref(self, name: str) -> MoteRef:
        ref = self._refs.get(name)
        if ref is None:
            ref = self._refs[name] = MoteRef.parse(name)
        return ref

    async def call(
        self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call ``app.mote`` with arguments; return its result or raise its typed error."""
        ref = self._ref(name)
        timeout = self.timing.call_timeout_s if timeout is None else timeout
        data = encode_request(
            Call(list(args), kwargs, int(timeout * 1000)), self.lattice.max_payload, name
        )
        msg = await self._request(ref, subjects.call(ref.app, ref.mote), data, timeout)
        reply = decode_reply(msg)
        if isinstance(reply, Ok | Err):
            return raise_for(reply)
        raise BadMessage(f"{name} answered a single call with a batch")

    async def map(
        self,
        name: str,
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        timeout: float | None = None,
        window: int = 16,
        return_exceptions: bool = False,
        durable: bool = False,
    ) -> AsyncIterator[Any]:
        """Call ``app.mote`` once per item, in parallel; yield results in input order.

        Items travel in batches (up to 256 KiB or 512 items a message) and up to
        ``window`` batches are in flight at once, spread over the mote's instances.
        An item's error is raised when its turn comes, unless ``return_exceptions``.
        With ``durable``, every item is a durable call (see ``submit``): all are queued
        first, then results are yielded in input order as they are stored.
        """
        ref = self._ref(name)
        if durable:
            async for r in self._durable.map(ref, items, timeout, return_exceptions):
                yield r
            return
        timeout = self.timing.call_timeout_s if timeout is None else timeout
        limit = self.lattice.max_payload
        pending: deque[asyncio.Task[list[Ok | Err]]] = deque()
        try:
            async for batch in _batches(items, name, limit):
                pending.append(asyncio.ensure_future(self._send_batch(ref, batch, timeout)))
                while len(pending) >= window:
                    for r in await pending.popleft():
                        yield item_result(r, return_exceptions)
            while pending:
                for r in await pending.popleft():
                    yield item_result(r, return_exceptions)
        finally:
            for task in pending:
                task.cancel()

    async def _send_batch(
        self, ref: MoteRef, items: list[msgspec.Raw], timeout: float
    ) -> list[Ok | Err]:
        data = _raw_encoder.encode(_RawBatch(items, int(timeout * 1000)))
        msg = await self._request(ref, subjects.call(ref.app, ref.mote), data, timeout)
        return batch_results(decode_reply(msg), len(items))

    # --- durable calls and flows ------------------------------------------------------

    async def submit(
        self,
        name: str,
        /,
        *args: Any,
        key: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> CallHandle:
        """Queue a durable call to ``app.mote``; ``await handle.result()`` gives its result.

        The call survives crashes: it is redelivered until a result is stored, and runs
        at most once per ``key`` as far as results go (the same key submitted again gets
        the first call's result). ``timeout`` is the call's deadline once it runs.
        """
        ref = self._ref(name)
        return await self._durable.submit(ref, list(args), kwargs, key, timeout)

    def handle(self, name: str, call_id: str) -> CallHandle:
        """The handle of a durable call submitted earlier (here or elsewhere), by its id."""
        return self._durable.handle(self._ref(name), call_id)

    def flow(self, name: str) -> Flow:
        """The flow ``app.flow``: ``await mesh.flow("app.ingest").submit(item)``."""
        return Flow(self._durable, MoteRef.parse(name))

    async def set_flow(self, name: str, stages: list[str]) -> int:
        """Rewire flow ``app.flow`` to ``stages`` at once, no redeploy; returns its revision.

        An item in flight moves on by the new wiring after the stage it is in; if that
        stage is no longer in the flow, it finishes the path it was on.
        """
        return await self._durable.set_flow(MoteRef.parse(name), stages)

    async def flows(self) -> list[FlowDef]:
        """Every flow's current wiring."""
        return await self._durable.flows()

    async def queue(self) -> list[QueueStat]:
        """Durable calls waiting or running, per mote, with the oldest one's age."""
        return await self._durable.queue()

    def actor(self, name: str, key: str) -> ActorRef:
        """A handle on the activation of actor ``app.Actor`` for ``key``."""
        if not isinstance(key, str) or not key:
            raise RequestError(f"actor key must be a non-empty string, not {key!r}")
        return ActorRef(self, self._ref(name), key)

    async def _call_actor(
        self,
        ref: MoteRef,
        key: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        spec = await self._spec(ref)
        if spec.kind != "actor":
            raise RequestError(f"{ref} is a function mote: use mesh.call({str(ref)!r}, ...)")
        timeout = self.timing.call_timeout_s if timeout is None else timeout
        subject = subjects.actor(ref.app, ref.mote, shard_of(key, spec.shards))
        name = f"{ref}.{method}"
        data = encode_request(
            ActorCall(key, method, list(args), kwargs, int(timeout * 1000)),
            self.lattice.max_payload,
            name,
        )
        reply = decode_reply(await self._request(ref, subject, data, timeout))
        if isinstance(reply, Ok | Err):
            return raise_for(reply)
        raise BadMessage(f"{name} answered with a batch")

    async def _request(self, ref: MoteRef, subject: str, data: bytes, timeout: float) -> bytes:
        """Send; on no responders, find out why, hold while an instance starts, retry."""
        deadline = time.monotonic() + timeout
        held = False
        delay = 0.01
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallTimeout(str(ref), timeout)
            try:
                msg = await self._replies.request(subject, data, remaining)
                return bytes(msg.data)
            except ReplyTimeout:
                raise CallTimeout(str(ref), timeout) from None
            except NoResponders:
                pass
            except (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError) as exc:
                raise TransportError(f"call to {ref}: {exc}") from None
            if not held:
                await self._spec(ref, refresh=True)  # raises UnknownMote if not deployed
                await self._demand(ref)
                held = True
                hold_until = min(deadline, time.monotonic() + self.timing.instance_wait_s)
            if time.monotonic() >= hold_until:
                raise NoInstance(
                    str(ref),
                    f"none started within {self.timing.instance_wait_s:g} s; see `motes why {ref}`",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)  # an instance is starting: look again soon

    async def _demand(self, ref: MoteRef) -> None:
        """Tell the scheduler a caller waits for this mote (starts one even with min=0).

        If the scheduler answers that no node can take it, fail now with its reasons.
        """
        query = encode(MoteQuery(app=ref.app, mote=ref.mote))
        try:
            msg = await self._replies.request(subjects.SCHED_DEMAND, query, 3.0)
        except (NoResponders, ReplyTimeout):
            return  # no leader right now; the held call still waits for one
        why = decode(msg.data, WhyReply)
        if why.placed == 0 and why.desired > 0 and why.nodes:
            raise NoInstance(str(ref), "no node can run it: " + "; ".join(why.vetoes()))

    async def _spec(self, ref: MoteRef, *, refresh: bool = False) -> MoteSpec:
        key = (ref.app, ref.mote)
        if refresh or key not in self._specs:
            record = await self._app(ref.app)
            known = [f"{ref.app}.{m.name}" for m in record.motes] if record else None
            spec = next((m for m in record.motes if m.name == ref.mote), None) if record else None
            if spec is None:
                raise UnknownMote(str(ref), known)
            self._specs[key] = spec
        return self._specs[key]

    async def _app(self, name: str) -> AppRecord | None:
        kv = await self.lattice.kv(subjects.KV_APPS)
        try:
            entry = await kv.get(name)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        return decode(entry.value, AppRecord) if entry.value else None

    # --- deploy ------------------------------------------------------------------------

    async def deploy(
        self, app: App | str | os.PathLike[str], *, wait: bool = True, timeout: float | None = None
    ) -> str:
        """Bundle and deploy an app (an ``App`` or a path to its file); return its digest.

        With ``wait`` (the default) returns once every mote has its ``min`` instances ready.
        """
        if not isinstance(app, App):
            app = load_app_file(app)
        bundle = build_bundle(app)
        store = await self.lattice.bundles()
        try:
            await store.get_info(bundle.digest)
        except nats.js.errors.ObjectNotFoundError:
            await store.put(bundle.digest, bundle.data)
        previous = await self._app(app.name)
        record = AppRecord(
            name=app.name,
            digest=bundle.digest,
            module=bundle.module,
            motes=[_reads_as_indexes(spec) for spec in app.specs()],
            requirements=app.requirements,
            flows=app.flows,
            deployed_at=time.time(),
            previous=previous.digest
            if previous and previous.digest != bundle.digest
            else (previous.previous if previous else None),
        )
        kv = await self.lattice.kv(subjects.KV_APPS)
        await kv.put(app.name, encode(record))
        await self._durable.write_flows(record, previous)
        for spec in record.motes:
            self._specs[(app.name, spec.name)] = spec
        if wait:
            await self._wait_placed(record, timeout)
        return bundle.digest

    async def _wait_placed(self, record: AppRecord, timeout: float | None) -> None:
        """Until every mote has ``min`` ready instances of this version.

        A mote that no node can run (every node vetoes it: say it needs a gpu and there is
        none) is not waited for: it stays pending, and ``motes why`` says why.
        """
        timeout = self.timing.start_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        unplaceable: set[str] = set()
        while True:
            insts = [
                i for i in await self.ps() if i.app == record.name and i.digest == record.digest
            ]
            broken = [i for i in insts if i.restarts >= 2 and i.detail]
            if broken:
                raise StartupError(
                    f"{record.name}.{broken[0].mote} cannot start: {broken[0].detail}"
                )
            short = [
                m.name
                for m in record.motes
                if m.name not in unplaceable
                and sum(1 for i in insts if i.mote == m.name and i.state == "ready") < m.min
            ]
            if not short:
                return
            for name in short:
                if not [i for i in insts if i.mote == name] and await self._unplaceable(
                    f"{record.name}.{name}"
                ):
                    unplaceable.add(name)
                    log.info("%s.%s is pending: no node can run it", record.name, name)
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{record.name}: {', '.join(short)} not running after {timeout:g} s; "
                    f"see `motes why {record.name}.{short[0]}`"
                )
            await asyncio.sleep(0.05)

    async def _unplaceable(self, name: str) -> bool:
        try:
            why = await self.why(name)
        except MotesError:
            return False  # no leader yet: keep waiting
        eligible = any(all(v.ok for v in n.verdicts) for n in why.nodes)
        return bool(why.nodes) and why.placed < why.desired and not eligible

    async def rollback(self, app: str, *, wait: bool = True, timeout: float | None = None) -> str:
        """Deploy the app's previous version again (the same surge as an upgrade)."""
        kv = await self.lattice.kv(subjects.KV_APPS)
        try:
            history = await kv.history(app)
        except nats.js.errors.NoKeysError:
            raise UnknownMote(f"{app}.*") from None
        records = [decode(e.value, AppRecord) for e in history if e.value]
        if not records:
            raise UnknownMote(f"{app}.*")
        current = records[-1]
        earlier = next((r for r in reversed(records) if r.digest == current.previous), None)
        if current.previous is None or earlier is None:
            raise RequestError(f"app {app} has no earlier version to roll back to")
        record = msgspec.structs.replace(earlier, deployed_at=time.time(), previous=current.digest)
        await kv.put(app, encode(record))
        for spec in record.motes:
            self._specs[(app, spec.name)] = spec
        if wait:
            await self._wait_placed(record, timeout)
        return record.digest

    # --- owner context -----------------------------------------------------------------

    async def _node_id(self, name_or_id: str) -> str:
        records = await self._node_records()
        for nid, rec in records.items():
            if name_or_id in (nid, rec.name):
                return nid
        known = ", ".join(sorted(r.name for r in records.values()))
        raise RequestError(f"no node named {name_or_id!r} in this mesh (nodes: {known})")

    async def here(self, node: str | None) -> str | None:
        """Tell the mesh the user is at ``node`` (name or id); None: nowhere known.

        Interactive motes move there; batch motes move away. Returns the node id.
        """
        kv = await self.lattice.kv(subjects.KV_CTX)
        if node is None:
            await kv.delete(subjects.PRESENCE_KEY)
            return None
        nid = await self._node_id(node)
        await kv.put(subjects.PRESENCE_KEY, nid.encode())
        return nid

    async def drain(self, node: str, *, drained: bool = True) -> str:
        """Move every instance off ``node`` and place nothing more there (or undo that)."""
        nid = await self._node_id(node)
        kv = await self.lattice.kv(subjects.KV_CTX)
        if drained:
            await kv.put(subjects.drain_key(nid), b"1")
        else:
            await kv.delete(subjects.drain_key(nid))
        return nid

    # --- queries -----------------------------------------------------------------------

    async def apps(self) -> list[AppRecord]:
        records = await self.lattice.kv_values(subjects.KV_APPS, AppRecord)
        return sorted((r for r, _ in records.values()), key=lambda r: r.name)

    async def _node_records(self) -> dict[str, NodeRecord]:
        return {
            k: v
            for k, (v, _) in (await self.lattice.kv_values(subjects.KV_NODES, NodeRecord)).items()
        }

    async def nodes(self) -> list[NodeStatus]:
        """Every node that has joined: live ones as they answer, silent ones as unreachable."""
        records = await self._node_records()
        live = await scatter(
            self.lattice.nc,
            subjects.CTL_NODES,
            b"",
            lambda d: decode(d, NodeStatus),
            expected=len(records),
            timeout=self.timing.scatter_s,
        )
        seen = {s.record.id for s in live}
        gone = [
            NodeStatus(record=r, state="unreachable", load=Load())
            for k, r in records.items()
            if k not in seen
        ]
        return sorted(live + gone, key=lambda s: s.record.name)

    async def ps(self) -> list[InstanceStatus]:
        """Every instance on every live node: mote, version, node, state, in-flight calls."""
        expected = len(await self._node_records())
        answers = await scatter(
            self.lattice.nc,
            subjects.CTL_PS,
            b"",
            lambda d: decode(d, list[InstanceStatus]),
            expected=expected,
            timeout=self.timing.scatter_s,
        )
        return sorted((i for a in answers for i in a), key=lambda i: (i.app, i.mote, i.node, i.iid))

    async def why(self, name: str) -> WhyReply:
        """The scheduler's verdict on every node for this mote, rule by rule.

        While leadership changes hands (up to about two lease times) this waits for the
        new leader rather than failing.
        """
        ref = self._ref(name)
        query = encode(MoteQuery(app=ref.app, mote=ref.mote))
        deadline = time.monotonic() + 2 * self.timing.lease_ttl_s + 1
        while True:
            try:
                msg = await self._replies.request(subjects.SCHED_WHY, query, 5.0)
                break
            except (NoResponders, ReplyTimeout):
                if time.monotonic() > deadline:
                    raise MotesError(
                        "no scheduler leader answered; is the mesh up? (`motes nodes`)"
                    ) from None
                await asyncio.sleep(0.1)
        return decode(msg.data, WhyReply)

    async def logs(
        self, app: str | None = None, mote: str | None = None, *, follow: bool = False
    ) -> AsyncIterator[LogBatch]:
        """Worker output from every node, oldest first; with ``follow``, keep waiting for more."""
        await self.lattice.ensure_log_stream()
        sub = await self.lattice.js.subscribe(
            subjects.log_filter(app, mote), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=None if follow else 0.5)
                except nats.errors.TimeoutError:
                    return
                try:
                    yield decode(msg.data, LogBatch)
                except BadMessage:
                    continue
                if not follow and msg.metadata.num_pending == 0:
                    return
        finally:
            await sub.unsubscribe()


class ActorRef:
    """``await ref.method(*args)`` calls ``method`` on the actor activation for one key."""

    def __init__(self, mesh: Mesh, ref: MoteRef, key: str) -> None:
        self._mesh = mesh
        self._ref = ref
        self._key = key

    def __repr__(self) -> str:
        return f"<actor {self._ref}[{self._key!r}]>"

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        async def invoke(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            return await self._mesh._call_actor(self._ref, self._key, method, args, kwargs, timeout)

        invoke.__name__ = method
        return invoke


async def _batches(
    items: Iterable[Any] | AsyncIterable[Any], name: str, limit: int
) -> AsyncIterator[list[msgspec.Raw]]:
    budget = min(_BATCH_BYTES, limit // 2)
    batch: list[msgspec.Raw] = []
    size = 0
    index = 0
    async for item in aiter_of(items):
        one = _encode_item(item, index, name, limit)
        index += 1
        if batch and (size + len(one) > budget or len(batch) >= _BATCH_ITEMS):
            yield batch
            batch, size = [], 0
        batch.append(msgspec.Raw(one))
        size += len(one)
    if batch:
        yield batch


def _encode_item(item: Any, index: int, name: str, limit: int) -> bytes:
    try:
        data = _raw_encoder.encode([item])
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"item {index}", type(item).__name__, str(exc)) from None
    if len(data) > limit - 64:
        raise PayloadTooLarge(f"item {index} of the map over {name}", len(data), limit)
    return data


def _this_node() -> tuple[str, Path] | None:
    """(id, home) of the node this process runs on: set for motes (``MOTES_NODE_HOME``)."""
    home = os.environ.get("MOTES_NODE_HOME")
    if not home:
        return None
    try:
        public = (Path(home) / "node.pub").read_bytes()
    except OSError:
        return None
    return fingerprint(public), Path(home)


def _reads_as_indexes(spec: MoteSpec) -> MoteSpec:
    """A mote's declared reads as storage indexes: what the scheduler may know of them
    (a read capability in the app record would hand its key to anyone who reads the KV)."""
    if not spec.reads:
        return spec
    indexes = []
    for cap in spec.reads:
        try:
            indexes.append(parse_cap(cap).si_hex)
        except MotesError as exc:
            raise BadApp(f"mote {spec.name}: reads: {exc}") from None
    return msgspec.structs.replace(spec, reads=indexes)


class _Connector:
    """``await connect()`` or ``async with connect() as mesh``."""

    def __init__(
        self,
        url: str | None,
        home: str | os.PathLike[str] | None,
        timing: Timing | None,
        cache: str | os.PathLike[str] | bool,
    ) -> None:
        self.url = url
        self.home = home
        self.timing = timing
        self.cache = cache
        self.mesh: Mesh | None = None

    def _cache_dir(self) -> Path | None:
        if self.cache is False:
            return None
        if self.cache is True:
            env = os.environ.get("MOTES_CACHE")
            node = _this_node()
            if env:
                return Path(env)
            return node[1] / "cache" if node else resolve_home(self.home) / "cache"
        return Path(self.cache)

    async def _open(self) -> Mesh:
        url = self.url or os.environ.get("MOTES_URL")
        if url is None:
            url = str(read_mesh_file(resolve_home(self.home))["url"])
        lattice = await Lattice.connect(url, name="motes client")
        mesh = Mesh(lattice, self.timing or Timing.from_env(), self._cache_dir(), _this_node())
        await mesh._start()
        return mesh

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Mesh:
        self.mesh = await self._open()
        return self.mesh

    async def __aexit__(self, *exc: object) -> None:
        if self.mesh is not None:
            await self.mesh.close()


def connect(
    url: str | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    timing: Timing | None = None,
    cache: str | os.PathLike[str] | bool = True,
) -> _Connector:
    """Connect to a mesh: ``url`` if given, else ``MOTES_URL``, else the local mesh at the
    motes home (``--home``/``MOTES_HOME``/platform data dir) started by ``motes up``.

    Stored data read through this connection is cached in ``cache``: by default
    ``MOTES_CACHE`` (set for motes, to their node's cache), else ``<motes home>/cache``;
    ``False`` reads without a cache."""
    return _Connector(url, home, timing, cache)
