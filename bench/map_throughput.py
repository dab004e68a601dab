"""map_throughput: items/s of ``mesh.map`` over ``map_items`` small items (ints).

Motes maps the sync mote ``bench.echo`` over ``range(map_items)`` and checks every
result arrived, in order. Peers: Ray tasks, ``ray.get([echo.remote(x) for x in ...])``, and
Dask, ``client.gather(client.map(echo, range(n), pure=False))``, results checked. A peer
too slow for ``map_items`` per repetition maps fewer (``Sizes.peer_counts``); a quick run
leaves the peers out (the row's peer is then null).
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
        lambda c: c.map_throughput(s.sizes.count(METRIC, c.name, n)),
        s.sizes.reps,
        lambda rate: f"{rate:,.0f}/s",
    )
    theirs = {c.name: median(samples[c.name]) for c in peers if c.name in samples}
    name = s.motes["sync"].name
    return compare(METRIC, "items/s", median(samples[name]), theirs, len(samples[name]))
