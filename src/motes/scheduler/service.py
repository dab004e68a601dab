"""The scheduler's I/O shell: win the lease, feed events to the state machine, write commands.

Every node agent runs one; the one holding the ``scheduler`` key of the lease bucket is
leader. The lease bucket's entries expire ``lease_ttl`` after their last write, so a dead
leader's key vanishes and another candidate's create succeeds. The leader's epoch is the
lease revision it won with. It writes node assignments with compare-and-set on the
revision it last saw: if another leader wrote in between, the write fails and this one
steps down instead of fighting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from ..config import Timing
from ..errors import BadMessage
from ..wire import subjects
from ..wire.bus import Lattice
from ..wire.codec import decode, encode
from ..wire.lease import Lease, LeaseLost
from ..wire.messages import (
    AppRecord,
    MoteQuery,
    NodeAssignment,
    NodeRecord,
)
from ..wire.messages import (
    Heartbeat as HeartbeatMsg,
)
from ..wire.store import Holdings
from .state import (
    AppDeleted,
    AppPut,
    Assign,
    Command,
    DataHeld,
    Demand,
    DrainSet,
    Elected,
    Event,
    Heartbeat,
    NodeGone,
    NodeLost,
    NodeUp,
    PresenceSet,
    SchedulerState,
    Tick,
)

__all__ = ["SchedulerService"]

log = logging.getLogger(__name__)


class SchedulerService:
    """Campaigns for leadership forever; while leader, runs the placement loop."""

    def __init__(
        self, lattice: Lattice, node_id: str, timing: Timing, clock: Callable[[], float] = time.time
    ) -> None:
        self.lattice = lattice
        self.node_id = node_id
        self.timing = timing
        self.clock = clock
        self.is_leader = False
        self.state: SchedulerState | None = None
        self._revs: dict[str, int] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._handled: dict[int, asyncio.Future[None]] = {}
        self._lease: Lease | None = None
        self._seen: dict[str, float] = {}
        """When each node was last heard, kept while not leading too."""

    async def run(self) -> None:
        kv = await self.lattice.lease_kv(self.timing.lease_ttl_s)
        lease = Lease(kv, subjects.LEASE_KEY, self.node_id)
        # Candidates listen to heartbeats too: a new leader then knows who has been
        # silent, and declares a node that died with the old leader lost without
        # waiting a whole failure timeout more.
        await self.lattice.nc.subscribe(subjects.HEARTBEATS, cb=self._on_heartbeat)
        while True:
            epoch = await self._campaign(lease)
            log.info("scheduler: %s is leader (epoch %d)", self.node_id, epoch)
            self._lease = lease
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._renew())
                    tg.create_task(self._lead(epoch))
            except* LeaseLost:
                log.warning("scheduler: %s lost the lease; campaigning again", self.node_id)
            finally:
                self.is_leader = False
                self.state = None

    async def _campaign(self, lease: Lease) -> int:
        while True:
            try:
                if await lease.acquire():
                    return lease.revision
            except (
                nats.errors.TimeoutError,
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionReconnectingError,
            ):
                pass
            await asyncio.sleep(self.timing.lease_ttl_s / 4)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.timing.lease_ttl_s / 4)
            try:
                await self._hold_lease()
            except nats.errors.TimeoutError:
                continue  # the server may still hold our lease; the next renew tells

    async def _hold_lease(self) -> None:
        """Renew the lease, proving we still lead; LeaseLost if another node does.
        (Renewals and pre-write checks take turns.)"""
        assert self._lease is not None
        await self._lease.renew()

    async def _lead(self, epoch: int) -> None:
        nodes = await self.lattice.kv_values(subjects.KV_NODES, NodeRecord)
        apps = await self.lattice.kv_values(subjects.KV_APPS, AppRecord)
        placed = await self.lattice.kv_values(subjects.KV_PLACE, NodeAssignment)
        ctx = await self._context()
        self._revs = {k: rev for k, (_, rev) in placed.items()}
        state = SchedulerState(failure_timeout=self.timing.failure_timeout_s)
        self.state = state
        self._events = asyncio.Queue()
        self.is_leader = True
        await self._execute(
            state.handle(
                Elected(
                    now=self.clock(),
                    epoch=epoch,
                    nodes={k: v for k, (v, _) in nodes.items()},
                    apps={k: v for k, (v, _) in apps.items()},
                    assignments={k: v for k, (v, _) in placed.items()},
                    presence=ctx.get(subjects.PRESENCE_KEY),
                    seen=dict(self._seen),
                    drained=frozenset(
                        k.removeprefix("drain.") for k in ctx if k.startswith("drain.")
                    ),
                )
            )
        )
        nc = self.lattice.nc
        subs = [
            await nc.subscribe(subjects.SCHED_WHY, cb=self._on_why),
            await nc.subscribe(subjects.SCHED_DEMAND, cb=self._on_demand),
        ]
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch(subjects.KV_NODES, self._node_event))
                tg.create_task(self._watch(subjects.KV_APPS, self._app_event))
                tg.create_task(self._watch(subjects.KV_CTX, self._ctx_event))
                tg.create_task(self._watch(subjects.KV_HOLDINGS, self._holdings_event))
                tg.create_task(self._ticks())
                while True:
                    event = await self._events.get()
                    try:
                        commands = state.handle(event)
                    except Exception:  # a bad record must not take the scheduler down
                        log.exception("scheduler: could not handle %r; skipping it", event)
                        commands = []
                    if commands:  # name the event each command's cause id refers to
                        log.info("scheduler: %s <- %s", commands[0].cause, _describe(event))
                    await self._execute(commands)
                    done = self._handled.pop(id(event), None)
                    if done is not None and not done.done():
                        done.set_result(None)
        finally:
            for sub in subs:
                await sub.unsubscribe()

    async def _execute(self, commands: list[Command]) -> None:
        kv = await self.lattice.kv(subjects.KV_PLACE)
        if any(isinstance(c, Assign) for c in commands):
            # A leader that stalled (a frozen laptop) may wake up deposed: check before
            # writing, so its stale decisions never reach a node key the new leader
            # has not written yet (those it has written, compare-and-set protects).
            await self._hold_lease()
        for cmd in commands:
            if isinstance(cmd, NodeLost):
                log.warning(
                    "scheduler: node %s lost (silent %.2f s) [%s]",
                    cmd.node,
                    cmd.silent_s,
                    cmd.cause,
                )
            elif isinstance(cmd, Assign):
                a = cmd.assignment
                try:
                    self._revs[a.node] = await kv.update(
                        a.node, encode(a), last=self._revs.get(a.node, 0)
                    )
                except nats.js.errors.KeyWrongLastSequenceError as exc:
                    raise LeaseLost(
                        f"assignment of {a.node} was written by another leader"
                    ) from exc
                log.info(
                    "scheduler: %s runs %s [%s]",
                    a.node,
                    ", ".join(f"{i.app}.{i.mote}/{i.iid}" for i in a.instances) or "nothing",
                    cmd.cause,
                )

    async def _watch(
        self, bucket: str, to_event: Callable[[str, bytes | None], Event | None]
    ) -> None:
        kv = await self.lattice.kv(bucket)
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                value = None if entry.operation in ("DEL", "PURGE") else entry.value
                try:
                    event = to_event(entry.key, value)
                except BadMessage as exc:
                    log.warning("scheduler: ignoring %s/%s: %s", bucket, entry.key, exc)
                    continue
                if event is not None:
                    self._events.put_nowait(event)
        finally:
            await watcher.stop()

    def _node_event(self, key: str, value: bytes | None) -> Event:
        if value is None:
            return NodeGone(now=self.clock(), node=key)
        return NodeUp(now=self.clock(), record=decode(value, NodeRecord))

    async def _context(self) -> dict[str, str]:
        raw = await self.lattice.kv_raw(subjects.KV_CTX)
        return {k: v.decode() for k, (v, _) in raw.items()}

    def _ctx_event(self, key: str, value: bytes | None) -> Event | None:
        if key == subjects.PRESENCE_KEY:
            return PresenceSet(now=self.clock(), node=value.decode() if value else None)
        if key.startswith("drain."):
            node = key.removeprefix("drain.")
            return DrainSet(now=self.clock(), node=node, drained=value is not None)
        return None

    def _holdings_event(self, key: str, value: bytes | None) -> Event:
        files = decode(value, Holdings).files if value else {}
        return DataHeld(now=self.clock(), node=key, files=files)

    def _app_event(self, key: str, value: bytes | None) -> Event:
        if value is None:
            return AppDeleted(now=self.clock(), name=key)
        return AppPut(now=self.clock(), record=decode(value, AppRecord))

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.timing.heartbeat_s)
            self._events.put_nowait(Tick(now=self.clock()))

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            hb = decode(msg.data, HeartbeatMsg)
        except BadMessage:
            return
        self._seen[hb.node] = self.clock()
        if not self.is_leader:
            return
        self._events.put_nowait(
            Heartbeat(
                now=self.clock(),
                node=hb.node,
                load=hb.load,
                ready=frozenset(hb.ready),
                work=hb.work,
                power=hb.power,
            )
        )

    async def _on_why(self, msg: Msg) -> None:
        if self.state is None or not msg.reply:
            return
        try:
            q = decode(msg.data, MoteQuery)
        except BadMessage:
            return
        await self.lattice.nc.publish(msg.reply, encode(self.state.explain(q.app, q.mote)))

    async def _on_demand(self, msg: Msg) -> None:
        """Queue the demand; once placed (or found unplaceable) answer with ``explain``."""
        try:
            q = decode(msg.data, MoteQuery)
        except BadMessage:
            return
        event = Demand(now=self.clock(), app=q.app, mote=q.mote)
        done = self._handled[id(event)] = asyncio.get_running_loop().create_future()
        self._events.put_nowait(event)
        try:
            async with asyncio.timeout(2.0):
                await done
        except TimeoutError:
            self._handled.pop(id(event), None)
            return
        if msg.reply and self.state is not None:
            await self.lattice.nc.publish(msg.reply, encode(self.state.explain(q.app, q.mote)))


def _describe(event: Event) -> str:
    """A short, log-friendly account of an event (without bulky snapshots)."""
    name = type(event).__name__
    if isinstance(event, Elected):
        return f"{name}(epoch={event.epoch}, nodes={len(event.nodes)}, apps={len(event.apps)})"
    if isinstance(event, NodeUp | AppPut):
        return f"{name}({event.record.name})"
    fields = {k: getattr(event, k) for k in event.__slots__ if k not in ("load", "now")}
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"
