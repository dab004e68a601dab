"""Trusting an assignment read from the lattice: a node's (and its workers') one rule.

Anyone allowed to watch the assignments bucket sees every node's; NATS cannot scope a
watch to one key. So a node acts on an assignment only if the scheduler leader that
holds the lease now signed it, for the epoch it holds it in; anything else (a deposed
leader's late write, a forgery) is ignored and logged.
"""

from __future__ import annotations

import logging

from ..errors import IntegrityError
from ..identity.records import open_assignment
from ..wire import resources, subjects
from ..wire.bus import Bus
from ..wire.lease import holder_of
from ..wire.messages import NodeAssignment

__all__ = ["trusted_assignment"]

log = logging.getLogger(__name__)


async def trusted_assignment(
    bus: Bus, node: str, raw: bytes, lease_ttl: float
) -> NodeAssignment | None:
    """The assignment in ``raw`` if the current leader signed it, else None."""
    try:
        assignment, signer = open_assignment(raw)
    except IntegrityError as exc:
        log.error("ignoring an assignment for %s: %s", node, exc)
        return None
    if assignment.node != node:
        log.error("ignoring an assignment for %s written under %s's key", assignment.node, node)
        return None
    kv = await bus.kv(resources.lease(lease_ttl))
    holder, epoch = holder_of(await kv.get(subjects.LEASE_KEY))
    if signer != holder or (epoch and epoch != assignment.epoch):
        log.warning(
            "ignoring an assignment by %s (epoch %d): the leader is %s (epoch %s)",
            signer,
            assignment.epoch,
            holder or "nobody",
            epoch or "?",
        )
        return None
    return assignment
