"""A lease: one key of the lease bucket, held by whoever created it and keeps renewing it.

The bucket's entries expire ``lease_ttl`` after their last write, so a holder that dies
frees its lease by itself. Taking a lease is a KV create (it fails while anyone holds
it); renewing is a compare-and-set on the revision we last wrote, so a holder that
stalled and was replaced learns it at its next renewal. The scheduler's leadership and
the store's repairer are both leases.
"""

from __future__ import annotations

import asyncio

import nats.js.errors
from nats.js.kv import KeyValue

__all__ = ["Lease", "LeaseLost"]


class LeaseLost(Exception):
    """Someone else holds the lease now (or a write we made as holder was overtaken)."""


class Lease:
    def __init__(self, kv: KeyValue, key: str, holder: str) -> None:
        self.kv = kv
        self.key = key
        self.holder = holder.encode()
        self.revision = 0
        """The revision of our last write; 0 while we do not hold it."""
        self._turns = asyncio.Lock()

    @property
    def held(self) -> bool:
        return self.revision != 0

    async def acquire(self) -> bool:
        """Take the lease if it is free; False if someone holds it."""
        try:
            self.revision = int(await self.kv.create(self.key, self.holder))
        except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError):
            return False
        return True

    async def renew(self) -> None:
        """Prove we still hold it; ``LeaseLost`` if another does. Renewals take turns.

        A timeout is raised as is: the server may still hold our lease, and the next
        renewal tells.
        """
        async with self._turns:
            try:
                self.revision = await self.kv.update(self.key, self.holder, last=self.revision)
            except (nats.js.errors.KeyWrongLastSequenceError, nats.js.errors.APIError) as exc:
                self.revision = 0
                raise LeaseLost(self.key) from exc
