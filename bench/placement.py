"""placement_ms and replacement_ms: the scheduler's pure state machine, CPU only.

No lattice, no processes: ``SchedulerState.handle`` fed the events a leader would see, in
this process. A made-up but varied mesh (seeded, so every run places the same thing):

- ``nodes`` nodes (1,000): laptops, desktops, servers, GPU boxes and Raspberry Pis, with
  their cpus, memory, arch and labels (zone, a few on battery, GPUs by label);
- ``apps`` apps of ``motes_per_app`` motes (1,000 x 10): functions, actors and daemons
  from a dozen profiles (a web handler, a batch job, a GPU model, an arm-only sensor
  reader, a small daemon...), with cpu and memory needs, some ``min`` > 1, some
  label constraints, some reading stored data that a few nodes hold.

``placement_ms``: one ``Elected`` event carrying every node and app and no assignment (a
leader taking over a mesh whose plan must be made from scratch), until the ``Assign``
commands come back. ``replacement_ms``: then one ``Tick`` after ``lost`` (100) nodes
stopped heartbeating past the failure timeout, until the new plan (their instances
moved, nothing else). Each repetition builds a fresh state; the median is reported.
Goals (absolute): <= 1,000 ms and <= 500 ms.

Run alone: ``python -m bench.placement [--nodes N] [--apps N] [--reps N]``.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from dataclasses import dataclass
from typing import Any

from motes.scheduler.state import Assign, DataHeld, Elected, NodeLost, SchedulerState, Tick
from motes.wire.messages import AppRecord, Inventory, MoteSpec, NodeRecord

from .runner import Result, Session, compare
from .stats import median

__all__ = ["Scenario", "measure", "run", "scenario"]

FAILURE_TIMEOUT = 1.5
FILES = 5
"""Stored files some motes read (each held by a few nodes)."""

# (name, share of nodes, cpus, memory_mb, labels, arch)
_MACHINES: list[tuple[str, float, int, int, dict[str, str], str]] = [
    ("laptop", 0.25, 8, 16_384, {}, "x86_64"),
    ("desktop", 0.25, 16, 32_768, {}, "x86_64"),
    ("server", 0.25, 32, 131_072, {"always-on": "true"}, "x86_64"),
    ("gpu", 0.05, 32, 65_536, {"gpus": "2"}, "x86_64"),
    ("pi", 0.20, 4, 8_192, {}, "aarch64"),
]


def _mote_profiles(rng: random.Random, index: int) -> dict[str, Any]:
    """One mote's declaration, from a dozen profiles real apps have."""
    profiles: list[dict[str, Any]] = [
        {"needs": {"cpu": 0.25, "memory_mb": 256}},  # a web handler
        {"needs": {"cpu": 0.1, "memory_mb": 128}, "min": 2},  # a replicated front end
        {"kind": "actor", "needs": {"cpu": 0.25, "memory_mb": 512}, "shards": 16},
        {"needs": {"cpu": 2, "memory_mb": 2048}, "usage": "batch"},  # a batch job
        {"needs": {"cpu": 0.5}, "spread": "pack"},  # a packable worker
        {"needs": {"cpu": 1, "memory_mb": 4096, "gpu": 1}, "min": 1},  # a model
        {"needs": {"arch": "aarch64", "cpu": 0.25}},  # a sensor reader (Pis only)
        {"labels": {"zone": rng.choice("abcd")}, "needs": {"cpu": 0.5}},  # zone-pinned
        {"kind": "daemon", "needs": {"memory_mb": 64}},  # a small daemon
        {"needs": {"cpu": 0.5, "memory_mb": 1024}, "reads": [f"si{rng.randrange(FILES)}"]},
        {"needs": {"cpu": 1, "memory_mb": 512}, "min": 3, "labels": {"always-on": "true"}},
        {},  # no declared needs at all
    ]
    return profiles[index % len(profiles)] if index < len(profiles) else rng.choice(profiles)


@dataclass(frozen=True, slots=True)
class Scenario:
    nodes: dict[str, NodeRecord]
    apps: dict[str, AppRecord]
    held: dict[str, dict[str, int]]
    """Node id -> storage index -> bytes held (the data some motes read)."""
    lost: list[str]


def scenario(*, nodes: int, apps: int, motes_per_app: int = 10, lost: int = 100) -> Scenario:
    rng = random.Random(11)
    records: dict[str, NodeRecord] = {}
    for i in range(nodes):
        kind, _, cpus, memory, labels, arch = rng.choices(
            _MACHINES, weights=[m[1] for m in _MACHINES]
        )[0]
        labels = {**labels, "zone": rng.choice("abcd")}
        if kind == "laptop" and rng.random() < 0.3:
            labels["power"] = "battery"
        nid = f"N{i:05d}"
        inventory = Inventory(cpus=cpus, memory_mb=memory, arch=arch, os="linux")
        records[nid] = NodeRecord(
            id=nid,
            name=f"{kind}-{i}",
            public_key=b"k" * 32,
            host="127.0.0.1",
            pid=1,
            inventory=inventory,
            labels=labels,
        )
    ids = sorted(records)
    held: dict[str, dict[str, int]] = {}
    for f in range(FILES):
        for nid in rng.sample(ids, min(3, len(ids))):
            held.setdefault(nid, {})[f"si{f}"] = rng.randrange(1, 64) << 20
    app_records: dict[str, AppRecord] = {}
    for a in range(apps):
        name = f"app{a:04d}"
        motes = [
            MoteSpec(name=f"m{m}", **_mote_profiles(rng, a * motes_per_app + m))
            for m in range(motes_per_app)
        ]
        app_records[name] = AppRecord(
            name=name, digest=f"sha256:{a:064x}", module=name, motes=motes
        )
    return Scenario(records, app_records, held, rng.sample(ids, min(lost, len(ids))))


def measure(s: Scenario) -> tuple[float, float, dict[str, int]]:
    """One repetition: (placement ms, re-placement ms, counts)."""
    state = SchedulerState(failure_timeout=FAILURE_TIMEOUT)
    for nid, files in s.held.items():  # before the election: remembered, nothing decided
        state.handle(DataHeld(now=0.0, node=nid, files=files))
    lost = set(s.lost)
    # The lost nodes were last heard 1 s before the election; the others at it.
    seen = {nid: (99.0 if nid in lost else 100.0) for nid in s.nodes}
    elected = Elected(now=100.0, epoch=1, nodes=s.nodes, apps=s.apps, assignments={}, seen=seen)
    t0 = time.perf_counter()
    first = state.handle(elected)
    t1 = time.perf_counter()
    placed = sum(len(c.assignment.instances) for c in first if isinstance(c, Assign))
    before = {i.iid: nid for nid, insts in state.assigned.items() for i in insts}
    t2 = time.perf_counter()
    second = state.handle(Tick(now=99.0 + FAILURE_TIMEOUT + 0.01))  # only they are late
    t3 = time.perf_counter()
    after = {i.iid: nid for nid, insts in state.assigned.items() for i in insts}
    gone = sum(1 for c in second if isinstance(c, NodeLost))
    moved = sum(1 for iid, nid in before.items() if nid in lost)
    kept = sum(1 for iid, nid in before.items() if nid not in lost and after.get(iid) == nid)
    counts = {"instances": placed, "lost_nodes": gone, "moved": moved, "kept": kept}
    counts["replaced"] = len(after) - kept
    return (t1 - t0) * 1000, (t3 - t2) * 1000, counts


async def run(s: Session) -> list[Result]:
    nodes, apps, reps = s.sizes.placement_nodes, s.sizes.placement_apps, s.sizes.reps
    world = scenario(nodes=nodes, apps=apps, lost=nodes // 10)
    measure(world)  # warm-up, not recorded
    samples = []
    for rep in range(1, reps + 1):
        gc.collect()
        samples.append(measure(world))
        p, r, _ = samples[-1]
        print(f"  placement {rep}/{reps}: {p:.0f} ms, re-placement {r:.0f} ms", file=sys.stderr)
    s.details["placement"] = {"nodes": nodes, "apps": apps, "motes": apps * 10, **samples[-1][2]}
    rows = compare("placement_ms", "ms", median([p for p, _, _ in samples]), {}, reps)
    rows += compare("replacement_ms", "ms", median([r for _, r, _ in samples]), {}, reps)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.placement")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    world = scenario(nodes=args.nodes, apps=args.apps, lost=args.nodes // 10)
    for _ in range(args.reps):
        p, r, counts = measure(world)
        print(f"placement {p:.1f} ms, re-placement {r:.1f} ms, {counts}")


if __name__ == "__main__":
    main()
