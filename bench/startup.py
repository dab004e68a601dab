"""startup_s and node_idle_rss_MB: a system from nothing to ready, then one process idle.

One measurement gives both rows. Motes: ``motes --home TMP up --nodes 3 --detach``, wall
time until the CLI returns (interpreter starts and imports included), then the RSS of the
first node ``idle_s`` later: its agent (``mesh.json`` ``nodes[0].pid``, which hosts the
node's store service) plus any store service process of that node; then ``motes down``. Peers,
each time in a fresh process and a fresh loopback-only namespace (``bench/drivers/``):
``ray.init()`` (after ``import ray``), then the raylet's RSS; Dask ``LocalCluster`` (one
worker) + ``Client`` until the worker is connected (after the import), then that worker
process's RSS. Goals are absolute: ``motes up`` (3 nodes) <= 1 s, idle node (agent +
store) <= 50 MB.
"""

from __future__ import annotations

import sys

from .contenders import PeerContender
from .runner import Result, Session, compare, interleave
from .stats import median

METRIC = "startup"


async def run(s: Session) -> list[Result]:
    peers = s.peers_for(METRIC)
    motes = s.motes["up"]
    samples = await interleave(
        METRIC,
        [motes, *peers],
        lambda c: c.startup(s.sizes.idle_s),
        s.sizes.reps,
        lambda v: f"{v[0]:.2f} s, {v[1]:.1f} MB",
    )
    for c in peers:
        if isinstance(c, PeerContender) and c.import_s:
            print(
                f"  {METRIC}: {c.name} import (outside its startup_s): "
                f"median {median(c.import_s):.2f} s",
                file=sys.stderr,
            )
    rows: list[Result] = []
    for i, (metric, unit) in enumerate((("startup_s", "s"), ("node_idle_rss_MB", "MB"))):
        theirs = {
            c.name: median([v[i] for v in samples[c.name]]) for c in peers if c.name in samples
        }
        mine = samples[motes.name]
        rows += compare(metric, unit, median([v[i] for v in mine]), theirs, len(mine))
    return rows
