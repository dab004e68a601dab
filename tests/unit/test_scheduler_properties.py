"""Invariants of the scheduler under random histories of nodes and apps.

Nodes join, leave, heartbeat or go silent; apps are deployed, redeployed and removed;
callers demand lazy motes. After every event the layout must stay one a user can trust.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_builders import FAILURE_TIMEOUT, node

from motes.scheduler.state import (
    AppDeleted,
    AppPut,
    Assign,
    Demand,
    Elected,
    Heartbeat,
    NodeGone,
    NodeLost,
    NodeUp,
    SchedulerState,
    Tick,
)
from motes.wire.messages import AppRecord, Load, MoteSpec, NodeRecord

NODE_IDS = ["n1", "n2", "n3", "n4"]
APP_NAMES = ["a", "b"]
MOTE_NAMES = ["m", "n"]


@st.composite
def node_records(draw: st.DrawFn, nid: str) -> NodeRecord:
    return node(
        nid,
        cpus=draw(st.integers(1, 8)),
        memory_mb=draw(st.sampled_from([512, 4096])),
        gpus=draw(st.sampled_from([0, 0, 1])),
        labels=draw(st.sampled_from([{}, {"zone": "a"}, {"zone": "b"}])),
    )


@st.composite
def mote_specs(draw: st.DrawFn, name: str) -> MoteSpec:
    needs: dict[str, Any] = {}
    if draw(st.booleans()):
        needs["cpu"] = draw(st.sampled_from([0.5, 1, 2, 3, 5]))
    if draw(st.integers(0, 4)) == 0:
        needs["gpu"] = 1
    if draw(st.integers(0, 4)) == 0:
        needs["memory_mb"] = 1024
    return MoteSpec(
        name=name,
        kind=draw(st.sampled_from(["function", "actor"])),
        # min > max is not allowed by App, but a record from the KV is not checked by it.
        min=draw(st.integers(0, 5)),
        max=draw(st.integers(1, 4)),
        needs=needs,
        labels=draw(st.sampled_from([{}, {}, {"zone": "a"}, {"zone": "b"}])),
        spread=draw(st.sampled_from(["spread", "pack"])),
        shards=draw(st.integers(1, 8)),
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
operations = st.one_of(
    st.tuples(st.just("up"), node_ids),
    st.tuples(st.just("gone"), node_ids),
    st.tuples(st.just("beat"), node_ids),
    st.tuples(st.just("beat"), node_ids),
    st.tuples(st.just("tick")),
    st.tuples(st.just("put"), app_records()),
    st.tuples(st.just("delete"), st.sampled_from(APP_NAMES)),
    st.tuples(st.just("demand"), st.sampled_from(APP_NAMES), st.sampled_from(MOTE_NAMES)),
)
steps = st.lists(st.tuples(operations, st.sampled_from([0.0, 0.3, 0.8, 2.0])), max_size=40)


def to_event(op: tuple[Any, ...], now: float, records: dict[str, NodeRecord]) -> Any:
    match op:
        case ("up", nid):
            return NodeUp(now=now, record=records[nid])
        case ("gone", nid):
            return NodeGone(now=now, node=nid)
        case ("beat", nid):
            return Heartbeat(now=now, node=nid, load=Load())
        case ("tick",):
            return Tick(now=now)
        case ("put", record):
            return AppPut(now=now, record=record)
        case ("delete", name):
            return AppDeleted(now=now, name=name)
        case ("demand", app_name, mote_name):
            return Demand(now=now, app=app_name, mote=mote_name)
    raise AssertionError(op)


class Observer:
    """What a node agent would see: the last assignment written for each node."""

    def __init__(self) -> None:
        self.last: dict[str, list[Any]] = {}
        self.home: dict[str, str] = {}

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
                # An instance never moves: a replacement elsewhere gets a fresh iid.
                assert self.home.setdefault(i.iid, a.node) == a.node


def check_invariants(state: SchedulerState, seen: Observer) -> None:
    specs = {(a.name, m.name): (a, m) for a in state.apps.values() for m in a.motes}
    for nid in set(seen.last) | set(state.assigned):
        assert state.assigned.get(nid, []) == seen.last.get(nid, [])

    placed: Counter[tuple[str, str]] = Counter()
    all_iids: list[str] = []
    for nid, instances in state.assigned.items():
        if not instances:
            continue
        assert nid in state.nodes and state.nodes[nid].alive, f"{nid} is not alive"
        inventory = state.nodes[nid].record.inventory
        used = Counter[str]()
        for i in instances:
            app, mote = specs[(i.app, i.mote)]
            assert i.digest == app.digest
            for res in ("cpu", "memory_mb", "gpu"):
                used[res] += mote.needs.get(res, 0)
            placed[(i.app, i.mote)] += 1
            all_iids.append(i.iid)
        assert used["cpu"] <= inventory.cpus
        assert used["memory_mb"] <= inventory.memory_mb
        assert used["gpu"] <= inventory.gpus
    assert len(all_iids) == len(set(all_iids))

    for (app_name, mote_name), (app, mote) in specs.items():
        count = placed[(app_name, mote_name)]
        assert count <= mote.max
        assert count <= state.wanted(app, mote)
        if count < state.wanted(app, mote):
            # Pending only when no node could take one more.
            why = state.explain(app_name, mote_name)
            assert not any(all(v.ok for v in row.verdicts) for row in why.nodes)
        if mote.kind == "actor" and count:
            owned = [
                s
                for insts in state.assigned.values()
                for i in insts
                if (i.app, i.mote) == (app_name, mote_name)
                for s in i.shards
            ]
            assert sorted(owned) == list(range(mote.shards))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.fixed_dictionaries({nid: node_records(nid) for nid in NODE_IDS}),
    initial=st.lists(node_ids, unique=True),
    history=steps,
)
def test_the_layout_stays_sound_after_every_event(
    records: dict[str, NodeRecord],
    initial: list[str],
    history: list[tuple[tuple[Any, ...], float]],
) -> None:
    state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    seen = Observer()
    nodes = {nid: records[nid] for nid in initial}
    seen.apply(
        state, set(), state.handle(Elected(now=0.0, epoch=1, nodes=nodes, apps={}, assignments={}))
    )
    now = 0.0
    for op, dt in history:
        now += dt
        alive = {nid for nid, n in state.nodes.items() if n.alive}
        seen.apply(state, alive, state.handle(to_event(op, now, records)))
        check_invariants(state, seen)


@settings(max_examples=100, deadline=None)
@given(
    records=st.fixed_dictionaries({nid: node_records(nid) for nid in NODE_IDS}),
    history=steps,
)
def test_before_election_nothing_is_ever_decided(
    records: dict[str, NodeRecord], history: list[tuple[tuple[Any, ...], float]]
) -> None:
    state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    now = 0.0
    for op, dt in history:
        now += dt
        assert state.handle(to_event(op, now, records)) == []
    assert state.assigned == {}
