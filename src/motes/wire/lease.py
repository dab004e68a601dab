"""A lease: one key of the lease bucket, held by whoever created it and keeps renewing it.

The bucket's entries expire ``ttl`` after their last write, so a holder that dies frees
its lease by itself. Taking a lease is a KV create (it fails while anyone holds it);
renewing is a compare-and-set on the revision we last wrote, so a holder that stalled and
was replaced learns it at its next renewal. ``hold`` renews at a quarter of the TTL for as
long as it runs, so the work done under a lease never has to renew it itself, however
long one round of that work takes. The scheduler's leadership and the store's repairer
are both leases; the revision a holder won with is its epoch (the fencing token).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..errors import Conflict, RetryableError
from .bus import KV, Entry

__all__ = ["Lease", "LeaseLost", "holder_of"]

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Someone else holds the lease now (or we could not prove we still do)."""


def holder_of(entry: Entry | None) -> tuple[str, int]:
    """(holder, epoch) a lease entry names; epoch 0 until its first renewal says it."""
    if entry is None or not entry.value:
        return "", 0
    holder, _, epoch = entry.value.decode(errors="replace").partition(" ")
    return holder, int(epoch) if epoch.isdigit() else 0


class Lease:
    def __init__(self, kv: KV, key: str, holder: str, ttl: float) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder.encode()
        self.ttl = ttl
        self.revision = 0
        """The revision of our last write; 0 while we do not hold it."""
        self.epoch = 0
        """The revision we took the lease with."""
        self._turns = asyncio.Lock()
        self._renewed = 0.0

    @property
    def held(self) -> bool:
        return self.revision != 0

    async def acquire(self) -> bool:
        """Take the lease if it is free; False if someone holds it (or the lattice is away)."""
        try:
            self.revision = await self.kv.create(self.key, self.holder)
        except Conflict:
            return False
        except RetryableError as exc:
            log.debug("lease %s: %s", self.key, exc)
            return False
        self.epoch = self.revision
        self._renewed = time.monotonic()
        return True

    async def campaign(self) -> int:
        """Wait until we hold the lease; returns the epoch."""
        while True:
            if await self.acquire():
                return self.epoch
            await asyncio.sleep(self.ttl / 4)

    async def renew(self) -> None:
        """Prove we still hold it; ``LeaseLost`` if another does. Renewals take turns.

        A timeout is raised as is: the server may still hold our lease, and the next
        renewal tells.
        """
        async with self._turns:
            if not self.held:
                raise LeaseLost(self.key)
            try:
                value = self.holder + f" {self.epoch}".encode()  # who, and since when
                self.revision = await self.kv.update(self.key, value, last=self.revision)
            except Conflict as exc:
                self.revision = 0
                raise LeaseLost(self.key) from exc
            self._renewed = time.monotonic()

    async def hold(self) -> None:
        """Renew every quarter of the TTL until cancelled; ``LeaseLost`` when it is gone,
        or when no renewal has succeeded for a whole TTL (then it may have lapsed)."""
        while True:
            await asyncio.sleep(self.ttl / 4)
            try:
                await self.renew()
            except LeaseLost:
                raise
            except RetryableError as exc:
                if time.monotonic() - self._renewed >= self.ttl:
                    self.revision = 0
                    raise LeaseLost(f"{self.key}: not renewed for {self.ttl:g} s ({exc})") from exc
                log.debug("lease %s: renewal failed (%s); trying again", self.key, exc)

    def release(self) -> None:
        """Forget that we hold it (it lapses by itself within the TTL)."""
        self.revision = 0
