"""The scheduler's I/O shell: win the lease, feed events to the state machine, write commands.

Every node agent runs one; the one holding the ``scheduler`` key of the lease bucket is
leader. The lease bucket's entries expire ``lease_ttl`` after their last write, so a dead
leader's key vanishes and another candidate's create succeeds. The leader's epoch is the
lease revision it won with. It writes node assignments with compare-and-set on the
revision it last saw: if another leader wrote in between, the write fails and this one
steps down instead of fighting.

Each command it executes is also published on ``motes.ev.sched`` (``SchedEvent``), in
order, after its effect is written: what ``Mesh.events()`` reports as node losses and
placements.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..config import Timing
from ..errors import BadMessage, Conflict, IntegrityError, MotesError, RetryableError
from ..identity import KeyKind, SigningKey
from ..identity.grants import RunTerms, run_terms
from ..identity.records import open_app, open_assignment, open_node, seal_assignment
from ..trust.records import read_trust
from ..wire import resources, subjects
from ..wire.bus import Bus, Message, Subscription
from ..wire.codec import decode, encode
from ..wire.lease import Lease, LeaseLost
from ..wire.messages import (
    Heartbeat as HeartbeatMsg,
)
from ..wire.messages import (
    MoteQuery,
    SchedEvent,
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
    Trust,
    TrustSet,
)

__all__ = ["SchedulerService"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class SchedulerService:
    """Campaigns for leadership forever; while leader, runs the placement loop."""

    def __init__(
        self,
        bus: Bus,
        node_id: str,
        timing: Timing,
        clock: Callable[[], float] = time.time,
        *,
        key: SigningKey | None = None,
        mesh_key: bytes | None = None,
    ) -> None:
        """``key`` signs the assignments this candidate writes as leader (its node's key;
        one is made up when none is given, as in tests); ``mesh_key``: the mesh
        authenticates, so placements follow its principals and grants (trust)."""
        self.bus = bus
        self.node_id = node_id
        self.key = key or SigningKey.generate(KeyKind.NODE)
        self.mesh_key = mesh_key
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
        kv = await self.bus.kv(resources.lease(self.timing.lease_ttl_s))
        lease = Lease(kv, subjects.LEASE_KEY, self.node_id, self.timing.lease_ttl_s)
        # Candidates listen to heartbeats too: a new leader then knows who has been
        # silent, and declares a node that died with the old leader lost without
        # waiting a whole failure timeout more.
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._heartbeats(await self.bus.subscribe(subjects.HEARTBEATS)))
            while True:
                epoch = await lease.campaign()
                log.info("scheduler: %s is leader (epoch %d)", self.node_id, epoch)
                self._lease = lease
                try:
                    async with asyncio.TaskGroup() as leading:
                        leading.create_task(lease.hold())
                        leading.create_task(self._lead(epoch))
                except* LeaseLost:
                    log.warning("scheduler: %s lost the lease; campaigning again", self.node_id)
                except* RetryableError as group:
                    # The lattice went away under us: whoever holds the lease once it is
                    # back leads (maybe us again, from the lattice's state).
                    log.warning("scheduler: stepping down: %s", group.exceptions[0])
                    lease.release()
                finally:
                    self.is_leader = False
                    self.state = None

    async def _hold_lease(self) -> None:
        """Renew the lease, proving we still lead; LeaseLost if another node does.
        (Renewals and pre-write checks take turns.)"""
        assert self._lease is not None
        await self._lease.renew()

    async def _snapshot(self, bucket: resources.BucketSpec) -> dict[str, tuple[bytes, int]]:
        kv = await self.bus.kv(bucket)
        return {k: (e.value or b"", e.revision) for k, e in (await kv.items()).items()}

    async def _lead(self, epoch: int) -> None:
        nodes = _opened(await self._snapshot(resources.NODES), open_node)
        opened_apps = _opened(await self._snapshot(resources.APPS), open_app)
        apps = {k: record for k, (record, _) in opened_apps.items()}
        raw = await self._snapshot(resources.PLACE)
        placed = {k: a for k, (a, _) in _opened(raw, open_assignment).items()}
        ctx = await self._context()
        self._revs = {k: rev for k, (_, rev) in raw.items()}
        state = SchedulerState(failure_timeout=self.timing.failure_timeout_s)
        self.state = state
        self._events = asyncio.Queue()
        self.is_leader = True
        await self._execute(
            state.handle(
                Elected(
                    now=self.clock(),
                    epoch=epoch,
                    nodes=nodes,
                    apps=apps,
                    assignments=placed,
                    presence=ctx.get(subjects.PRESENCE_KEY),
                    seen=dict(self._seen),
                    drained=frozenset(
                        k.removeprefix("drain.") for k in ctx if k.startswith("drain.")
                    ),
                    signers={k: signer for k, (_, signer) in opened_apps.items()},
                    trust=await self._trust(),
                )
            )
        )
        why = await self.bus.subscribe(subjects.SCHED_WHY)
        demand = await self.bus.subscribe(subjects.SCHED_DEMAND)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._serve(why, self._on_why))
                tg.create_task(self._serve_each(demand, self._on_demand, tg))
                tg.create_task(self._watch(resources.NODES, self._node_event))
                tg.create_task(self._watch(resources.APPS, self._app_event))
                tg.create_task(self._watch(resources.CTX, self._ctx_event))
                tg.create_task(self._watch(resources.HOLDINGS, self._holdings_event))
                if self.mesh_key is not None:
                    tg.create_task(self._follow_trust())
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
            for sub in (why, demand):
                await sub.unsubscribe()

    async def _serve(self, sub: Subscription, handle: Callable[[Message], Any]) -> None:
        async for msg in sub:
            await handle(msg)

    async def _serve_each(
        self, sub: Subscription, handle: Callable[[Message], Any], tg: asyncio.TaskGroup
    ) -> None:
        """Handle each message in its own task (the handler waits for the state machine)."""
        async for msg in sub:
            tg.create_task(handle(msg))

    async def _execute(self, commands: list[Command]) -> None:
        kv = await self.bus.kv(resources.PLACE)
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
                await self._tell(SchedEvent(kind="node_lost", node=cmd.node, cause=cmd.cause))
            elif isinstance(cmd, Assign):
                a = cmd.assignment
                try:
                    self._revs[a.node] = await kv.update(
                        a.node, seal_assignment(self.key, a), last=self._revs.get(a.node, 0)
                    )
                except Conflict as exc:
                    raise LeaseLost(
                        f"assignment of {a.node} was written by another leader"
                    ) from exc
                log.info(
                    "scheduler: %s runs %s [%s]",
                    a.node,
                    ", ".join(f"{i.app}.{i.mote}/{i.iid}" for i in a.instances) or "nothing",
                    cmd.cause,
                )
                await self._tell(
                    SchedEvent(kind="placed", node=a.node, cause=cmd.cause, assignment=a)
                )

    async def _tell(self, event: SchedEvent) -> None:
        """Publish a decision for ``Mesh.events()``; a lost event never stops the leader."""
        try:
            await self.bus.publish(subjects.EVENTS_SCHED, encode(event))
        except MotesError as exc:
            log.debug("scheduler: event not sent: %s", exc)

    async def _watch(
        self, bucket: resources.BucketSpec, to_event: Callable[[str, bytes | None], Event | None]
    ) -> None:
        kv = await self.bus.kv(bucket)
        async with await kv.watch() as watch:
            async for entry in watch:
                try:
                    event = to_event(entry.key, entry.value)
                except (BadMessage, IntegrityError) as exc:
                    log.warning("scheduler: ignoring %s/%s: %s", bucket.name, entry.key, exc)
                    continue
                if event is not None:
                    self._events.put_nowait(event)

    def _node_event(self, key: str, value: bytes | None) -> Event:
        if value is None:
            return NodeGone(now=self.clock(), node=key)
        return NodeUp(now=self.clock(), record=open_node(value))

    async def _context(self) -> dict[str, str]:
        raw = await self._snapshot(resources.CTX)
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
        record, signer = open_app(value)
        return AppPut(now=self.clock(), record=record, signer=signer)

    async def _trust(self) -> Trust | None:
        """Who owns which node, who may run and deploy what (None: no authentication)."""
        if self.mesh_key is None:
            return None
        view = await read_trust(self.bus, self.mesh_key)
        owners = {
            p.id: p.owner for p in view.principals.values() if p.kind == "node" and not p.revoked_at
        }
        people: set[str] = set()
        deploys: dict[str, list[str]] = {}
        for g in view.grants:
            if g.action == "run":
                people.add(g.principal)
            elif g.action in ("deploy", "admin"):
                deploys.setdefault(g.principal, []).append(
                    "*" if g.action == "admin" else g.resource
                )
        runs: dict[str, dict[str, RunTerms]] = {}
        for node in owners:
            for person in people:
                terms = run_terms(view.grants, person, node)
                if terms is not None:
                    runs.setdefault(node, {})[person] = terms
        return Trust(
            owners=owners,
            runs=runs,
            deploys={k: tuple(v) for k, v in deploys.items()},
        )

    async def _follow_trust(self) -> None:
        """Any change to principals or grants: read them again, and re-place."""
        changed = asyncio.Event()

        async def watch(bucket: resources.BucketSpec) -> None:
            kv = await self.bus.kv(bucket)
            async with await kv.watch(updates_only=True) as w:
                async for _ in w:
                    changed.set()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(watch(resources.PRINCIPALS))
            tg.create_task(watch(resources.GRANTS))
            while True:
                await changed.wait()
                changed.clear()
                trust = await self._trust()
                if trust is not None:
                    self._events.put_nowait(TrustSet(now=self.clock(), trust=trust))

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.timing.heartbeat_s)
            self._events.put_nowait(Tick(now=self.clock()))

    async def _heartbeats(self, sub: Subscription) -> None:
        async for msg in sub:
            self._on_heartbeat(msg)

    def _on_heartbeat(self, msg: Message) -> None:
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
                costs=hb.costs,
                spent=hb.spent,
            )
        )

    async def _on_why(self, msg: Message) -> None:
        if self.state is None or not msg.reply:
            return
        try:
            q = decode(msg.data, MoteQuery)
        except BadMessage:
            return
        await self.bus.publish(msg.reply, encode(self.state.explain(q.app, q.mote)))

    async def _on_demand(self, msg: Message) -> None:
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
            await self.bus.publish(msg.reply, encode(self.state.explain(q.app, q.mote)))


def _opened(raw: dict[str, tuple[bytes, int]], opener: Callable[[bytes], T]) -> dict[str, T]:
    """The records that verify; the rest are logged and left out."""
    out: dict[str, T] = {}
    for key, (value, _) in raw.items():
        try:
            out[key] = opener(value)
        except (BadMessage, IntegrityError) as exc:
            log.warning("scheduler: ignoring %s: %s", key, exc)
    return out


def _describe(event: Event) -> str:
    """A short, log-friendly account of an event (without bulky snapshots)."""
    name = type(event).__name__
    if isinstance(event, Elected):
        return f"{name}(epoch={event.epoch}, nodes={len(event.nodes)}, apps={len(event.apps)})"
    if isinstance(event, NodeUp | AppPut):
        return f"{name}({event.record.name})"
    fields = {k: getattr(event, k) for k in event.__slots__ if k not in ("load", "now")}
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"
