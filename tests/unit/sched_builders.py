"""Builders for scheduler tests: wire records with sensible defaults, and views of a state."""

from __future__ import annotations

from collections import Counter
from typing import Any

from motes.scheduler.state import Assign, Elected, SchedulerState
from motes.wire.messages import (
    AppRecord,
    InstanceSpec,
    Inventory,
    MoteSpec,
    NodeAssignment,
    NodeRecord,
)

FAILURE_TIMEOUT = 1.5


def node(
    nid: str,
    *,
    cpus: int = 4,
    memory_mb: int = 8192,
    gpus: int = 0,
    labels: dict[str, str] | None = None,
    arch: str = "x86_64",
    os: str = "linux",
) -> NodeRecord:
    inventory = Inventory(cpus=cpus, memory_mb=memory_mb, arch=arch, os=os, gpus=gpus)
    return NodeRecord(
        id=nid,
        name=f"host-{nid}",
        public_key=b"k" * 32,
        host="127.0.0.1",
        pid=1,
        inventory=inventory,
        labels=labels or {},
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
) -> Elected:
    return Elected(
        now=now,
        epoch=epoch,
        nodes={n.id: n for n in nodes},
        apps={a.name: a for a in apps},
        assignments=assignments or {},
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
