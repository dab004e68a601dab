"""Grants: who may do what on which resource, decided from signed statements. Pure.

A resource pattern is dot-separated: ``*`` matches one name, a final ``>`` matches the
rest, and a bare ``*`` or ``>`` matches everything (``shop`` matches the app and every
mote in it). ``admin`` implies every action. Grants expire at ``until`` (0: never) and
are void once their principal or the grant itself is revoked.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..wire.trust import Grant

__all__ = ["allowed", "covers", "grants_of", "resource_matches"]


def resource_matches(pattern: str, resource: str) -> bool:
    if pattern in ("*", ">"):
        return True
    want = pattern.split(".")
    have = resource.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have):
            return False
        if token != "*" and token != have[i]:
            return False
    # ``shop`` covers ``shop.price``: a shorter pattern names everything under it.
    return True


def covers(grant: Grant, action: str, resource: str, now: float) -> bool:
    if grant.until and grant.until <= now:
        return False
    if grant.action == "admin":
        return True
    return grant.action == action and resource_matches(grant.resource, resource)


def allowed(
    grants: Iterable[Grant],
    principal: str,
    action: str,
    resource: str,
    *,
    now: float | None = None,
) -> Grant | None:
    """The grant that lets ``principal`` do ``action`` on ``resource``, or None."""
    at = time.time() if now is None else now
    for grant in grants:
        if grant.principal == principal and covers(grant, action, resource, at):
            return grant
    return None


def grants_of(grants: Iterable[Grant], principal: str, *, now: float | None = None) -> list[Grant]:
    at = time.time() if now is None else now
    return [g for g in grants if g.principal == principal and not (g.until and g.until <= at)]
