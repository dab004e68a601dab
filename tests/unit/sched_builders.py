"""Builders for scheduler tests: wire records with sensible defaults, and views of a state."""

from __future__ import annotations

from collections import Counter
from typing import Any

from motes.scheduler.state import Assign, Elected, Heartbeat, SchedulerState
from motes.wire.messages import (
    AppRecord,
    CallCost,
    InstanceSpec,
    Inventory,
    Load,
    MoteSpec,
    NodeAssignment,
    NodeRecord,
    Power,
    PowerProfile,
)

FAILURE_TIMEOUT = 1.5

RULES = [  # the order every verdict list (and `motes why`) shows, by rule name
    "liveness",
    "trust",
    "resources",
    "capabilities",
    "labels",
    "owner",
    "locality",
    "energy",
    "spread",
]


def node(
    nid: str,
    *,
    cpus: int = 4,
    memory_mb: int = 8192,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    arch: str = "x86_64",
    os: str = "linux",
    screen: bool = False,
    camera: bool = False,
    watts: float | None = None,
) -> NodeRecord:
    """``watts``: the node advertises a power model of that many watts per core at full
    load (a quarter of it at idle); None: no power model."""
    inventory = Inventory(
        cpus=cpus, memory_mb=memory_mb, arch=arch, os=os, gpus=gpus, screen=screen, camera=camera
    )
    return NodeRecord(
        id=nid,
        name=f"host-{nid}",
        public_key=b"k" * 32,
        host="127.0.0.1",
        pid=1,
        inventory=inventory,
        labels=labels or {},
        power_model=None if watts is None else profile(watts),
    )


def profile(watts: float, *, cores: int = 4) -> PowerProfile:
    return PowerProfile(
        idle_w=watts / 4, max_w=watts, cores=cores, method="model:config:owner", band=0.3
    )


def mote(name: str = "m", **options: Any) -> MoteSpec:
    return MoteSpec(name=name, **options)


def app(name: str = "a", *motes: MoteSpec, digest: str = "sha256:v1") -> AppRecord:
    return AppRecord(name=name, digest=digest, module=name, motes=list(motes) or [mote()])


def elected(
    *nodes: NodeRecord,
    apps: tuple[AppRecord, ...] = (),
    epoch: int = 1,
    now: float = 0.0,
    assignments: dict[str, NodeAssignment] | None = None,
    presence: str | None = None,
    drained: frozenset[str] = frozenset(),
) -> Elected:
    return Elected(
        now=now,
        epoch=epoch,
        nodes={n.id: n for n in nodes},
        apps={a.name: a for a in apps},
        assignments=assignments or {},
        presence=presence,
        drained=drained,
    )


def inst(iid: str, record: AppRecord, mote_name: str = "m", **extra: Any) -> InstanceSpec:
    spec = next(m for m in record.motes if m.name == mote_name)
    return InstanceSpec(
        iid=iid,
        app=record.name,
        mote=mote_name,
        digest=record.digest,
        module=record.module,
        kind=spec.kind,
        concurrency=spec.concurrency,
        **extra,
    )


def assign(nid: str, *instances: InstanceSpec, epoch: int = 1, cause: str) -> Assign:
    assignment = NodeAssignment(node=nid, epoch=epoch, instances=list(instances), cause=cause)
    return Assign(assignment=assignment, cause=cause)


def fresh(*events: Any) -> tuple[SchedulerState, list[Any]]:
    """A state fed ``events`` in order, and the commands of the last one."""
    state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    commands: list[Any] = []
    for event in events:
        commands = state.handle(event)
    return state, commands


def per_node(state: SchedulerState, mote_name: str | None = None) -> dict[str, int]:
    """How many instances (of one mote, or of all) each node is assigned; zeros left out."""
    counts = Counter(
        nid
        for nid, insts in state.assigned.items()
        for i in insts
        if mote_name is None or i.mote == mote_name
    )
    return dict(sorted(counts.items()))


def iids(state: SchedulerState) -> list[str]:
    return [i.iid for insts in state.assigned.values() for i in insts]


def layout(state: SchedulerState) -> dict[str, list[tuple[str, str]]]:
    """Each node's instances as (iid, digest), empty nodes left out."""
    return {
        nid: [(i.iid, i.digest) for i in insts]
        for nid, insts in sorted(state.assigned.items())
        if insts
    }


def beat(
    state: SchedulerState,
    nid: str,
    now: float,
    *,
    ready: bool = True,
    work: dict[str, int] | None = None,
    power: Power | None = None,
    costs: dict[str, CallCost] | None = None,
) -> Heartbeat:
    """A heartbeat from ``nid`` as its agent would send it: with ``ready``, every instance
    the node is assigned reports serving (a crashlooping one never does)."""
    serving = frozenset(i.iid for i in state.assigned.get(nid, [])) if ready else frozenset()
    return Heartbeat(
        now=now,
        node=nid,
        load=Load(),
        ready=serving,
        work=work or {},
        power=power or Power(),
        costs=costs or {},
    )


def snapshot(state: SchedulerState, *, epoch: int, now: float) -> Elected:
    """What a new leader reads from the lattice: the records and assignments ``state`` wrote."""
    return Elected(
        now=now,
        epoch=epoch,
        nodes={nid: n.record for nid, n in state.nodes.items()},
        apps=dict(state.apps),
        assignments={
            nid: NodeAssignment(node=nid, epoch=state.epoch, instances=list(insts))
            for nid, insts in state.assigned.items()
        },
        presence=state.presence,
        drained=frozenset(state.drained),
    )
