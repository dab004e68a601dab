"""Placement at a few hundred nodes, and the fast node search against its definition.

The scheduler does not judge every node for every instance it places (that is
O(nodes x instances)); it keeps rankings and re-judges only the nodes that changed
(``scheduler/_plan.py``). These tests pin down that this changes no decision: a state
whose ``_best_node`` is the plain definition (every node judged, in id order, the first
best wins) is fed the same random histories and must write exactly the same commands.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sched_builders import FAILURE_TIMEOUT, app, mote, node
from test_scheduler_properties import (
    NODE_IDS,
    app_records,
    expand,
    node_ids,
    node_records,
    steps,
    to_event,
)

from motes.scheduler._plan import Plan
from motes.scheduler.policy import NodeView, judge, placing_can_raise
from motes.scheduler.state import Elected, SchedulerState, Tick
from motes.wire.messages import AppRecord, Inventory, MoteSpec, NodeRecord


class ScanningState(SchedulerState):
    """The definition of the best node: judge every node, in id order, keep the first best."""

    def _best_node(self, mote: MoteSpec, plan: Plan, app: AppRecord) -> str | None:
        best: tuple[float, str] | None = None
        for nid in sorted(self.nodes):
            ok, score, _ = judge(mote, self._view(nid, mote, app, plan))
            if ok and (best is None or score > best[0]):
                best = (score, nid)
        return best[1] if best else None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.fixed_dictionaries({nid: node_records(nid) for nid in NODE_IDS}),
    initial=st.lists(node_ids, unique=True, min_size=1),
    deployed=st.lists(app_records(), min_size=1, max_size=2),
    history=steps,
)
def test_the_rankings_choose_what_judging_every_node_chooses(
    records: dict[str, list[NodeRecord]],
    initial: list[str],
    deployed: list[AppRecord],
    history: list[tuple[tuple[Any, ...], float]],
) -> None:
    fast = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    scan = ScanningState(failure_timeout=FAILURE_TIMEOUT)
    nodes = {nid: records[nid][0] for nid in initial}
    elect = Elected(
        now=0.0, epoch=1, nodes=nodes, apps={a.name: a for a in deployed}, assignments={}
    )
    assert fast.handle(elect) == scan.handle(elect)
    now = 0.0
    for step, dt in history:
        now += dt
        for op in expand(step, fast):
            event = to_event(op, now, records, fast)
            if isinstance(event, Elected):
                fast = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
                scan = ScanningState(failure_timeout=FAILURE_TIMEOUT)
            assert fast.handle(event) == scan.handle(event)
            assert fast.assigned == scan.assigned


@settings(max_examples=300, deadline=None)
@given(
    cpus=st.integers(1, 16),
    used=st.floats(0, 16),
    more=st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0]),
    instances=st.integers(0, 20),
    same=st.integers(0, 3),
    need=st.sampled_from([0, 0.1, 0.25, 1, 2]),
)
def test_one_more_instance_never_raises_a_spread_motes_score(
    cpus: int, used: float, more: float, instances: int, same: int, need: float
) -> None:
    """What the lazy rankings rely on (``placing_can_raise``): for ``spread`` motes."""
    spec = MoteSpec(name="m", needs={"cpu": need}, spread="spread")
    assert not placing_can_raise(spec)
    inventory = Inventory(cpus=cpus, memory_mb=4096, arch="x86_64", os="linux")

    def score(cpu: float, n: int, mine: int) -> float | None:
        view = NodeView(
            id="n",
            name="n",
            inventory=inventory,
            labels={},
            used={"cpu": cpu, "memory_mb": 0.0, "gpu": 0.0},
            instances=n,
            same_mote=mine,
        )
        ok, total, _ = judge(spec, view)
        return total if ok else None

    before, after = score(used, instances, same), score(used + more, instances + 1, same)
    assert after is None or (before is not None and after <= before)
    after_same = score(used + more, instances + 1, same + 1)
    assert after_same is None or (before is not None and after_same <= before)
    assert placing_can_raise(MoteSpec(name="p", spread="pack"))


# --- a few hundred nodes -----------------------------------------------------------------

NODES = 300
LOST = 30


def _mesh() -> tuple[dict[str, NodeRecord], list[AppRecord]]:
    rng = random.Random(7)
    nodes: dict[str, NodeRecord] = {}
    for i in range(NODES):
        nid = f"n{i:03d}"
        labels = {"zone": rng.choice("ab")}
        if i % 10 == 0:
            labels["gpus"] = "3"
        if i % 7 == 0:
            labels["power"] = "battery"
        arch = "aarch64" if i % 5 == 0 else "x86_64"
        nodes[nid] = node(
            nid, cpus=rng.choice([4, 8, 16]), memory_mb=16_384, labels=labels, arch=arch
        )
    profiles: list[dict[str, Any]] = [
        {"needs": {"cpu": 0.5, "memory_mb": 512}},
        {"needs": {"cpu": 0.25}, "min": 3},
        {"needs": {"cpu": 1, "gpu": 1}},
        {"needs": {"arch": "aarch64", "cpu": 0.5}},
        {"labels": {"zone": "b"}, "needs": {"cpu": 1}, "min": 2},
        {"needs": {"cpu": 2}, "usage": "batch"},
        {"needs": {"cpu": 0.5}, "spread": "pack"},
        {"kind": "actor", "needs": {"memory_mb": 256}, "shards": 8, "min": 2},
    ]
    apps = [
        app(f"a{k:03d}", *(mote(f"m{j}", **profiles[(k + j) % len(profiles)]) for j in range(4)))
        for k in range(150)
    ]
    return nodes, apps


def _placed(state: SchedulerState) -> dict[str, str]:
    return {i.iid: nid for nid, insts in state.assigned.items() for i in insts}


def _check_sound(state: SchedulerState, apps: list[AppRecord]) -> None:
    """Every mote has its instances, each on a node that meets its needs and constraints."""
    specs = {(a.name, m.name): m for a in apps for m in a.motes}
    count: dict[tuple[str, str], int] = dict.fromkeys(specs, 0)
    for nid, insts in state.assigned.items():
        live = state.nodes.get(nid)
        if not insts:
            continue
        assert live is not None and live.alive, f"instances on lost node {nid}"
        labels, inv = live.record.labels, live.record.inventory
        cpu = sum(float(specs[(i.app, i.mote)].needs.get("cpu", 0)) for i in insts)
        gpus = sum(int(specs[(i.app, i.mote)].needs.get("gpu", 0)) for i in insts)
        assert cpu <= inv.cpus and gpus <= int(labels.get("gpus", "0"))
        for i in insts:
            spec = specs[(i.app, i.mote)]
            count[(i.app, i.mote)] += 1
            assert all(labels.get(k) == v for k, v in spec.labels.items())
            assert spec.needs.get("arch", inv.arch) == inv.arch
            assert not (spec.usage == "batch" and labels.get("power") == "battery")
    assert count == {key: spec.min for key, spec in specs.items()}


def test_a_few_hundred_nodes_place_every_mote_and_losing_some_moves_only_theirs() -> None:
    nodes, apps = _mesh()
    lost = {f"n{i:03d}" for i in range(3, NODES, NODES // LOST)}
    state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    seen = {nid: (9.0 if nid in lost else 10.0) for nid in nodes}
    elect = Elected(
        now=10.0, epoch=1, nodes=nodes, apps={a.name: a for a in apps}, assignments={}, seen=seen
    )
    state.handle(elect)
    _check_sound(state, apps)
    before = _placed(state)
    assert {nid for nid in before.values()} & lost  # the lost nodes ran something

    state.handle(Tick(now=9.0 + FAILURE_TIMEOUT + 0.01))  # only the lost ones are late
    after = _placed(state)
    assert {nid for nid, n in state.nodes.items() if not n.alive} == lost
    _check_sound(state, apps)
    for iid, nid in before.items():
        if nid in lost:
            assert iid not in after  # replaced by a new instance elsewhere
        else:
            assert after.get(iid) == nid  # everything else stays put
