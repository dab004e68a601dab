"""Leases renew themselves: work done under one may take longer than its TTL.

At the default timing a store repair round (every ``repair_s`` = 5 s) is longer than the
lease TTL (2 s); the lease must hold across a whole round all the same. These run at the
default ratios, scaled down so they take a second or two.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from motes.config import Timing
from motes.store.service import REPAIR_LEASE_KEY, StoreService
from motes.testing import eventually
from motes.wire import resources
from motes.wire.lease import Lease, LeaseLost, holder_of
from motes.wire.memory import MemoryLattice

SCALE = 0.2
DEFAULT = Timing()
TIMING = dataclasses.replace(
    DEFAULT,
    lease_ttl_s=DEFAULT.lease_ttl_s * SCALE,
    repair_s=DEFAULT.repair_s * SCALE,
    scatter_s=DEFAULT.scatter_s * SCALE,
    sweep_s=DEFAULT.repair_s * SCALE,  # every round checks every file: rounds back to back
)


async def test_a_held_lease_outlives_its_ttl_and_keeps_others_out() -> None:
    lattice = MemoryLattice()
    ttl = TIMING.lease_ttl_s
    mine = Lease(await lattice.connect().kv(resources.lease(ttl)), "k", "a", ttl)
    theirs = Lease(await lattice.connect().kv(resources.lease(ttl)), "k", "b", ttl)
    assert await mine.acquire()
    async with asyncio.TaskGroup() as tg:
        holding = tg.create_task(mine.hold())
        for _ in range(int(3 * ttl / 0.05)):  # three TTLs, trying all along
            assert not await theirs.acquire()
            await asyncio.sleep(0.05)
        holding.cancel()
    # Once its holder stops renewing, the lease lapses within a TTL and can be taken.
    async with asyncio.timeout(5 * ttl):
        await theirs.campaign()
    try:
        await mine.renew()
        raise AssertionError("a lapsed holder's renewal must fail")
    except LeaseLost:
        pass


async def test_the_repair_lease_holds_across_a_round_longer_than_its_ttl(
    tmp_path: Path,
) -> None:
    """One repairer at a time, even when a round outlasts the TTL (default ratios)."""
    lattice = MemoryLattice()
    rounds: list[str] = []
    overlap: list[bool] = []
    busy: set[str] = set()

    def service(name: str) -> StoreService:
        svc = StoreService(
            lattice.connect(name),
            node=name,
            directory=tmp_path / name / "store",
            cache_dir=tmp_path / name / "cache",
            labels={},
            timing=TIMING,
        )

        async def slow_round(net: object) -> None:  # a round lasting 2.5 TTLs
            overlap.append(bool(busy))
            busy.add(name)
            rounds.append(name)
            await asyncio.sleep(2.5 * TIMING.lease_ttl_s)
            busy.discard(name)

        svc._repair_all = slow_round  # type: ignore[method-assign]
        return svc

    a, b = service("a"), service("b")
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(a.run()), tg.create_task(b.run())]

        async def three_rounds() -> bool:
            return len(rounds) >= 3

        # Several rounds, each longer than the TTL: every one must run alone.
        await eventually(three_rounds, timeout=30, what="three repair rounds")
        for t in tasks:
            t.cancel()
    assert rounds, "no repair round ran"
    assert len(set(rounds)) == 1, f"the lease changed hands mid-work: {rounds}"
    assert not any(overlap)
    kv = await lattice.connect().kv(resources.lease(TIMING.lease_ttl_s))
    entry = await kv.get(REPAIR_LEASE_KEY)
    assert entry is not None and holder_of(entry)[0] == rounds[0]
