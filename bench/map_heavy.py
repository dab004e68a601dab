"""map_heavy: seconds for one ``map`` over 300 items of 20 ms each, asleep and on the CPU.

A 3-node mesh of its own (default ``Timing``, embedded nats-server on 127.0.0.1) runs
``bench/apps/heavy.py``: ``nap`` sleeps 20 ms an item, ``burn`` spins until it has used
20 ms of CPU; each has three instances, one per node. Motes maps each over
``range(300)``; the same items go through ``concurrent.futures.ProcessPoolExecutor.map``
with 3 workers (created once, warmed up, the function ``bench/drivers/_peer.py``'s
``heavy``) and through Ray tasks (3 at once). Every result is checked, in order.

Ideal times: 300 x 20 ms / 3 = 2 s asleep; on a 2-core machine, 300 x 20 ms of CPU / 2
cores = 3 s burning. Rows ``map_heavy_nap_s`` and ``map_heavy_burn_s`` (lower is better);
the goals are ratios to the process pool (<= 1.3 asleep, <= 1.2 burning).

Run alone: ``python -m bench --only map_heavy``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import sys
import tempfile
from pathlib import Path

from motes.client import Mesh
from motes.config import Timing
from motes.testing import eventually, local_mesh

from .contenders import Contender, MotesContender
from .drivers import _peer
from .runner import POOL, Result, Session, compare, interleave
from .stats import median

__all__ = ["ITEMS", "KINDS", "MS", "PoolContender", "run"]

APP = Path(__file__).resolve().parent / "apps" / "heavy.py"
KINDS = ("nap", "burn")
ITEMS = 300
MS = 20
WORKERS = 3


class PoolContender(Contender):
    """``ProcessPoolExecutor(3).map`` in the harness's own Python: the floor of one box."""

    name = POOL

    def __init__(self) -> None:
        self.pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def start(self) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(WORKERS)
        await self.map_heavy("nap", WORKERS * 4, 1)  # every worker process started

    async def stop(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    async def map_heavy(self, kind: str, n: int, ms: int) -> float:
        assert self.pool is not None
        pool = self.pool
        work = functools.partial(_peer.heavy, kind, ms=ms)

        def timed() -> float:
            t0 = _peer.time.perf_counter()
            out = list(pool.map(work, range(n)))
            dt = _peer.time.perf_counter() - t0
            if out != list(range(n)):
                raise RuntimeError("wrong results")
            return dt

        return await asyncio.to_thread(timed)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def run(s: Session) -> list[Result]:
    peers: list[Contender] = [PoolContender(), *s.peers_for("map_heavy")]
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="mb-heavy-") as tmp:
        async with local_mesh(Path(tmp), nodes=3, timing=Timing()) as mesh:
            async with mesh.client() as client:
                await client.deploy(APP)
                await eventually(lambda: _spread(client), timeout=60, what="3 + 3 instances")
                motes = MotesContender(client, "heavy", "motes")
                await peers[0].start()
                try:
                    for kind in KINDS:
                        samples = await interleave(
                            f"map_heavy {kind}",
                            [motes, *peers],
                            lambda c, kind=kind: c.map_heavy(kind, ITEMS, MS),
                            s.sizes.reps,
                            lambda sec: f"{sec:.2f} s",
                        )
                        theirs = {
                            c.name: median(samples[c.name]) for c in peers if c.name in samples
                        }
                        rows += compare(
                            f"map_heavy_{kind}_s",
                            "s",
                            median(samples["motes"]),
                            theirs,
                            len(samples["motes"]),
                        )
                finally:
                    await peers[0].stop()
    return rows


async def _spread(client: Mesh) -> bool:
    """Both motes have three ready instances, on three different nodes."""
    nodes: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for p in await client.ops.ps():
        if p.app == "heavy" and p.state == "ready":
            nodes[p.mote].add(p.node)
    return all(len(v) == WORKERS for v in nodes.values())
