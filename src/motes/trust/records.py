"""Reading the mesh's signed trust records, and deciding which of them count.

Principals are admitted by the mesh (signed by the mesh key). A grant counts when the
mesh key signed it, or an admitted admin did, or, for ``run`` on one node, that node's
owner did (the owner's consent to host someone else's code); it stops counting when it
expires, when it is deleted (revoked), or when its principal is revoked.
"""

from __future__ import annotations

import logging
import time

import msgspec

from ..errors import IntegrityError
from ..identity import fingerprint, open_signed
from ..identity.records import GRANT_CONTEXT, PRINCIPAL_CONTEXT
from ..identity.signed import Signed
from ..wire import resources
from ..wire.bus import Bus
from ..wire.trust import Grant, Principal

__all__ = [
    "TrustView",
    "read_principal",
    "read_trust",
    "valid_grants",
]

log = logging.getLogger(__name__)


async def read_principal(bus: Bus, pid: str, *, mesh: bytes | None = None) -> Principal | None:
    """One principal's record, checked against the mesh's (public) key when given."""
    entry = await (await bus.kv(resources.PRINCIPALS)).get(pid)
    if entry is None or not entry.value:
        return None
    signer = fingerprint(mesh) if mesh is not None else None
    return open_signed(
        entry.value, Principal, context=PRINCIPAL_CONTEXT, signer=signer, what=f"principal {pid}"
    )


def valid_grants(
    signed: list[bytes], principals: dict[str, Principal], mesh: bytes, *, now: float | None = None
) -> list[Grant]:
    """The grants that count, from their signed records (pure)."""
    at = time.time() if now is None else now
    opened: list[tuple[bytes, Grant]] = []
    for raw in signed:
        try:
            grant = open_signed(raw, Grant, context=GRANT_CONTEXT, what="a grant")
            key = msgspec.msgpack.decode(raw, type=Signed).key  # it decoded just now
        except IntegrityError:
            log.warning("ignoring a grant that does not verify")
            continue
        opened.append((fingerprint(key), grant))

    def live(g: Grant) -> bool:
        p = principals.get(g.principal)
        return p is not None and not p.revoked_at and not (g.until and g.until <= at)

    by_key = {fingerprint(p.key): p for p in principals.values()}
    from_mesh = [g for fp, g in opened if fp == mesh and live(g)]
    admins = {g.principal for g in from_mesh if g.action == "admin"}
    out = list(from_mesh)
    for fp, g in opened:
        issuer = by_key.get(fp)
        if fp == mesh or issuer is None or issuer.revoked_at or not live(g):
            continue
        if issuer.id in admins:
            out.append(g)
        elif g.action == "run":
            node = principals.get(g.resource)
            if node is not None and node.owner == issuer.id:
                out.append(g)
    return out


class TrustView:
    """The principals and grants in force, read from the lattice."""

    def __init__(self, principals: dict[str, Principal], grants: list[Grant]) -> None:
        self.principals = principals
        self.grants = grants

    def principal(self, pid: str) -> Principal | None:
        p = self.principals.get(pid)
        return None if p is None or p.revoked_at else p


async def read_trust(bus: Bus, mesh_key: bytes) -> TrustView:
    """Every principal and the grants in force; ``mesh_key`` is the mesh's public key."""
    mesh = fingerprint(mesh_key)
    kv = await bus.kv(resources.PRINCIPALS)
    principals: dict[str, Principal] = {}
    for key, entry in (await kv.items()).items():
        try:
            principals[key] = open_signed(
                entry.value or b"", Principal, context=PRINCIPAL_CONTEXT, signer=mesh
            )
        except IntegrityError:
            log.warning("ignoring principal %s: its record does not verify", key)
    grants_kv = await bus.kv(resources.GRANTS)
    raw = [e.value or b"" for e in (await grants_kv.items()).values()]
    return TrustView(principals, valid_grants(raw, principals, mesh))
