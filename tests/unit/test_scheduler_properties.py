"""Invariants of the scheduler under random histories of nodes and apps.

Nodes join, leave, heartbeat (reporting ready instances, work and power) or go silent; apps
are deployed, redeployed (a surge upgrade) and removed; callers demand lazy motes; the
user moves (``motes here``), nodes are drained and undrained, and leadership changes hands.
After every event the layout must stay one a user can trust.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_builders import FAILURE_TIMEOUT, node, snapshot

from motes.scheduler.policy import STICKY, NodeView
from motes.scheduler.state import (
    AppDeleted,
    AppPut,
    Assign,
    Demand,
    DrainSet,
    Elected,
    Heartbeat,
    NodeGone,
    NodeLost,
    NodeUp,
    PresenceSet,
    SchedulerState,
    Tick,
)
from motes.wire.messages import AppRecord, InstanceSpec, Load, MoteSpec, NodeRecord, Power

NODE_IDS = ["n1", "n2", "n3", "n4"]
APP_NAMES = ["a", "b"]
MOTE_NAMES = ["m", "n"]


@st.composite
def node_records(draw: st.DrawFn, nid: str) -> list[NodeRecord]:
    """Two versions of a node's record: a NodeUp may change its labels or screen."""
    base = {
        "cpus": draw(st.integers(1, 8)),
        "memory_mb": draw(st.sampled_from([512, 4096])),
        "gpus": draw(st.sampled_from([0, 0, 1])),
    }
    labels = st.sampled_from(
        [{}, {}, {"zone": "a"}, {"zone": "b"}, {"power": "battery"}, {"screen": "false"}]
    )
    return [
        node(
            nid, **base, labels=draw(labels), screen=draw(st.booleans()), camera=draw(st.booleans())
        )
        for _ in range(2)
    ]


@st.composite
def mote_specs(draw: st.DrawFn, name: str) -> MoteSpec:
    needs: dict[str, Any] = {}
    if draw(st.booleans()):
        needs["cpu"] = draw(st.sampled_from([0.5, 1, 2, 3, 5]))
    if draw(st.integers(0, 4)) == 0:
        needs["gpu"] = 1
    if draw(st.integers(0, 4)) == 0:
        needs["memory_mb"] = 1024
    if draw(st.integers(0, 4)) == 0:
        needs["screen"] = True
    return MoteSpec(
        name=name,
        kind=draw(st.sampled_from(["function", "actor"])),
        # min > max is not allowed by App, but a record from the KV is not checked by it.
        min=draw(st.integers(0, 5)),
        max=draw(st.integers(1, 4)),
        needs=needs,
        labels=draw(st.sampled_from([{}, {}, {"zone": "a"}, {"zone": "b"}])),
        concurrency=draw(st.integers(1, 3)),
        spread=draw(st.sampled_from(["spread", "pack"])),
        shards=draw(st.integers(1, 8)),
        usage=draw(st.sampled_from(["any", "any", "batch", "interactive"])),
        idle=draw(st.sampled_from([0.5, 1.0, 3.0])),
    )


@st.composite
def app_records(draw: st.DrawFn) -> AppRecord:
    name = draw(st.sampled_from(APP_NAMES))
    names = draw(st.lists(st.sampled_from(MOTE_NAMES), min_size=1, max_size=2, unique=True))
    motes = [draw(mote_specs(n)) for n in names]
    # Like a bundle digest: the same source gives the same version, any change a new one.
    digest = "sha256:" + hashlib.sha256(msgspec.msgpack.encode(motes)).hexdigest()[:16]
    return AppRecord(name=name, digest=digest, module=name, motes=motes)


node_ids = st.sampled_from(NODE_IDS)
ready_modes = st.sampled_from(["all", "all", "none", "some"])
works = st.sampled_from([0, 0, 1, 3, 8])
_beat = st.tuples(
    st.just("beat"), node_ids, ready_modes, works, st.sampled_from([False, False, False, True])
)
# Every live node heartbeats (what happens most of the time), one of them reporting work.
_beat_all = st.tuples(st.just("beat_all"), ready_modes, works)
# The same app with a new (or an earlier) digest: a surge upgrade, or a rollback.
_bump = st.tuples(st.just("bump"), st.sampled_from(APP_NAMES), st.integers(0, 2))
_put = st.tuples(st.just("put"), app_records())
_common = [
    st.tuples(st.just("up"), node_ids, st.integers(0, 1)),
    st.tuples(st.just("gone"), node_ids),
    *[_beat, _beat_all] * 2,
    st.tuples(st.just("tick")),
    *[_put, _bump] * 2,
    st.tuples(st.just("delete"), st.sampled_from(APP_NAMES)),
    st.tuples(st.just("demand"), st.sampled_from(APP_NAMES), st.sampled_from(MOTE_NAMES)),
    st.tuples(st.just("here"), st.one_of(st.none(), node_ids)),
    st.tuples(st.just("drain"), node_ids, st.booleans()),
]
operations = st.one_of(*_common, st.tuples(st.just("reelect")))
steps = st.lists(
    st.tuples(operations, st.sampled_from([0.0, 0.3, 0.8, 2.0])), min_size=10, max_size=30
)
steps_before_election = st.lists(
    st.tuples(st.one_of(*_common), st.sampled_from([0.0, 0.3, 0.8, 2.0])), max_size=40
)


def to_event(
    op: tuple[Any, ...], now: float, records: dict[str, list[NodeRecord]], state: SchedulerState
) -> Any:
    match op:
        case ("up", nid, variant):
            return NodeUp(now=now, record=records[nid][variant])
        case ("gone", nid):
            return NodeGone(now=now, node=nid)
        case ("beat", nid, ready, work, battery):
            running = [i.iid for i in state.assigned.get(nid, [])]
            serving = {"all": running, "none": [], "some": running[::2]}[ready]
            return Heartbeat(
                now=now,
                node=nid,
                load=Load(),
                ready=frozenset(serving),
                work={running[0]: work} if running and work else {},
                power=Power(on_battery=True, battery_pct=50.0) if battery else Power(),
            )
        case ("tick",):
            return Tick(now=now)
        case ("put", record):
            return AppPut(now=now, record=record)
        case ("bump", name, k):
            if name not in state.apps:
                return Tick(now=now)
            record = state.apps[name]
            digest = f"{record.digest.split('/')[0]}/r{k}"
            return AppPut(now=now, record=msgspec.structs.replace(record, digest=digest))
        case ("delete", name):
            return AppDeleted(now=now, name=name)
        case ("demand", app_name, mote_name):
            return Demand(now=now, app=app_name, mote=mote_name)
        case ("here", nid):
            return PresenceSet(now=now, node=nid)
        case ("drain", nid, drained):
            return DrainSet(now=now, node=nid, drained=drained)
        case ("reelect",):
            return snapshot(state, epoch=state.epoch + 1, now=now)
    raise AssertionError(op)


def expand(op: tuple[Any, ...], state: SchedulerState) -> list[tuple[Any, ...]]:
    """``beat_all``: one heartbeat per known node, the first one carrying the work."""
    if op[0] != "beat_all":
        return [op]
    _, ready, work = op
    return [
        ("beat", nid, ready, work if k == 0 else 0, False)
        for k, nid in enumerate(sorted(state.nodes))
    ]


def _current(state: SchedulerState, i: InstanceSpec) -> bool:
    return i.digest == state.apps[i.app].digest


class Observer:
    """What a node agent would see: the last assignment written for each node."""

    def __init__(self) -> None:
        self.last: dict[str, list[Any]] = {}
        self.home: dict[str, str] = {}
        self.shards: dict[str, list[int]] = {}

    def apply(self, state: SchedulerState, alive_before: set[str], commands: list[Any]) -> None:
        for command in commands:
            assert command.cause.startswith(f"e{state.epoch}.")
            if isinstance(command, NodeLost):
                assert command.node in alive_before
                assert command.silent_s > FAILURE_TIMEOUT
                continue
            assert isinstance(command, Assign)
            a = command.assignment
            assert (a.epoch, a.cause) == (state.epoch, command.cause)
            assert a.instances != self.last.get(a.node, []), "an assignment that changes nothing"
            self.last[a.node] = a.instances
            for i in a.instances:
                if not _current(state, i):
                    # An old version is never started anew, and keeps its shards to the end.
                    assert i.iid in self.home, f"old-version instance {i.iid} started"
                    assert i.shards == self.shards[i.iid]
                # An instance never moves: a replacement elsewhere gets a fresh iid.
                assert self.home.setdefault(i.iid, a.node) == a.node
                self.shards[i.iid] = i.shards


def _sticky_ok(state: SchedulerState, nid: str, mote: MoteSpec) -> bool:
    """Every veto that can fail under a placed instance passes, judged from the outside."""
    n = state.nodes[nid]
    labels = n.record.labels
    view = NodeView(
        id=nid,
        name=n.record.name,
        inventory=n.record.inventory,
        labels=labels,
        alive=n.alive,
        rejoining=n.back_at is not None,
        drained=nid in state.drained,
        present=state.presence == nid,
        presence_known=state.presence is not None,
        on_battery=n.power.on_battery or labels.get("power") == "battery",
        battery_pct=n.power.battery_pct,
    )
    return all(rule(mote, view).ok for rule in STICKY)


def check_invariants(state: SchedulerState, seen: Observer, *, pending: bool = True) -> None:
    specs = {(a.name, m.name): (a, m) for a in state.apps.values() for m in a.motes}
    for nid in set(seen.last) | set(state.assigned):
        assert state.assigned.get(nid, []) == seen.last.get(nid, [])

    current: Counter[tuple[str, str]] = Counter()
    old: Counter[tuple[str, str]] = Counter()
    ready: Counter[tuple[str, str]] = Counter()
    all_iids: list[str] = []
    for nid, instances in state.assigned.items():
        if not instances:
            continue
        assert nid in state.nodes and state.nodes[nid].alive, f"{nid} is not alive"
        inventory = state.nodes[nid].record.inventory
        used = Counter[str]()
        for i in instances:
            key = (i.app, i.mote)
            app, mote = specs[key]
            assert i.kind == mote.kind
            all_iids.append(i.iid)
            if not _current(state, i):
                old[key] += 1
                continue
            current[key] += 1
            ready[key] += i.iid in state.nodes[nid].ready
            assert nid not in state.drained, f"{i.iid} runs on drained {nid}"
            assert _sticky_ok(state, nid, mote), f"{i.iid} stays where a sticky rule vetoes"
            for res in ("cpu", "memory_mb", "gpu"):
                used[res] += mote.needs.get(res, 0)
        # The old version may overcommit a node during a surge; the current one never does.
        assert used["cpu"] <= inventory.cpus
        assert used["memory_mb"] <= inventory.memory_mb
        assert used["gpu"] <= inventory.gpus
    assert len(all_iids) == len(set(all_iids))

    for key, (app, mote) in specs.items():
        count, wanted = current[key], state.wanted(app, mote)
        assert count <= wanted <= mote.max
        assert count + old[key] <= mote.max + old[key]
        if pending and count < wanted:
            # Pending only when no node could take one more.
            why = state.explain(*key)
            assert not any(all(v.ok for v in row.verdicts) for row in why.nodes)
        if old[key]:
            # The old version only stays while the new one is not yet carrying the load.
            assert wanted > 0
            assert count == 0 or ready[key] < min(wanted, count)
        if mote.kind == "actor" and count:
            owned = [
                s
                for insts in state.assigned.values()
                for i in insts
                if (i.app, i.mote) == key and _current(state, i)
                for s in i.shards
            ]
            assert sorted(owned) == list(range(mote.shards))


Placed = dict[str, tuple[str, InstanceSpec]]


def _placed(state: SchedulerState) -> Placed:
    return {i.iid: (nid, i) for nid, insts in state.assigned.items() for i in insts}


def check_retirements(state: SchedulerState, before: Placed) -> None:
    """An old-version instance on a node still serving goes only once the new version
    carries the load (or nothing is wanted, or a drain sends it away)."""
    after = _placed(state)
    for iid, (nid, inst) in before.items():
        app = state.apps.get(inst.app)
        mote = next((m for m in app.motes if m.name == inst.mote), None) if app else None
        node_ = state.nodes.get(nid)
        if iid in after or app is None or mote is None or mote.kind != inst.kind:
            continue
        if node_ is None or not node_.alive or nid in state.drained or inst.digest == app.digest:
            continue
        new = [
            (n, i)
            for n, i in after.values()
            if (i.app, i.mote) == (inst.app, inst.mote) and i.digest == app.digest
        ]
        ready = sum(i.iid in state.nodes[n].ready for n, i in new)
        wanted = state.wanted(app, mote)
        assert wanted == 0 or (new and ready >= min(wanted, len(new))), (
            f"old-version {iid} dropped before the new version was ready"
        )


def _current_iids(state: SchedulerState) -> set[str]:
    return {i.iid for insts in state.assigned.values() for i in insts if _current(state, i)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.fixed_dictionaries({nid: node_records(nid) for nid in NODE_IDS}),
    initial=st.lists(node_ids, unique=True, min_size=1),
    deployed=st.lists(app_records(), min_size=1, max_size=2),
    history=steps,
)
def test_the_layout_stays_sound_after_every_event(
    records: dict[str, list[NodeRecord]],
    initial: list[str],
    deployed: list[AppRecord],
    history: list[tuple[tuple[Any, ...], float]],
) -> None:
    state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    seen = Observer()
    nodes = {nid: records[nid][0] for nid in initial}
    apps = {a.name: a for a in deployed}
    elect = Elected(now=0.0, epoch=1, nodes=nodes, apps=apps, assignments={})
    seen.apply(state, set(), state.handle(elect))
    check_invariants(state, seen)
    now = 0.0
    for step, dt in history:
        now += dt
        for op in expand(step, state):
            alive = {nid for nid, n in state.nodes.items() if n.alive}
            before = _placed(state)
            event = to_event(op, now, records, state)
            if isinstance(event, Elected):
                # Leadership changes hands: a fresh leader starts from what the lattice holds,
                # and stops none of the current version's instances at once.
                running = _current_iids(state)
                state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
                seen.apply(state, alive, state.handle(event))
                assert running <= _current_iids(state)
            else:
                seen.apply(state, alive, state.handle(event))
            check_invariants(state, seen, pending=True)
            check_retirements(state, before)


@settings(max_examples=100, deadline=None)
@given(
    records=st.fixed_dictionaries({nid: node_records(nid) for nid in NODE_IDS}),
    history=steps_before_election,
)
def test_before_election_nothing_is_ever_decided(
    records: dict[str, list[NodeRecord]], history: list[tuple[tuple[Any, ...], float]]
) -> None:
    state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    now = 0.0
    for step, dt in history:
        now += dt
        for op in expand(step, state):
            assert state.handle(to_event(op, now, records, state)) == []
    assert state.assigned == {}
