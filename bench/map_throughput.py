"""map_throughput: items/s of ``mesh.map`` over ``map_items`` small items (ints).

Motes maps the sync mote ``bench.echo`` over ``range(map_items)`` and checks every
result arrived, in order. No peer yet (Ray ``ray.get([f.remote(x) ...])`` and Dask
``client.map`` come with the peers), so the row's peer is null.
"""

from __future__ import annotations

from .runner import Result, Session, compare, interleave
from .stats import median

METRIC = "map_throughput"


async def run(s: Session) -> list[Result]:
    n = s.sizes.map_items
    peers = s.peers_for(METRIC)
    samples = await interleave(
        METRIC,
        [s.motes["sync"], *peers],
        lambda c: c.map_throughput(n),
        s.sizes.reps,
        lambda rate: f"{rate:,.0f}/s",
    )
    theirs = {c.name: median(samples[c.name]) for c in peers if c.name in samples}
    name = s.motes["sync"].name
    return compare(METRIC, "items/s", median(samples[name]), theirs, len(samples[name]))
