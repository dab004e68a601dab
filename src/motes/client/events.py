"""``Mesh.events()``: what changes in the mesh, as it happens, as one async iterator.

It is fed by the lattice's own records and by the scheduler's decisions, never by
polling: node records joining and leaving (KV ``motes_nodes``), apps deployed and
removed (KV ``motes_apps``), the scheduler leader's commands as it carries them out
(``motes.ev.sched``: a node declared lost, a node's new assignment with its cause), and
instance state changes from every agent (``motes.ev.inst.*``). Events from one source
arrive in the order they happened there; the scheduler's are in the order it decided
them, so a node's loss comes before the placements that follow from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from ..errors import BadMessage, IntegrityError, MotesError
from ..identity.records import open_app, open_node
from ..wire import resources, subjects
from ..wire.bus import Bus, Watch
from ..wire.codec import decode
from ..wire.messages import AppRecord, InstanceSpec, InstanceStatus, NodeRecord, SchedEvent

__all__ = [
    "AppDeployed",
    "AppRemoved",
    "EventFeed",
    "InstanceChanged",
    "MeshEvent",
    "NodeJoined",
    "NodeLeft",
    "NodeLost",
    "Placed",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeJoined:
    node: str
    record: NodeRecord
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLeft:
    """The node withdrew its record (a clean stop)."""

    node: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLost:
    """The scheduler declared the node lost (silent past the failure timeout)."""

    node: str
    cause: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    """The scheduler wrote the node's assignment: everything it should now run."""

    node: str
    instances: list[InstanceSpec]
    cause: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppDeployed:
    app: str
    digest: str
    record: AppRecord
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRemoved:
    app: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class InstanceChanged:
    status: InstanceStatus
    at: float = field(default_factory=time.time)


MeshEvent = NodeJoined | NodeLeft | NodeLost | Placed | AppDeployed | AppRemoved | InstanceChanged

_Put = Callable[[MeshEvent | BaseException], None]


class EventFeed:
    """``async for event in mesh.events()``, or ``async with mesh.events() as feed`` to
    start listening first (then nothing that happens inside the block is missed)."""

    def __init__(self, bus: Bus) -> None:
        self._events = _follow(bus)
        self._started = False

    async def start(self) -> None:
        """Subscribe now: every change from here on is delivered."""
        if not self._started:
            self._started = True
            await anext(self._events)  # _follow yields None once it listens

    def __aiter__(self) -> EventFeed:
        return self

    async def __anext__(self) -> MeshEvent:
        await self.start()
        event = await anext(self._events)
        assert event is not None
        return event

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> EventFeed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _follow(bus: Bus) -> AsyncGenerator[MeshEvent | None, None]:
    """None once listening, then every change. The readers are tasks of its own group."""
    queue: asyncio.Queue[MeshEvent | BaseException] = asyncio.Queue()
    put = queue.put_nowait
    sub = await bus.subscribe(subjects.EVENTS_ALL)
    nodes = await (await bus.kv(resources.NODES)).watch(updates_only=True)
    apps = await (await bus.kv(resources.APPS)).watch(updates_only=True)
    try:
        async with asyncio.TaskGroup() as tg:
            readers = [
                tg.create_task(_guarded(_messages(sub, put), put)),
                tg.create_task(_guarded(_records(nodes, _node_event, put), put)),
                tg.create_task(_guarded(_records(apps, _app_event, put), put)),
            ]
            try:
                yield None
                while True:
                    item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            except GeneratorExit:
                pass  # closed by the consumer: end the readers, and leave the group cleanly
            finally:
                for task in readers:
                    task.cancel()
    finally:
        await nodes.stop()
        await apps.stop()
        await sub.unsubscribe()


async def _guarded(coro: object, put: _Put) -> None:
    """A reader's failure reaches the consumer as an exception, not as a dead feed."""
    try:
        await coro  # type: ignore[misc]
    except MotesError as exc:
        put(exc)


async def _messages(sub: object, put: _Put) -> None:
    async for msg in sub:  # type: ignore[attr-defined]
        try:
            if msg.subject == subjects.EVENTS_SCHED:
                ev = decode(msg.data, SchedEvent)
                if ev.kind == "node_lost":
                    put(NodeLost(node=ev.node, cause=ev.cause))
                elif ev.assignment is not None:
                    put(Placed(node=ev.node, instances=ev.assignment.instances, cause=ev.cause))
            else:
                put(InstanceChanged(status=decode(msg.data, InstanceStatus)))
        except BadMessage as exc:
            log.debug("ignoring an unreadable event on %s: %s", msg.subject, exc)


async def _records(
    watch: Watch, to_event: Callable[[str, bytes | None], MeshEvent], put: _Put
) -> None:
    async for entry in watch:
        try:
            put(to_event(entry.key, entry.value))
        except (BadMessage, IntegrityError) as exc:
            log.debug("ignoring a record %s: %s", entry.key, exc)


def _node_event(key: str, value: bytes | None) -> MeshEvent:
    if value is None:
        return NodeLeft(node=key)
    return NodeJoined(node=key, record=open_node(value))


def _app_event(key: str, value: bytes | None) -> MeshEvent:
    if value is None:
        return AppRemoved(app=key)
    record = open_app(value)[0]
    return AppDeployed(app=key, digest=record.digest, record=record)
