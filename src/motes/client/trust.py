"""``mesh.trust``: invites, grants, revocation and the audit log, as the connected
principal (an admin for most of it; a node's owner may grant ``run`` on it).

Every statement is signed here with this connection's key and sent to the mesh's
authority, which checks that the signer may make it; nothing is decided client-side.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

from ..errors import RequestError
from ..identity import fingerprint, open_signed, seal
from ..identity.audit import Verified, verify_chain
from ..identity.grants import check_terms
from ..identity.records import GRANT_CONTEXT
from ..trust.client import ask
from ..trust.records import TrustView, read_trust
from ..wire import resources, subjects
from ..wire.messages import Ok
from ..wire.trust import (
    ACTIONS,
    Action,
    AuditEntry,
    Grant,
    GrantRequest,
    InviteRequest,
    Kind,
    RevokeRequest,
    Token,
)
from ._core import Core

__all__ = ["Trust"]

T = TypeVar("T")


class Trust:
    def __init__(self, core: Core) -> None:
        self._core = core

    @property
    def mesh_key(self) -> bytes:
        """The mesh's public key (its root of trust)."""
        key = self._core.config.lattice.mesh_key
        if not key:
            raise RequestError("this mesh does not authenticate: it has no grants or invites")
        return bytes.fromhex(key)

    async def _ask(self, op: str, request: object, answer: type[T]) -> T:
        return await ask(self._core.bus, op, self._core.principal, request, answer)

    async def view(self) -> TrustView:
        """Every principal the mesh admitted, and the grants in force (signatures checked)."""
        return await read_trust(self._core.bus, self.mesh_key)

    async def principal_id(self, who: str) -> str:
        """A principal's id from its id or its (unique) name."""
        view = await self.view()
        if who in view.principals:
            return who
        named = [p.id for p in view.principals.values() if p.name == who]
        if len(named) == 1:
            return named[0]
        if named:
            raise RequestError(f"several principals are named {who!r}: {', '.join(named)}")
        raise RequestError(f"no principal {who!r} in this mesh (`motes grants` lists them)")

    async def invite(
        self,
        kind: Kind,
        name: str,
        *,
        ttl_s: float = 3600.0,
        uses: int = 1,
        grants: Iterable[tuple[str, str]] = (),
    ) -> Token:
        """A signed token that lets ``uses`` people or machines join as ``name``, with
        ``grants`` ((action, resource) pairs) from the moment they join."""
        req = InviteRequest(
            kind=kind,
            name=name,
            ttl_s=ttl_s,
            uses=uses,
            grants=[self._grant("", action, resource) for action, resource in grants],
            servers=list(self._core.config.lattice.servers),
        )
        return await self._ask("invite", req, Token)

    async def grant(
        self,
        principal: str,
        action: str,
        resource: str = "*",
        *,
        until_s: float | None = None,
        budget: dict[str, float] | None = None,
        native: bool = False,
    ) -> Grant:
        """Let ``principal`` (id or name) do ``action`` on ``resource`` (a pattern), for
        ``until_s`` seconds (default: until revoked), within ``budget``; for ``run``,
        ``native`` lets its apps run unsandboxed there (``RUN_BUDGETS`` name the
        budgets a node keeps)."""
        pid = await self.principal_id(principal)
        g = self._grant(pid, action, resource, until_s=until_s, budget=budget, native=native)
        sealed = seal(self._core.key, g, context=GRANT_CONTEXT)
        await self._ask("grant", GrantRequest(grant=sealed), Ok)
        return g

    def _grant(
        self,
        principal: str,
        action: str,
        resource: str,
        *,
        until_s: float | None = None,
        budget: dict[str, float] | None = None,
        native: bool = False,
    ) -> Grant:
        now = time.time()
        grant = Grant(
            id=secrets.token_hex(8),
            principal=principal,
            action=_action(action),
            resource=resource or "*",
            budget=dict(budget or {}),
            native=native,
            until=now + until_s if until_s else 0.0,
            issued_at=now,
            issuer=self._core.principal,
        )
        check_terms(grant)
        return grant

    async def revoke(self, principal: str) -> str:
        """Revoke a principal (id or name): its connections close at once, its grants
        end, its credentials and joins are refused. Returns its id."""
        pid = await self.principal_id(principal)
        await self._ask("revoke", RevokeRequest(principal=pid), Ok)
        return pid

    async def revoke_grant(self, grant_id: str) -> None:
        await self._ask("revoke", RevokeRequest(grant=grant_id), Ok)

    async def audit_log(self, *, follow: bool = False) -> AsyncIterator[AuditEntry]:
        """The audit log's entries in order, each signature checked (an entry that does
        not verify is an ``IntegrityError``); with ``follow``, then each new one."""
        bus = self._core.bus
        async for stored in bus.replay(resources.AUDIT, subjects.AUDIT, follow=follow):
            what = f"audit entry at stream seq {stored.seq}"
            yield open_signed(stored.data, AuditEntry, context="audit1", what=what)

    async def verify_audit(self) -> Verified:
        """Check every entry's signature, every statement's signer and every link;
        ``IntegrityError`` (an ``AuditBroken``) names the first entry that breaks."""
        view = await self.view()
        mesh = fingerprint(self.mesh_key)
        signers = {fingerprint(p.key): p.id for p in view.principals.values()}
        signers[mesh] = "mesh"
        bus = self._core.bus
        raws = [m.data async for m in bus.replay(resources.AUDIT, subjects.AUDIT, follow=False)]
        return verify_chain(raws, authorities={mesh}, signers=signers)


def _action(text: str) -> Action:
    if text not in ACTIONS:
        raise RequestError(f"{text!r} is not an action; actions: {', '.join(ACTIONS)}")
    return text  # type: ignore[return-value]
