"""Grants: who may do what on which resource, decided from signed statements. Pure.

A resource pattern is dot-separated: ``*`` matches one name, a final ``>`` matches the
rest, and a bare ``*`` or ``>`` matches everything (``shop`` matches the app and every
mote in it). ``admin`` implies every action. Grants expire at ``until`` (0: never) and
are void once their principal or the grant itself is revoked.

A ``run`` grant carries terms (``RunTerms``): ``native`` (the grantee's apps may run as
ordinary processes there; without it only sandboxed, in wasm) and budgets, enforced by
the node: ``cpu_s_per_day`` (CPU seconds its instances there may use per UTC day),
``memory_mb`` (each instance's memory limit) and ``instances`` (how many at once). When
several ``run`` grants name the same person, the one for the node itself counts over
one for ``*``, and among those the newest.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import RequestError
from ..wire.trust import Grant

__all__ = [
    "RUN_BUDGETS",
    "RunTerms",
    "allowed",
    "check_terms",
    "covers",
    "grants_of",
    "resource_matches",
    "run_terms",
]

RUN_BUDGETS: tuple[str, ...] = ("cpu_s_per_day", "memory_mb", "instances")
"""The budgets a ``run`` grant may carry (``Grant.budget`` keys)."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTerms:
    """What one ``run`` grant lets a person's apps do on a node (None: no bound)."""

    grant: str = ""
    native: bool = False
    cpu_s_per_day: float | None = None
    memory_mb: int | None = None
    instances: int | None = None

    @classmethod
    def of(cls, grant: Grant) -> RunTerms:
        b = grant.budget
        memory, instances = b.get("memory_mb"), b.get("instances")
        return cls(
            grant=grant.id,
            native=grant.native,
            cpu_s_per_day=b.get("cpu_s_per_day"),
            memory_mb=int(memory) if memory is not None else None,
            instances=int(instances) if instances is not None else None,
        )

    def describe(self) -> str:
        """``native, 2 instances, 512 MB, 3600 cpu-s/day``, as ``motes grants`` shows it."""
        parts = ["native" if self.native else "sandboxed only"]
        if self.instances is not None:
            parts.append(f"{self.instances} instance(s)")
        if self.memory_mb is not None:
            parts.append(f"{self.memory_mb} MB each")
        if self.cpu_s_per_day is not None:
            parts.append(f"{self.cpu_s_per_day:g} cpu-s/day")
        return ", ".join(parts)


def check_terms(grant: Grant) -> None:
    """``RequestError`` unless ``native`` and the budget fit the grant's action."""
    if grant.action != "run":
        if grant.native:
            raise RequestError(f"native is a term of `run` grants, not of `{grant.action}`")
        if grant.budget:
            raise RequestError(f"budgets are terms of `run` grants, not of `{grant.action}`")
        return
    for key, value in grant.budget.items():
        if key not in RUN_BUDGETS:
            raise RequestError(f"no run budget {key!r}; budgets: {', '.join(RUN_BUDGETS)}")
        whole = key != "cpu_s_per_day"
        if not value > 0 or (whole and value != int(value)):
            kind = "a whole number" if whole else "a number"
            raise RequestError(f"run budget {key}={value!r}: it must be {kind} above 0")


def run_terms(
    grants: Iterable[Grant], person: str, node: str, *, now: float | None = None
) -> RunTerms | None:
    """The terms ``person``'s apps run under on ``node``: the newest ``run`` grant for
    the node itself, else the newest for every node; None without one."""
    at = time.time() if now is None else now
    mine = [
        g
        for g in grants
        if g.principal == person
        and g.action == "run"
        and g.resource in (node, "*", ">")
        and not (g.until and g.until <= at)
    ]
    if not mine:
        return None
    best = max(mine, key=lambda g: (g.resource == node, g.issued_at, g.id))
    return RunTerms.of(best)
