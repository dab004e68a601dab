"""The scheduler as a pure state machine: ``handle(event) -> [command]``.

No I/O, no clock, no randomness: time arrives in events, and instance ids come from the
leader's epoch (its lease revision, which only grows) and a counter. Every command carries
the id of the event that caused it, so logs and ``motes why`` can explain each move.

Placement is level-triggered: after each event the whole desired layout is recomputed
from (nodes, apps, current assignments) and only the nodes whose list changed get a new
assignment. Current instances are kept where they are (sticky) unless their node is lost,
their app's digest changed, or there are more than wanted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import msgspec

from ..wire.messages import (
    AppRecord,
    InstanceSpec,
    Load,
    MoteSpec,
    NodeAssignment,
    NodeRecord,
    NodeVerdict,
    WhyReply,
)
from .policy import NodeView, judge
from .policy._types import amount

__all__ = [
    "AppDeleted",
    "AppPut",
    "Assign",
    "Demand",
    "Elected",
    "Event",
    "Heartbeat",
    "NodeGone",
    "NodeLost",
    "NodeUp",
    "SchedulerState",
    "Tick",
]

# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Elected:
    """This scheduler became leader; the snapshot is what the lattice holds right now."""

    now: float
    epoch: int
    nodes: dict[str, NodeRecord]
    apps: dict[str, AppRecord]
    assignments: dict[str, NodeAssignment]


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeUp:
    now: float
    record: NodeRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeGone:
    """A node left cleanly (its record was deleted)."""

    now: float
    node: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    now: float
    node: str
    load: Load


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPut:
    now: float
    record: AppRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class AppDeleted:
    now: float
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """A caller found no instance of a mote: start one, even if its ``min`` is 0."""

    now: float
    app: str
    mote: str


Event = Elected | NodeUp | NodeGone | Heartbeat | Tick | AppPut | AppDeleted | Demand

# --- commands --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign:
    """Write this node's full desired instance list."""

    assignment: NodeAssignment
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLost:
    """A node missed heartbeats past the failure timeout (for logs and events)."""

    node: str
    silent_s: float
    cause: str


Command = Assign | NodeLost

# --- state -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Node:
    record: NodeRecord
    last_seen: float
    alive: bool = True
    load: Load = field(default_factory=Load)


class SchedulerState:
    """Everything the leader knows; mutated only by ``handle``."""

    def __init__(self, *, failure_timeout: float) -> None:
        self.failure_timeout = failure_timeout
        self.epoch = 0
        self.nodes: dict[str, _Node] = {}
        self.apps: dict[str, AppRecord] = {}
        self.assigned: dict[str, list[InstanceSpec]] = {}
        self.demand: set[tuple[str, str]] = set()
        self._events = 0
        self._iids = 0

    # --- the entry point ---------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        self._events += 1
        cause = f"e{self.epoch}.{self._events}"
        commands: list[Command] = []
        match event:
            case Elected():
                self._elect(event)
                cause = f"e{self.epoch}.{self._events}"
            case NodeUp(record=record):
                self.nodes[record.id] = _Node(record, event.now)
            case NodeGone(node=node):
                self.nodes.pop(node, None)
            case Heartbeat(node=node):
                known = self.nodes.get(node)
                if known is None:
                    return []
                known.last_seen = event.now
                known.load = event.load
                if known.alive:
                    return []  # the common case: nothing to decide
                known.alive = True
            case Tick():
                commands += self._expire(event.now, cause)
                if not commands:
                    return []
            case AppPut(record=record):
                self.apps[record.name] = record
            case AppDeleted(name=name):
                self.apps.pop(name, None)
                self.demand = {d for d in self.demand if d[0] != name}
            case Demand(app=app, mote=mote):
                if app not in self.apps or not any(m.name == mote for m in self.apps[app].motes):
                    return []
                self.demand.add((app, mote))
        if self.epoch == 0:
            return []  # not leader yet: remember, decide nothing
        return commands + self._reconcile(cause)

    def _elect(self, ev: Elected) -> None:
        self.epoch = ev.epoch
        self._events = 0
        self._iids = 0
        self.nodes = {nid: _Node(rec, ev.now) for nid, rec in ev.nodes.items()}
        self.apps = dict(ev.apps)
        self.assigned = {nid: list(a.instances) for nid, a in ev.assignments.items()}

    def _expire(self, now: float, cause: str) -> list[Command]:
        lost: list[Command] = []
        for nid, node in self.nodes.items():
            silent = now - node.last_seen
            if node.alive and silent > self.failure_timeout:
                node.alive = False
                lost.append(NodeLost(node=nid, silent_s=round(silent, 3), cause=cause))
        return lost

    # --- placement ---------------------------------------------------------------------

    def wanted(self, app: AppRecord, mote: MoteSpec) -> int:
        base = mote.min
        if (app.name, mote.name) in self.demand:
            base = max(base, 1)
        return min(base, mote.max)

    def _reconcile(self, cause: str) -> list[Command]:
        live = {nid for nid, n in self.nodes.items() if n.alive}
        # Keep instances on live nodes whose app and version are still wanted.
        plan: dict[str, list[InstanceSpec]] = {nid: [] for nid in self.nodes}
        for nid, instances in self.assigned.items():
            if nid not in live:
                continue
            for inst in instances:
                app = self.apps.get(inst.app)
                if (
                    app
                    and app.digest == inst.digest
                    and any(m.name == inst.mote for m in app.motes)
                ):
                    plan[nid].append(inst)
        for app in sorted(self.apps.values(), key=lambda a: a.name):
            for mote in app.motes:
                self._fit(app, mote, plan)
        commands: list[Command] = []
        for nid in sorted(set(plan) | set(self.assigned)):
            new = plan.get(nid, [])
            if new != self.assigned.get(nid, []):
                assignment = NodeAssignment(node=nid, epoch=self.epoch, instances=new, cause=cause)
                commands.append(Assign(assignment=assignment, cause=cause))
        self.assigned = {nid: insts for nid, insts in plan.items() if insts or nid in self.assigned}
        return commands

    def _fit(self, app: AppRecord, mote: MoteSpec, plan: dict[str, list[InstanceSpec]]) -> None:
        """Bring the mote's instance count in ``plan`` to what is wanted, then shard actors."""
        mine = [(nid, i) for nid, insts in plan.items() for i in insts if _same(i, app, mote)]
        want = self.wanted(app, mote)
        # Too many: drop from the most crowded nodes first.
        while len(mine) > want:
            counts = Counter(nid for nid, _ in mine)
            nid, inst = max(mine, key=lambda p: (counts[p[0]], p[1].iid))
            plan[nid].remove(inst)
            mine.remove((nid, inst))
        while len(mine) < want:
            best = self._best_node(mote, plan, app)
            if best is None:
                break  # pending: `motes why` says which rule vetoed which node
            self._iids += 1
            inst = InstanceSpec(
                iid=f"i{self.epoch}.{self._iids}",
                app=app.name,
                mote=mote.name,
                digest=app.digest,
                module=app.module,
                kind=mote.kind,
                concurrency=mote.concurrency,
            )
            plan[best].append(inst)
            mine.append((best, inst))
        if mote.kind == "actor" and mine:
            self._shard(mote, mine, plan)

    def _shard(
        self,
        mote: MoteSpec,
        mine: list[tuple[str, InstanceSpec]],
        plan: dict[str, list[InstanceSpec]],
    ) -> None:
        """Split the key space's shards evenly over the actor's instances, by iid order."""
        ordered = sorted(mine, key=lambda p: p[1].iid)
        n = len(ordered)
        for index, (nid, inst) in enumerate(ordered):
            shards = [s for s in range(mote.shards) if s % n == index]
            if inst.shards != shards or inst.nshards != mote.shards:
                fresh = _with_shards(inst, shards, mote.shards)
                plan[nid][plan[nid].index(inst)] = fresh

    def _view(
        self, nid: str, mote: MoteSpec, app: AppRecord, plan: dict[str, list[InstanceSpec]]
    ) -> NodeView:
        node = self.nodes[nid]
        used: dict[str, float] = defaultdict(float)
        same = 0
        specs = {(a.name, m.name): m for a in self.apps.values() for m in a.motes}
        for inst in plan.get(nid, []):
            spec = specs.get((inst.app, inst.mote))
            if spec is not None:
                for res in ("cpu", "memory_mb", "gpu"):
                    used[res] += amount(spec.needs, res) or 0.0
            if inst.app == app.name and inst.mote == mote.name:
                same += 1
        return NodeView(
            id=nid,
            name=node.record.name,
            inventory=node.record.inventory,
            labels=node.record.labels,
            alive=node.alive,
            used=dict(used),
            same_mote=same,
            instances=len(plan.get(nid, [])),
        )

    def _best_node(
        self, mote: MoteSpec, plan: dict[str, list[InstanceSpec]], app: AppRecord
    ) -> str | None:
        best: tuple[float, str] | None = None
        for nid in sorted(self.nodes):
            ok, score, _ = judge(mote, self._view(nid, mote, app, plan))
            if ok and (best is None or score > best[0]):
                best = (score, nid)
        return best[1] if best else None

    # --- explanation -------------------------------------------------------------------

    def explain(self, app_name: str, mote_name: str) -> WhyReply:
        """Every node's verdict, per rule, for placing one more instance of the mote."""
        qual = f"{app_name}.{mote_name}"
        app = self.apps.get(app_name)
        mote = next((m for m in app.motes if m.name == mote_name), None) if app else None
        if app is None or mote is None:
            return WhyReply(mote=qual, desired=0, placed=0, nodes=[], note="not deployed")
        plan = {nid: list(insts) for nid, insts in self.assigned.items()}
        rows: list[NodeVerdict] = []
        placed = 0
        for nid in sorted(self.nodes):
            view = self._view(nid, mote, app, plan)
            _, _, verdicts = judge(mote, view)
            rows.append(
                NodeVerdict(node=nid, name=view.name, placed=view.same_mote, verdicts=verdicts)
            )
            placed += view.same_mote
        want = self.wanted(app, mote)
        note = ""
        if placed < want:
            note = f"{want - placed} instance(s) pending: no node passes every rule"
        elif want == 0:
            note = "min=0 and no demand yet: an instance starts on the first call"
        return WhyReply(mote=qual, desired=want, placed=placed, nodes=rows, note=note)


def _same(inst: InstanceSpec, app: AppRecord, mote: MoteSpec) -> bool:
    return inst.app == app.name and inst.mote == mote.name and inst.digest == app.digest


def _with_shards(inst: InstanceSpec, shards: list[int], nshards: int) -> InstanceSpec:
    return msgspec.structs.replace(inst, shards=shards, nshards=nshards)
