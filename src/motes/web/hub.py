"""The dashboard's picture of the mesh, kept live from the lattice's own events.

Nothing here polls the nodes. The hub starts from one snapshot (nodes, instances, apps,
placements) and then follows:

- ``mesh.events()``: nodes joining, leaving and declared lost, the scheduler's
  placements with their causes, apps deployed, instance state changes;
- heartbeats (``motes.hb.*``): each node's load, in-flight calls and power;
- the workers' load reports (``motes.node.*.load``): calls served and failed, in flight,
  and the latency histogram, from which calls/s, errors/s, p50 and p99 over the last
  ``WINDOW_S`` seconds are derived;
- the scheduler's reasons (``motes why``), asked again whenever placements change.

Each change marks a *topic* (``nodes``, ``motes``, ``placements``, ...). ``Topics``
tells every open page which topics changed, at most every ``MIN_PUSH_S`` seconds and
within about 0.1 s of the first change, and the page fetches what it shows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..client import Mesh
from ..client.events import (
    AppDeployed,
    AppRemoved,
    InstanceChanged,
    MeshEvent,
    NodeJoined,
    NodeLeft,
    NodeLost,
    Placed,
)
from ..errors import BadMessage, IntegrityError, MotesError
from ..identity.records import open_assignment
from ..wire import resources, subjects
from ..wire.bus import Subscription
from ..wire.codec import decode
from ..wire.messages import (
    LATENCY_BUCKETS,
    AppRecord,
    Heartbeat,
    InstanceStatus,
    Load,
    NodeAssignment,
    NodeRecord,
    Power,
    WhyReply,
)
from .topics import Topics

__all__ = ["WINDOW_S", "Hub", "percentile"]

log = logging.getLogger(__name__)

WINDOW_S = 10.0
"""Rates and latency percentiles are over this many seconds."""
_DECISIONS = 200


@dataclass(slots=True)
class NodeView:
    record: NodeRecord
    state: str = "starting"
    leader: bool = False
    load: Load = field(default_factory=Load)
    power: Power = field(default_factory=Power)
    heard: float = 0.0
    """Monotonic time of its last heartbeat (0: none yet)."""
    since: float = field(default_factory=time.time)
    """When it entered its current state."""


@dataclass(slots=True)
class _Sample:
    at: float
    served: int
    failed: int
    latency: dict[int, int]


@dataclass(slots=True)
class InstView:
    iid: str
    app: str
    mote: str
    digest: str
    node: str
    state: str = "starting"
    pid: int = 0
    inflight: int = 0
    queued: int = 0
    served: int = 0
    failed: int = 0
    restarts: int = 0
    detail: str = ""
    cause: str = ""
    """The scheduler event that placed it here."""
    placed_at: float = field(default_factory=time.time)
    samples: deque[_Sample] = field(default_factory=lambda: deque(maxlen=64))

    def observe(self, status: InstanceStatus, now: float) -> None:
        self.pid = status.pid or self.pid
        self.inflight = status.inflight
        self.queued = max(0, status.queued)
        self.served = status.served
        self.failed = status.failed
        self.samples.append(_Sample(now, status.served, status.failed, dict(status.latency)))
        while len(self.samples) > 2 and self.samples[1].at < now - WINDOW_S:
            self.samples.popleft()  # keep one sample before the window as its baseline


@dataclass(frozen=True, slots=True)
class Rates:
    calls_s: float = 0.0
    errors_s: float = 0.0
    latency: dict[int, int] = field(default_factory=dict)
    """Calls in the window, by latency bucket."""
    since_start: dict[int, int] = field(default_factory=dict)


def rates(inst: InstView, now: float) -> Rates:
    """Calls/s, errors/s and the latency histogram over the last ``WINDOW_S`` seconds."""
    samples = inst.samples
    if not samples:
        return Rates()
    last = samples[-1]
    base = next((s for s in reversed(samples) if s.at <= now - WINDOW_S), samples[0])
    span = max(now - base.at, 1e-3)
    if base is last:
        return Rates(since_start=last.latency)
    window = {
        b: n - base.latency.get(b, 0) for b, n in last.latency.items() if n > base.latency.get(b, 0)
    }
    return Rates(
        calls_s=(last.served - base.served) / span,
        errors_s=(last.failed - base.failed) / span,
        latency=window,
        since_start=last.latency,
    )


def percentile(hist: dict[int, int], p: float) -> float | None:
    """The ``p``-th percentile (0-100) of a latency histogram, in milliseconds."""
    total = sum(hist.values())
    if total == 0:
        return None
    rank = total * p / 100.0
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(2 ** ((bucket + 0.5) / LATENCY_BUCKETS) / 1000.0, 3)  # us -> ms
    return None


def merge(hists: Iterable[dict[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for h in hists:
        for b, n in h.items():
            out[b] = out.get(b, 0) + n
    return out


class Hub:
    """The live state. ``run()`` follows the mesh until cancelled."""

    def __init__(self, mesh: Mesh, topics: Topics) -> None:
        self.mesh = mesh
        self.topics = topics
        self.timing = mesh.timing
        self.nodes: dict[str, NodeView] = {}
        self.instances: dict[str, InstView] = {}
        self.apps: dict[str, AppRecord] = {}
        self.why: dict[str, WhyReply] = {}
        self.decisions: deque[dict[str, Any]] = deque(maxlen=_DECISIONS)
        self.ready = asyncio.Event()
        self._why_due = asyncio.Event()
        self._nodes_due = asyncio.Event()

    async def run(self) -> None:
        mesh = self.mesh
        async with mesh.events() as events:
            heartbeats = await mesh.bus.subscribe(subjects.HEARTBEATS)
            loads = await mesh.bus.subscribe(subjects.INSTANCE_LOAD_ALL)
            try:
                await self._snapshot()
                self.ready.set()
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._follow_events(events))
                    tg.create_task(self._follow_heartbeats(heartbeats))
                    tg.create_task(self._follow_loads(loads))
                    tg.create_task(self._refresh_why())
                    tg.create_task(self._refresh_nodes())
                    tg.create_task(self._tick())
            finally:
                await heartbeats.unsubscribe()
                await loads.unsubscribe()

    # --- the snapshot ------------------------------------------------------------------

    async def _snapshot(self) -> None:
        mesh = self.mesh
        for status in await mesh.ops.nodes():
            self.nodes[status.record.id] = NodeView(
                record=status.record, state=status.state, leader=status.leader, load=status.load
            )
        self.apps = {a.name: a for a in await mesh.apps.list()}
        place = await (await mesh.bus.kv(resources.PLACE)).items()
        for key, entry in place.items():
            try:
                self._assign(open_assignment(entry.value or b"")[0], key)
            except IntegrityError:
                continue
        now = time.monotonic()
        for istat in await mesh.ops.ps():
            found = self.instances.get(istat.iid)
            if found is not None:
                found.state = istat.state
                found.restarts = istat.restarts
                found.detail = istat.detail
                found.observe(istat, now)
        self._why_due.set()

    # --- following ---------------------------------------------------------------------

    async def _follow_events(self, events: Any) -> None:
        async for event in events:
            self.apply(event)

    def apply(self, event: MeshEvent) -> None:
        """One event from ``mesh.events()`` into the picture."""
        if isinstance(event, NodeJoined):
            view = self.nodes.get(event.node)
            if view is None:
                self.nodes[event.node] = NodeView(record=event.record)
            else:
                view.record = event.record
                self._set_state(view, "starting")
            self._nodes_due.set()
            self._why_due.set()
            self.topics.mark("nodes", "placements")
        elif isinstance(event, NodeLeft | NodeLost):
            view = self.nodes.get(event.node)
            if view is not None:
                self._set_state(view, "lost" if isinstance(event, NodeLost) else "left")
                view.leader = False
            gone = "lost" if isinstance(event, NodeLost) else "left"
            for inst in self.instances.values():
                if inst.node == event.node:
                    inst.state = gone
            if isinstance(event, NodeLost):
                self._decide(
                    "node_lost", event.node, event.cause, f"declared {self._name(event.node)} lost"
                )
            self._nodes_due.set()
            self._why_due.set()
            self.topics.mark("nodes", "motes", "placements")
        elif isinstance(event, Placed):
            added = self._assign(
                NodeAssignment(
                    node=event.node, epoch=0, instances=event.instances, cause=event.cause
                ),
                event.node,
            )
            what = ", ".join(f"{i.app}.{i.mote}" for i in added) or "no new instance"
            self._decide("placed", event.node, event.cause, f"{self._name(event.node)}: {what}")
            self._why_due.set()
            self.topics.mark("nodes", "motes", "placements")
        elif isinstance(event, AppDeployed):
            self.apps[event.app] = event.record
            self._why_due.set()
            self.topics.mark("motes", "placements", "queues")
        elif isinstance(event, AppRemoved):
            self.apps.pop(event.app, None)
            self.topics.mark("motes", "placements", "queues")
        elif isinstance(event, InstanceChanged):
            status = event.status
            changed = self.instances.get(status.iid)
            if changed is not None:
                changed.state = status.state
                changed.restarts = status.restarts
                changed.detail = status.detail
                changed.pid = status.pid or changed.pid
                self.topics.mark("motes", "nodes")

    def _assign(self, assignment: NodeAssignment, node: str) -> list[Any]:
        """The node's instances are now exactly these; returns the ones new to it."""
        wanted = {i.iid: i for i in assignment.instances}
        for iid in [i for i, v in self.instances.items() if v.node == node and i not in wanted]:
            del self.instances[iid]
        added = []
        for iid, spec in wanted.items():
            inst = self.instances.get(iid)
            if inst is None or inst.node != node:
                self.instances[iid] = InstView(
                    iid=iid,
                    app=spec.app,
                    mote=spec.mote,
                    digest=spec.digest,
                    node=node,
                    cause=assignment.cause,
                )
                added.append(spec)
        return added

    async def _follow_heartbeats(self, sub: Subscription) -> None:
        async for msg in sub:
            try:
                hb = decode(msg.data, Heartbeat)
            except BadMessage:
                continue
            view = self.nodes.get(hb.node)
            if view is None:
                self._nodes_due.set()  # a node we have not seen join: look it up
                continue
            before = (view.load, view.power, view.state)
            view.load, view.power = hb.load, hb.power
            view.heard = time.monotonic()
            if view.state in ("lost", "silent", "left"):
                self._set_state(view, "ready")
                self._nodes_due.set()
            if (view.load, view.power, view.state) != before:
                self.topics.mark("nodes")

    async def _follow_loads(self, sub: Subscription) -> None:
        async for msg in sub:
            try:
                status = decode(msg.data, InstanceStatus)
            except BadMessage:
                continue
            reported = self.instances.get(status.iid)
            if reported is not None:
                reported.observe(status, time.monotonic())
                self.topics.mark("motes")

    async def _tick(self) -> None:
        """Once a second: nodes gone silent, and rates that fall as calls stop."""
        silent_after = self.timing.failure_timeout_s
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for view in self.nodes.values():
                quiet = view.heard and now - view.heard > silent_after
                if quiet and view.state not in ("lost", "left", "silent"):
                    self._set_state(view, "silent")
                    self.topics.mark("nodes")
            if any(
                i.samples and now - i.samples[-1].at < WINDOW_S + 1.5
                for i in self.instances.values()
            ):
                self.topics.mark("motes")

    async def _refresh_why(self) -> None:
        """The scheduler's reasons for every mote, again after placements change."""
        while True:
            await self._why_due.wait()
            await asyncio.sleep(0.2)  # let a burst of placements land first
            self._why_due.clear()
            names = [f"{a.name}.{m.name}" for a in self.apps.values() for m in a.motes]
            replies = await asyncio.gather(*(self._why(n) for n in names))
            fresh = {n: r for n, r in zip(names, replies, strict=True) if r is not None}
            self.why = {
                n: fresh[n] if n in fresh else self.why[n]
                for n in names
                if n in fresh or n in self.why
            }
            self.topics.mark("placements")
            await asyncio.sleep(0.5)  # at most two rounds a second

    async def _why(self, name: str) -> WhyReply | None:
        try:
            async with asyncio.timeout(5):
                return await self.mesh.ops.why(name)
        except (MotesError, TimeoutError) as exc:
            log.debug("why %s: %s", name, exc)
            return None

    async def _refresh_nodes(self) -> None:
        """States and the leader flag, asked of the nodes after joins and losses."""
        while True:
            await self._nodes_due.wait()
            await asyncio.sleep(0.2)
            self._nodes_due.clear()
            try:
                statuses = await self.mesh.ops.nodes()
            except MotesError as exc:
                log.debug("nodes: %s", exc)
                continue
            for status in statuses:
                view = self.nodes.get(status.record.id)
                if view is None:
                    view = self.nodes[status.record.id] = NodeView(record=status.record)
                view.leader = status.leader
                if status.state != "unreachable":  # silence is for heartbeats to judge
                    self._set_state(view, status.state)
            self.topics.mark("nodes")
            await asyncio.sleep(0.3)

    # --- helpers -----------------------------------------------------------------------

    def _set_state(self, view: NodeView, state: str) -> None:
        if view.state != state:
            view.state = state
            view.since = time.time()

    def _name(self, node: str) -> str:
        view = self.nodes.get(node)
        return view.record.name if view is not None else node

    def _decide(self, kind: str, node: str, cause: str, summary: str) -> None:
        self.decisions.appendleft(
            {"at": time.time(), "kind": kind, "node": node, "cause": cause, "summary": summary}
        )

    def name_of(self, node: str) -> str:
        return self._name(node)
