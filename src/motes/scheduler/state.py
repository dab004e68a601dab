"""The scheduler as a pure state machine: ``handle(event) -> [command]``.

No I/O, no clock, no randomness: time arrives in events, and instance ids come from the
leader's epoch (its lease revision, which only grows) and a counter. Every command carries
the id of the event that caused it, so logs and ``motes why`` can explain each move.

Placement is level-triggered: after an event that matters, the whole desired layout is
recomputed from (nodes, apps, current assignments) and only nodes whose list changed get
a new assignment. Instances stay where they are (sticky) unless

- their node is lost, or now fails a placement veto that can change at run time (drain,
  owner context, labels, capabilities): they move;
- their app has a new digest: the new version's instances start beside them, and the old
  ones are dropped once as many new ones are ready as are wanted (a surge upgrade);
- there are more than wanted: the autoscaler lowered the count after an idle period.

How many are wanted: ``min``, raised by the autoscaler to cover the reported work
(in-flight plus queued calls, over ``concurrency`` per instance) up to ``max``, and by a
caller's demand to at least one; back to ``min`` after ``idle`` seconds without work.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..identity.grants import RunTerms, resource_matches
from ..wire.messages import (
    AppRecord,
    CallCost,
    InstanceSpec,
    Load,
    MoteSpec,
    NodeAssignment,
    NodeRecord,
    NodeVerdict,
    Power,
    Verdict,
    WhyReply,
)
from ._plan import Plan, Ranking
from .energy import EnergyBook
from .policy import RULES, STICKY, UNPLANNED, NodeView, Rule, judge, placing_can_raise
from .policy.liveness import liveness

__all__ = [
    "AppDeleted",
    "AppPut",
    "Assign",
    "Demand",
    "DrainSet",
    "Elected",
    "Event",
    "Heartbeat",
    "NodeGone",
    "NodeLost",
    "NodeUp",
    "PresenceSet",
    "SchedulerState",
    "Tick",
    "Trust",
    "TrustSet",
]

# --- events ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Trust:
    """Who owns which node and whose apps each may run (an authenticated mesh)."""

    owners: dict[str, str] = field(default_factory=dict)
    """Admitted node id -> the person who owns it (a revoked node is absent)."""
    runs: dict[str, dict[str, RunTerms]] = field(default_factory=dict)
    """Node id -> person -> the terms of their ``run`` grant there (native, budgets)."""
    deploys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Person -> the app patterns they may deploy: an app record signed by anyone else
    is not placed."""

    def may_deploy(self, person: str, app: str) -> bool:
        return any(resource_matches(p, app) for p in self.deploys.get(person, ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Elected:
    """This scheduler became leader; the snapshot is what the lattice holds right now."""

    now: float
    epoch: int
    nodes: dict[str, NodeRecord]
    apps: dict[str, AppRecord]
    assignments: dict[str, NodeAssignment]
    presence: str | None = None
    drained: frozenset[str] = frozenset()
    seen: dict[str, float] = field(default_factory=dict)
    """When this candidate last heard each node; unheard nodes count from ``now``."""
    signers: dict[str, str] = field(default_factory=dict)
    """App name -> the person who deployed (signed) it."""
    trust: Trust | None = None
    """None: the mesh does not authenticate (the trust rule then allows everything)."""


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
    ready: frozenset[str] = frozenset()
    work: dict[str, int] = field(default_factory=dict)
    power: Power = field(default_factory=Power)
    costs: dict[str, CallCost] = field(default_factory=dict)
    """Per ``app.mote``: what its calls here used since the previous heartbeat."""
    spent: dict[str, str] = field(default_factory=dict)
    """Person -> the budget of theirs this node reports used up (it refuses them)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    now: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AppPut:
    now: float
    record: AppRecord
    signer: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustSet:
    """Principals or grants changed: nodes may now refuse apps they ran (they move)."""

    now: float
    trust: Trust


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


@dataclass(frozen=True, slots=True, kw_only=True)
class PresenceSet:
    """``motes here``: the user is at this node (None: nobody is known to be anywhere)."""

    now: float
    node: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DrainSet:
    """``motes drain NODE``: move everything off it and place nothing more there."""

    now: float
    node: str
    drained: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DataHeld:
    """What a node's store holds and caches, per storage index (its holdings report)."""

    now: float
    node: str
    files: dict[str, int]


Event = (
    Elected
    | NodeUp
    | NodeGone
    | Heartbeat
    | Tick
    | AppPut
    | AppDeleted
    | Demand
    | PresenceSet
    | DrainSet
    | DataHeld
    | TrustSet
)

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

START_GRACE_S = 10.0
"""How long a placed instance that is not ready yet holds back further scale-out."""

MoteKey = tuple[str, str]
Layout = dict[str, list[InstanceSpec]]
"""Node id -> the instances it should run."""


@dataclass(slots=True)
class _Node:
    record: NodeRecord
    last_seen: float
    alive: bool = True
    load: Load = field(default_factory=Load)
    ready: frozenset[str] = frozenset()
    work: dict[str, int] = field(default_factory=dict)
    power: Power = field(default_factory=Power)
    spent: dict[str, str] = field(default_factory=dict)
    back_at: float | None = None
    """When a node declared lost was heard again; it takes no new work for a while."""


class SchedulerState:
    """Everything the leader knows; mutated only by ``handle``."""

    def __init__(self, *, failure_timeout: float) -> None:
        self.failure_timeout = failure_timeout
        self.epoch = 0
        self.nodes: dict[str, _Node] = {}
        self.apps: dict[str, AppRecord] = {}
        self.assigned: Layout = {}
        self.presence: str | None = None
        self.drained: set[str] = set()
        self.held: dict[str, dict[str, int]] = {}
        self.trust: Trust | None = None
        self.signers: dict[str, str] = {}
        """Node id -> storage index -> bytes its store holds or caches of that file."""
        self.scale: dict[MoteKey, int] = {}
        """Instances the autoscaler (or a caller's demand) wants, when above ``min``."""
        self.busy_at: dict[MoteKey, float] = {}
        self.placed_at: dict[str, float] = {}
        """When each instance this leader placed was placed (for the autoscaler)."""
        self.energy = EnergyBook()
        """Power models and measured joules per call (the energy rule's estimates)."""
        self._events = 0
        self._iids = 0
        self._now = 0.0

    # --- the entry point ---------------------------------------------------------------

    def handle(self, event: Event) -> list[Command]:
        self._events += 1
        self._now = event.now
        cause = f"e{self.epoch}.{self._events}"
        commands: list[Command] = []
        match event:
            case Elected():
                self._elect(event)
                cause = f"e{self.epoch}.{self._events}"
            case NodeUp(record=record):
                known = self.nodes.get(record.id)
                if known is None:
                    self.nodes[record.id] = _Node(record, event.now)
                else:  # a record rewritten (or replayed by a watcher): keep what we know
                    known.record = record
                self.energy.node(record.id, record.power_model)
            case NodeGone(node=node):
                self.nodes.pop(node, None)
                self.energy.drop_node(node)
            case Heartbeat():
                if not self._heartbeat(event):
                    return []  # the common case: nothing to decide
            case Tick():
                commands += self._expire(event.now, cause)
                settled = self._end_probation(event.now)
                scaled_in = self._scale_in(event.now)
                if not commands and not scaled_in and not settled:
                    return []
            case AppPut(record=record, signer=signer):
                self.apps[record.name] = record
                self.signers[record.name] = signer
            case AppDeleted(name=name):
                self.apps.pop(name, None)
                self.scale = {k: v for k, v in self.scale.items() if k[0] != name}
                self.energy.drop_app(name)
            case Demand(app=app, mote=mote):
                spec = self._spec(app, mote)
                if spec is None:
                    return []
                self.busy_at[(app, mote)] = event.now
                if self.wanted(self.apps[app], spec) >= 1:
                    return []
                self.scale[(app, mote)] = 1
            case PresenceSet(node=node):
                self.presence = node
            case DataHeld(node=node, files=files):
                self.held[node] = files
                return []  # steers new placements only; nothing running moves for it
            case DrainSet(node=node, drained=drained):
                (self.drained.add if drained else self.drained.discard)(node)
            case TrustSet(trust=trust):
                self.trust = trust
        if self.epoch == 0:
            return []  # not leader yet: remember, decide nothing
        return commands + self._reconcile(cause)

    def _elect(self, ev: Elected) -> None:
        self.epoch = ev.epoch
        self._events = 0
        self._iids = 0
        self.nodes = {
            nid: _Node(rec, min(ev.seen.get(nid, ev.now), ev.now)) for nid, rec in ev.nodes.items()
        }
        for nid, rec in ev.nodes.items():
            self.energy.node(nid, rec.power_model)
        self.apps = dict(ev.apps)
        self.assigned = {nid: list(a.instances) for nid, a in ev.assignments.items()}
        self.presence = ev.presence
        self.drained = set(ev.drained)
        self.signers = dict(ev.signers)
        self.trust = ev.trust
        # Inherited instances count as placed now: one that never gets ready stops holding
        # scale-out back after the start grace, as if this leader had placed it.
        self.placed_at = {i.iid: ev.now for insts in self.assigned.values() for i in insts}
        # Keep what a previous leader scaled to: count what is placed now, per mote.
        placed = Counter(
            (i.app, i.mote)
            for insts in self.assigned.values()
            for i in insts
            if i.app in self.apps and i.digest == self.apps[i.app].digest
        )
        for key, n in placed.items():
            self.scale[key] = n
            self.busy_at[key] = ev.now

    def _heartbeat(self, ev: Heartbeat) -> bool:
        """Record a heartbeat; True if it changes what should run."""
        node = self.nodes.get(ev.node)
        if node is None:
            return False
        changed = (
            not node.alive
            or node.ready != ev.ready
            or node.power != ev.power
            or node.spent != ev.spent
        )
        if not node.alive:
            node.back_at = ev.now  # on probation: a flapping node must not attract work
        node.last_seen = ev.now
        node.alive = True
        node.load = ev.load
        node.ready = ev.ready
        node.power = ev.power
        node.work = ev.work
        self.energy.observe(ev.node, ev.costs)  # steers new placements only
        node.spent = ev.spent
        return self._scale_out(ev.now) or changed

    def _expire(self, now: float, cause: str) -> list[Command]:
        alive = [n for n in self.nodes.values() if n.alive]
        if alive and all(now - n.last_seen > self.failure_timeout for n in alive):
            # Every node silent at once, our own included: we were not listening (this
            # process stalled), which is no evidence against anyone.
            return []
        lost: list[Command] = []
        for nid, node in self.nodes.items():
            silent = now - node.last_seen
            if node.alive and silent > self.failure_timeout:
                node.alive = False
                node.ready = frozenset()
                node.work = {}
                lost.append(NodeLost(node=nid, silent_s=round(silent, 3), cause=cause))
        return lost

    def _end_probation(self, now: float) -> bool:
        ended = False
        for node in self.nodes.values():
            if node.back_at is not None and now - node.back_at >= self.failure_timeout:
                node.back_at = None
                ended = True
        return ended

    # --- autoscaling -------------------------------------------------------------------

    def wanted(self, app: AppRecord, mote: MoteSpec) -> int:
        return min(max(mote.min, self.scale.get((app.name, mote.name), 0)), mote.max)

    def _work(self) -> dict[MoteKey, int]:
        by_iid = {
            iid: n for node in self.nodes.values() if node.alive for iid, n in node.work.items()
        }
        work: dict[MoteKey, int] = defaultdict(int)
        for insts in self.assigned.values():
            for inst in insts:
                work[(inst.app, inst.mote)] += by_iid.get(inst.iid, 0)
        return work

    def _scale_out(self, now: float) -> bool:
        """Raise a mote's count when its work exceeds what its ready instances take.

        Conservative on purpose: not while instances of it are still starting (their
        queues would count twice), and at most doubling per step, so a burst on a small
        machine does not turn into a storm of process starts.
        """
        changed = False
        for key, load in self._work().items():
            if load <= 0:
                continue
            self.busy_at[key] = now
            app, spec = self.apps.get(key[0]), self._spec(*key)
            if app is None or spec is None:
                continue
            if self._starting(app, spec, now):
                continue  # wait for the ones starting: their queues would count twice
            ready = self._ready(app, spec)
            per = max(spec.concurrency, 1)
            if load <= ready * per:
                continue
            now_wanted = self.wanted(app, spec)
            want = min(spec.max, math.ceil(load / per), max(2 * ready, now_wanted + 1))
            if want > now_wanted:
                self.scale[key] = want
                changed = True
        return changed

    def _starting(self, app: AppRecord, spec: MoteSpec, now: float) -> bool:
        """Has the mote an instance placed recently that is not ready yet?

        One that stays unready past the grace (it crashloops, its node is slow) no longer
        holds scaling back.
        """
        for nid, insts in self.assigned.items():
            node = self.nodes.get(nid)
            for inst in insts:
                if _same(inst, app, spec) and not (node and inst.iid in node.ready):
                    if now - self.placed_at.get(inst.iid, now) < START_GRACE_S:
                        return True
        return False

    def _ready(self, app: AppRecord, spec: MoteSpec) -> int:
        """Ready instances of the mote's current version."""
        return sum(
            1
            for nid, insts in self.assigned.items()
            for inst in insts
            if _same(inst, app, spec) and nid in self.nodes and inst.iid in self.nodes[nid].ready
        )

    def _scale_in(self, now: float) -> bool:
        changed = False
        for key in list(self.scale):
            spec = self._spec(*key)
            if spec is None:
                del self.scale[key]
                continue
            if now - self.busy_at.get(key, now) > spec.idle:
                was = self.scale.pop(key)  # back to min
                changed = changed or was > spec.min
        return changed

    def _spec(self, app: str, mote: str) -> MoteSpec | None:
        record = self.apps.get(app)
        return next((m for m in record.motes if m.name == mote), None) if record else None

    # --- placement ---------------------------------------------------------------------

    def _reconcile(self, cause: str) -> list[Command]:
        apps = self._permitted()
        live = {nid for nid, n in self.nodes.items() if n.alive}
        plan = Plan(self.nodes, self._spec)
        previous: dict[MoteKey, list[tuple[str, InstanceSpec]]] = defaultdict(list)
        for nid, instances in self.assigned.items():
            if nid not in live:
                continue
            for inst in instances:
                app = apps.get(inst.app)
                spec = self._spec(inst.app, inst.mote)
                if app is None or spec is None or spec.kind != inst.kind:
                    continue
                if inst.digest != app.digest:
                    # The previous version: judged by the node alone (drained, on probation),
                    # not by the new version's needs, which it was never placed for.
                    if not self._evicted(spec, app, nid, plan, rules=(liveness,)):
                        previous[(inst.app, inst.mote)].append((nid, inst))
                elif not self._evicted(spec, app, nid, plan):
                    plan.add(nid, inst)
        motes = [(a, m) for a in sorted(apps.values(), key=lambda a: a.name) for m in a.motes]
        for app, mote in motes:  # first free what is no longer wanted, so that...
            self._trim(app, mote, plan)
        for app, mote in motes:  # ...every mote can use the room in the same pass
            self._fit(app, mote, plan)
            self._retire_or_keep(app, mote, previous.get((app.name, mote.name), []), plan)
        commands: list[Command] = []
        for nid in sorted(set(plan.instances) | set(self.assigned)):
            new = plan.get(nid)
            if new != self.assigned.get(nid, []):
                assignment = NodeAssignment(node=nid, epoch=self.epoch, instances=new, cause=cause)
                commands.append(Assign(assignment=assignment, cause=cause))
        self.assigned = {
            nid: insts for nid, insts in plan.instances.items() if insts or nid in self.assigned
        }
        live_iids = {i.iid for insts in self.assigned.values() for i in insts}
        self.placed_at = {k: v for k, v in self.placed_at.items() if k in live_iids}
        return commands

    def _permitted(self) -> dict[str, AppRecord]:
        """The apps that may be placed: all of them, or (authenticated) those deployed by
        someone granted ``deploy`` for them."""
        trust = self.trust
        if trust is None:
            return self.apps
        return {n: a for n, a in self.apps.items() if trust.may_deploy(self.signers.get(n, ""), n)}

    def _evicted(
        self,
        mote: MoteSpec,
        app: AppRecord,
        nid: str,
        plan: Plan,
        rules: tuple[Rule, ...] = STICKY,
    ) -> bool:
        """Does the node now fail a veto that can change at run time (drain, presence...)?"""
        view = self._view(nid, mote, app, plan)
        return not all(rule(mote, view).ok for rule in rules)

    def _retire_or_keep(
        self,
        app: AppRecord,
        mote: MoteSpec,
        old: list[tuple[str, InstanceSpec]],
        plan: Plan,
    ) -> None:
        """Keep the previous version serving until enough of the new one is ready."""
        if not old:
            return
        want = self.wanted(app, mote)
        new = [(nid, i) for nid, i in plan.of(app.name, mote.name) if _same(i, app, mote)]
        ready = sum(1 for nid, i in new if i.iid in self.nodes[nid].ready)
        if want == 0 or (new and ready >= min(want, len(new))):
            return  # the new version carries the load: the old instances are dropped
        for nid, inst in old:
            plan.add(nid, inst)

    def _trim(self, app: AppRecord, mote: MoteSpec, plan: Plan) -> None:
        """Drop instances beyond what is wanted, from the most crowded nodes first."""
        mine = [(nid, i) for nid, i in plan.of(app.name, mote.name) if _same(i, app, mote)]
        want = self.wanted(app, mote)
        while len(mine) > want:
            counts = Counter(nid for nid, _ in mine)
            nid, inst = max(mine, key=lambda p: (counts[p[0]], p[1].iid))
            plan.remove(nid, inst)
            mine.remove((nid, inst))

    def _fit(self, app: AppRecord, mote: MoteSpec, plan: Plan) -> None:
        """Place instances until the mote has what is wanted, then shard actors."""
        mine = [(nid, i) for nid, i in plan.of(app.name, mote.name) if _same(i, app, mote)]
        want = self.wanted(app, mote)
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
            plan.add(best, inst)
            mine.append((best, inst))
            self.placed_at[inst.iid] = self._now
        if mote.kind == "actor" and mine:
            self._shard(mote, mine, plan)

    def _shard(
        self,
        mote: MoteSpec,
        mine: list[tuple[str, InstanceSpec]],
        plan: Plan,
    ) -> None:
        """Split the key space's shards evenly over the actor's instances, by iid order."""
        ordered = sorted(mine, key=lambda p: p[1].iid)
        n = len(ordered)
        for index, (nid, inst) in enumerate(ordered):
            shards = [s for s in range(mote.shards) if s % n == index]
            if inst.shards != shards or inst.nshards != mote.shards:
                fresh = msgspec.structs.replace(inst, shards=shards, nshards=mote.shards)
                plan.replace(nid, inst, fresh)

    def _view(
        self, nid: str, mote: MoteSpec, app: AppRecord, plan: Plan, *, fresh: bool = False
    ) -> NodeView:
        """What the rules see of the node for the mote (``fresh``: as if none of the mote's
        instances ran there, which is how a ``Ranking`` judges it)."""
        node = self.nodes[nid]
        labels = node.record.labels
        return NodeView(
            id=nid,
            name=node.record.name,
            inventory=node.record.inventory,
            labels=labels,
            alive=node.alive,
            used=plan.used(nid),
            same_mote=0 if fresh else plan.same(nid, app.name, mote.name),
            instances=plan.count(nid),
            drained=nid in self.drained,
            rejoining=node.back_at is not None,
            present=self.presence == nid,
            presence_known=self.presence is not None,
            on_battery=node.power.on_battery or labels.get("power") == "battery",
            battery_pct=node.power.battery_pct,
            reads_here=self._reads_held(nid, mote),
            reads_most=self._reads_most(mote, plan),
            **self._trust_view(nid, app, plan),
            **self._energy_view(nid, mote, app),
        )

    def _trust_view(self, nid: str, app: AppRecord, plan: Plan) -> dict[str, Any]:
        trust = self.trust
        if trust is None:
            return {}
        signer = self.signers.get(app.name, "")
        return {
            "trust_enforced": True,
            "admitted": nid in trust.owners,
            "owner": trust.owners.get(nid, ""),
            "app_signer": signer,
            "run": trust.runs.get(nid, {}).get(signer),
            "signer_instances": self._signer_instances(nid, signer, plan),
            "budget_spent": self.nodes[nid].spent.get(signer, ""),
        }

    def _energy_view(self, nid: str, mote: MoteSpec, app: AppRecord) -> dict[str, Any]:
        if not mote.energy or self.energy.empty:
            return {}
        key = (app.name, mote.name)
        return {
            "energy": self.energy.estimate(key, nid),
            "energy_least": self.energy.least(key, self._alive),
        }

    def _alive(self, nid: str) -> bool:
        node = self.nodes.get(nid)
        return node is not None and node.alive

    def _signer_instances(self, nid: str, signer: str, plan: Plan) -> int:
        """Instances of ``signer``'s apps on the node, at their apps' current versions
        (one finishing while its new version starts does not count against a budget)."""
        count = 0
        for inst in plan.get(nid):
            app = self.apps.get(inst.app)
            if (
                app is not None
                and inst.digest == app.digest
                and self.signers.get(inst.app) == signer
            ):
                count += 1
        return count

    def _reads_held(self, nid: str, mote: MoteSpec) -> int:
        if not mote.reads:
            return 0
        held = self.held.get(nid, {})
        return sum(held.get(si, 0) for si in mote.reads)

    def _reads_most(self, mote: MoteSpec, plan: Plan) -> int:
        """The most bytes of the mote's reads any node holds: once per pass, not per view."""
        if not mote.reads:
            return 0
        key = tuple(mote.reads)
        if key not in plan.reads_most:
            most = max((self._reads_held(n, mote) for n in self.nodes), default=0)
            plan.reads_most[key] = most
        return plan.reads_most[key]

    def _best_node(self, mote: MoteSpec, plan: Plan, app: AppRecord) -> str | None:
        """The eligible node with the highest total score; ties go to the first by id.

        The same answer as judging every node now, without judging every node each time:
        nodes already running the mote are judged here (their ``same_mote`` counts), the
        others come from the ranking for motes the rules cannot tell from this one, which
        re-judges only the nodes the plan changed since it last looked.
        """
        here = {nid for nid, _ in plan.of(app.name, mote.name)}
        best = self._ranking(mote, app, plan).best(plan, skip=here)
        for nid in here:
            ok, score, _ = judge(mote, self._view(nid, mote, app, plan))
            if ok and (best is None or (-score, plan.rank[nid]) < best[:2]):
                best = (-score, plan.rank[nid], nid, plan.version[nid])
        return best[2] if best else None

    def _ranking(self, mote: MoteSpec, app: AppRecord, plan: Plan) -> Ranking:
        """Rules see a mote through its declaration and its app's deployer (the trust view)
        only, so motes alike in both, but for their names, share one ranking; except that a
        mote with measured energy costs of its own (the energy rule) ranks alone."""
        own = (app.name, mote.name)
        kind = (
            self.signers.get(app.name, ""),
            msgspec.msgpack.encode(msgspec.structs.replace(mote, name="")),
            own if mote.energy and self.energy.knows(own) else None,
        )
        ranking = plan.rankings.get(kind)
        if ranking is None:
            score = self._scorer(mote, app, plan)
            lazy = not placing_can_raise(mote)
            ranking = plan.rankings[kind] = Ranking.build(plan, score, lazy=lazy)
        return ranking

    def _scorer(self, mote: MoteSpec, app: AppRecord, plan: Plan) -> Callable[[str], float | None]:
        """``judge`` on a node's fresh view, with the rules that ignore the plan run once
        per node: the same verdicts, summed in the same order."""
        fixed: dict[str, list[Verdict | None]] = {}

        def score(nid: str) -> float | None:
            known = fixed.get(nid)
            if known is not None and not all(v.ok for v in known if v is not None):
                return None
            view = self._view(nid, mote, app, plan, fresh=True)
            if known is None:
                known = [rule(mote, view) if rule in UNPLANNED else None for rule in RULES]
                fixed[nid] = known
            verdicts = [
                rule(mote, view) if v is None else v for rule, v in zip(RULES, known, strict=True)
            ]
            return sum(v.score for v in verdicts) if all(v.ok for v in verdicts) else None

        return score

    # --- explanation -------------------------------------------------------------------

    def explain(self, app_name: str, mote_name: str) -> WhyReply:
        """Every node's verdict, per rule, for placing one more instance of the mote."""
        qual = f"{app_name}.{mote_name}"
        app = self.apps.get(app_name)
        mote = self._spec(app_name, mote_name)
        if app is None or mote is None:
            return WhyReply(mote=qual, desired=0, placed=0, nodes=[], note="not deployed")
        if app_name not in self._permitted():
            signer = self.signers.get(app_name, "") or "nobody"
            note = f"deployed by {signer}, who holds no `deploy` grant for {app_name}: not placed"
            return WhyReply(mote=qual, desired=0, placed=0, nodes=[], note=note)
        plan = Plan(self.nodes, self._spec)
        for nid, insts in self.assigned.items():
            for inst in insts if nid in self.nodes else ():
                plan.add(nid, inst)
        rows: list[NodeVerdict] = []
        placed = 0
        for nid in sorted(self.nodes, key=lambda n: self.nodes[n].record.name):
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
            note = "min=0 and no work: an instance starts on the first call"
        elif want > mote.min:
            note = f"scaled out to {want} for the reported work (min {mote.min}, max {mote.max})"
        return WhyReply(mote=qual, desired=want, placed=placed, nodes=rows, note=note)


def _same(inst: InstanceSpec, app: AppRecord, mote: MoteSpec) -> bool:
    return inst.app == app.name and inst.mote == mote.name and inst.digest == app.digest
