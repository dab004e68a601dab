"""The mesh's authority: the one service that holds the account key and admits, grants,
revokes and mints credentials. It runs on the mesh owner's machine (``motes up`` starts
it as ``python -m motes.trust.authority``).

Requests arrive on ``motes.auth.{op}.{principal}``. Only ``principal`` may publish
there (its credential says so), so the subject is proof of who asks; the authority
then decides from the principal's record and its grants. Operations:

- ``join.{invite}``: a new key proves it holds an invite; it is admitted.
- ``renew.{p}``: fresh credentials for ``p`` with what its grants allow now.
- ``creds.{node}``: credentials for a node's own processes: its store service, its
  scheduler (with a ``schedule`` grant), a warm worker, an instance (only one the
  current assignment puts on that node) and that instance's user code (scoped to what
  the app's deployer was granted).
- ``invite``, ``grant``, ``revoke``, ``admit`` (admins); ``deploy`` and ``rollback``
  (whoever holds ``deploy`` for the app).

Every admission, grant, revocation and deploy is appended to the audit log.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import msgspec

from .._proc import process_main, serve_until_drained, wait_until_released
from ..config import Config, load_config
from ..errors import BadMessage, Conflict, Forbidden, IntegrityError, MotesError, RequestError
from ..identity import KeyKind, SigningKey, fingerprint, open_signed, seal, short_id
from ..identity.audit import GENESIS, chain_entry, entry_hash
from ..identity.grants import allowed, check_terms, grants_of
from ..identity.invites import encode_token, join_proof
from ..identity.keys import verify_signature
from ..identity.records import APP_CONTEXT, GRANT_CONTEXT, PRINCIPAL_CONTEXT, open_app
from ..runtime.assignments import trusted_assignment
from ..wire import acl, resources, subjects
from ..wire.bus import Bus, Message, Subscription
from ..wire.codec import decode, encode, encode_error
from ..wire.messages import AppRecord, Ok
from ..wire.trust import (
    ACTIONS,
    Action,
    Admit,
    AuditEntry,
    CredReply,
    CredRequest,
    Grant,
    GrantRequest,
    Hub,
    InstanceCreds,
    Invite,
    InviteRequest,
    InviteState,
    Joined,
    JoinRequest,
    MeshInfo,
    Principal,
    Renewed,
    RevokeRequest,
    ServerSetup,
    Token,
)
from .keyring import MeshKeys, write_secret
from .records import read_principal, read_trust

__all__ = ["IDENTITY_TTL_S", "SESSION_TTL_S", "Authority"]

log = logging.getLogger(__name__)

SESSION_TTL_S = 3600.0
"""Session credentials (what a connection presents) last an hour, and are renewed while
their holder stays admitted: a revocation that cannot reach a cut-off machine still
ends its access within the hour."""
IDENTITY_TTL_S = 30 * 86400.0
"""A principal's identity credential may only ask for a new session; it lasts 30 days
(renewed with every session), so a machine that was away for a month must rejoin."""
INVITE_USES_MAX = 100


@dataclass
class _Issued:
    """Keys the authority minted session credentials for, per principal, with their
    expiry: what a revocation must void besides the principal's own key."""

    path: Path
    keys: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> _Issued:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            data = {}
        return cls(path, {p: {k: float(e) for k, e in ks.items()} for p, ks in data.items()})

    def add(self, principal: str, key: bytes, expires: float) -> None:
        now = time.time()
        mine = {k: e for k, e in self.keys.get(principal, {}).items() if e > now}
        mine[key.hex()] = expires
        self.keys[principal] = mine
        write_secret(self.path, json.dumps(self.keys))

    def of(self, principal: str) -> list[bytes]:
        now = time.time()
        return [bytes.fromhex(k) for k, e in self.keys.get(principal, {}).items() if e > now]


_Handler = Callable[[str, bytes], Awaitable[bytes]]


class Authority:
    def __init__(
        self,
        bus: Bus,
        system: Bus | None,
        keys: MeshKeys,
        *,
        owner: bytes,
        servers: list[str],
        lease_ttl: float = 2.0,
        hub: Hub | None = None,
    ) -> None:
        """``hub``: the machine this authority runs on is a hub (``motes up --listen``)."""
        self.bus = bus
        self.system = system
        self.keys = keys
        self.owner = owner
        self.owner_id = short_id(KeyKind.PERSON, owner)
        self.servers = servers
        self.lease_ttl = lease_ttl
        self.hub = hub
        self.issued = _Issued.load(keys.dir / "issued.json")
        self._audit_lock = asyncio.Lock()
        self._head: tuple[int, bytes] | None = None
        self._ops: dict[str, _Handler] = {
            "join": self._join,
            "renew": self._renew,
            "creds": self._creds,
            "invite": self._invite,
            "grant": self._grant,
            "revoke": self._revoke,
            "admit": self._admit,
            "deploy": self._deploy,
        }

    # --- running -----------------------------------------------------------------------

    async def run(self, *, started: asyncio.Event | None = None) -> None:
        await self.prepare()
        sub = await self.bus.subscribe(subjects.AUTH_ALL, queue="q.auth")
        async with asyncio.TaskGroup() as tg:
            if started is not None:
                started.set()
            log.info("authority of mesh %s ready", self.keys.mesh_id)
            await self._serve(sub, tg)

    async def prepare(self) -> None:
        """Every bucket and stream the mesh uses exists; the owner is an admitted admin.

        Made here once, all at once (each is a JetStream request the server answers after
        writing the stream's metadata), rather than one after another or by each process
        that uses one."""
        await asyncio.gather(
            *(self.bus.objects(b) if b.objects else self.bus.kv(b) for b in resources.BUCKETS),
            *(self.bus.ensure_stream(stream) for stream in resources.STREAMS),
            self.bus.kv(resources.lease(self.lease_ttl)),
        )
        if self.hub is not None:
            await self.register_hub(self.hub)
        if await read_principal(self.bus, self.owner_id) is None:
            owner = Principal(
                id=self.owner_id,
                kind="person",
                name="owner",
                key=self.owner,
                admitted_at=time.time(),
            )
            await self._put_principal(owner)
            await self._audit("mesh", self.owner_id, self.keys.mesh_id, detail="the mesh began")
            grant = Grant(
                id=secrets.token_hex(8),
                principal=self.owner_id,
                action="admin",
                resource="*",
                issued_at=time.time(),
                issuer=self.keys.mesh_id,
            )
            await self._store_grant(grant, seal(self.keys.mesh, grant, context=GRANT_CONTEXT))

    async def _serve(self, sub: Subscription, tg: asyncio.TaskGroup) -> None:
        async for msg in sub:
            tg.create_task(self._answer(msg))

    async def _answer(self, msg: Message) -> None:
        parsed = subjects.parse_auth(msg.subject)
        try:
            if parsed is None or parsed[0] not in self._ops:
                raise BadMessage(f"no such request {msg.subject!r}")
            op, principal = parsed
            reply = await self._ops[op](principal, msg.data)
        except MotesError as exc:
            if not isinstance(exc, Forbidden | RequestError | IntegrityError):
                log.warning("authority: %s failed: %s", msg.subject, exc)
            reply = encode_error(exc)
        except Exception as exc:  # a bug of ours must cost one request, not the authority
            log.exception("authority: %s", msg.subject)
            reply = encode_error(MotesError(f"the authority failed: {exc!r}"))
        if msg.reply:
            try:
                await self.bus.publish(msg.reply, reply)
            except MotesError as exc:
                log.debug("authority: reply lost: %s", exc)

    # --- records -----------------------------------------------------------------------

    async def _put_principal(self, p: Principal) -> None:
        kv = await self.bus.kv(resources.PRINCIPALS)
        await kv.put(p.id, seal(self.keys.mesh, p, context=PRINCIPAL_CONTEXT))

    async def _principal(self, pid: str) -> Principal:
        p = await read_principal(self.bus, pid, mesh=self.keys.mesh.public)
        if p is None:
            raise Forbidden(pid, "act in", f"mesh {self.keys.mesh_id}", "not admitted")
        if p.revoked_at:
            raise Forbidden(pid, "act in", f"mesh {self.keys.mesh_id}", "revoked")
        return p

    async def _grants(self) -> list[Grant]:
        return (await read_trust(self.bus, self.keys.mesh.public)).grants

    async def _store_grant(self, grant: Grant, sealed: bytes) -> None:
        kv = await self.bus.kv(resources.GRANTS)
        await kv.put(grant.id, sealed)
        await self._audit(
            "grant",
            grant.issuer,
            grant.principal,
            statement=sealed,
            detail=f"{grant.action} {grant.resource}",
        )

    async def _require(self, principal: str, action: str, resource: str) -> Grant:
        await self._principal(principal)
        grant = allowed(await self._grants(), principal, action, resource)
        if grant is None:
            raise Forbidden(principal, action, resource, "no grant allows it (`motes grant`)")
        return grant

    # --- the audit log -------------------------------------------------------------------

    async def _audit(
        self,
        kind: str,
        actor: str,
        subject: str,
        *,
        statement: bytes = b"",
        detail: str = "",
    ) -> None:
        async with self._audit_lock:
            if self._head is None:
                self._head = await self._last_entry()
            seq, prev = self._head
            entry = AuditEntry(
                seq=seq + 1,
                prev=prev,
                at=time.time(),
                kind=kind,  # type: ignore[arg-type]
                actor=actor,
                subject=subject,
                statement=statement,
                detail=detail,
            )
            raw = chain_entry(self.keys.mesh, entry)
            await self.bus.publish_durable(subjects.AUDIT, raw)
            self._head = (entry.seq, entry_hash(raw))

    async def _last_entry(self) -> tuple[int, bytes]:
        last: tuple[int, bytes] = (0, GENESIS)
        async for stored in self.bus.replay(resources.AUDIT, subjects.AUDIT, follow=False):
            try:
                entry = open_signed(stored.data, AuditEntry, context="audit1")
            except IntegrityError:
                continue
            last = (entry.seq, entry_hash(stored.data))
        return last

    # --- credentials ---------------------------------------------------------------------

    def _mint(
        self, principal: str, key: bytes, role: str, scope: acl.Scope, ttl: float, name: str
    ) -> tuple[str, float]:
        expires = time.time() + ttl
        jwt = self.keys.user_jwt(
            key, name=name, permissions=acl.permissions(role, scope), ttl_s=ttl
        )
        self.issued.add(principal, key, expires)
        return jwt, expires

    def _identity(self, p: Principal) -> str:
        perms = acl.permissions("identity", acl.Scope(principal=p.id))
        return self.keys.user_jwt(
            p.key, name=f"{p.kind} {p.name}", permissions=perms, ttl_s=IDENTITY_TTL_S
        )

    async def _session(self, p: Principal) -> tuple[str, float]:
        grants = grants_of(await self._grants(), p.id)
        if any(g.action == "admin" for g in grants):
            role = "admin"
        elif p.kind == "node":
            role = "node"
        else:
            role = "person"
        scope = acl.Scope(
            principal=p.id,
            node=p.id if p.kind == "node" else "",
            calls=tuple(sorted({g.resource for g in grants if g.action in ("call", "deploy")})),
            deploys=tuple(sorted({g.resource for g in grants if g.action == "deploy"})),
            stores=any(g.action in ("read", "write") for g in grants),
            runs=tuple(sorted({g.resource for g in grants if g.action == "run"})),
        )
        return self._mint(p.id, p.key, role, scope, SESSION_TTL_S, f"{p.kind} {p.name}")

    async def _renew(self, principal: str, data: bytes) -> bytes:
        p = await self._principal(principal)
        jwt, expires = await self._session(p)
        # The identity credential slides along with the session.
        return encode(Renewed(session=jwt, identity=self._identity(p), expires=expires))

    async def _creds(self, node: str, data: bytes) -> bytes:
        req = decode(data, CredRequest)
        p = await self._principal(node)
        if p.kind != "node":
            raise Forbidden(node, "ask for", f"{req.role} credentials", "only nodes do")
        if not req.keys:
            raise BadMessage("a credential request names no key")
        key = req.keys[0]
        base = acl.Scope(principal=short_id(KeyKind.NODE, key), node=node, wid=req.wid)
        if req.role == "store":
            jwt, exp = self._mint(node, key, "store", base, SESSION_TTL_S, f"store {p.name}")
        elif req.role == "scheduler":
            await self._require(node, "schedule", "*")
            jwt, exp = self._mint(
                node, key, "scheduler", base, SESSION_TTL_S, f"scheduler {p.name}"
            )
        elif req.role == "worker":
            jwt, exp = self._mint(node, key, "worker", base, SESSION_TTL_S, f"worker {req.wid}")
        elif req.role == "link":
            # The hubs hold every revocation, so a revoked machine's link is cut there at
            # once: the link credential may last as long as an identity.
            schedules = allowed(await self._grants(), node, "schedule", "*") is not None
            scope = acl.Scope(principal=node, node=node, schedules=schedules)
            jwt, exp = self._mint(node, key, "link", scope, IDENTITY_TTL_S, f"link {p.name}")
        elif req.role == "instance":
            return encode(await self._instance(p, req))
        else:
            raise BadMessage(f"no credentials for role {req.role!r}")
        return encode(CredReply(jwt=jwt, expires=exp))

    async def _instance(self, node: Principal, req: CredRequest) -> CredReply:
        """Credentials for an instance the current assignment puts on this node: its
        shell, and its user code with the deployer's authority."""
        if len(req.keys) != 2:
            raise BadMessage("an instance needs two keys: its shell's and its code's")
        kv = await self.bus.kv(resources.PLACE)
        entry = await kv.get(node.id)
        spec = None
        if entry is not None and entry.value:
            assignment = await trusted_assignment(self.bus, node.id, entry.value, self.lease_ttl)
            if assignment is not None:
                spec = next((i for i in assignment.instances if i.iid == req.iid), None)
        if spec is None:
            raise Forbidden(node.id, "serve", req.iid, "it is not assigned to this node")
        _, deployer = await self._app(spec.app)
        shell, app_key = req.keys
        scope = acl.Scope(
            principal=short_id(KeyKind.NODE, shell),
            node=node.id,
            app=spec.app,
            mote=spec.mote,
            wid=req.wid,
        )
        shell_jwt, exp = self._mint(
            node.id, shell, "instance", scope, SESSION_TTL_S, f"{spec.app}.{spec.mote} {req.iid}"
        )
        grants = grants_of(await self._grants(), deployer)
        calls = {g.resource for g in grants if g.action in ("call", "deploy")} | {spec.app}
        app_scope = acl.Scope(
            principal=short_id(KeyKind.NODE, app_key),
            node=node.id,
            calls=tuple(sorted(calls)),
            stores=True,
        )
        app_jwt, _ = self._mint(
            node.id, app_key, "app", app_scope, SESSION_TTL_S, f"app {spec.app}"
        )
        self.issued.add(deployer, app_key, exp)
        return CredReply(
            jwt=shell_jwt,
            expires=exp,
            instance=InstanceCreds(
                shell=shell_jwt, app=app_jwt, convergence=self.keys.convergence(spec.app)
            ),
        )

    async def _app(self, name: str) -> tuple[AppRecord, str]:
        kv = await self.bus.kv(resources.APPS)
        entry = await kv.get(name)
        if entry is None or not entry.value:
            raise Forbidden("?", "run", name, "no such app")
        return open_app(entry.value)

    # --- joining ---------------------------------------------------------------------

    async def _invite(self, admin: str, data: bytes) -> bytes:
        await self._require(admin, "admin", "invite")
        req = decode(data, InviteRequest)
        if req.kind not in ("person", "node"):
            raise BadMessage(f"an invite is for a person or a node, not {req.kind!r}")
        uses = max(1, min(req.uses, INVITE_USES_MAX))
        iid = "i" + secrets.token_hex(8)
        holder = SigningKey.generate(KeyKind.PERSON)
        expires = time.time() + max(1.0, req.ttl_s)
        jwt = self.keys.user_jwt(
            holder.public,
            name=f"invite {iid}",
            permissions=acl.permissions("invitee", acl.Scope(principal=iid)),
            ttl_s=max(1.0, req.ttl_s),
        )
        grants = [
            msgspec.structs.replace(g, id=g.id or secrets.token_hex(8), issuer=admin)
            for g in req.grants
        ]
        for g in grants:
            check_terms(g)
        if req.hub and req.kind != "node":
            raise BadMessage("only a machine (a node) can be a hub")
        invite = Invite(
            id=iid,
            mesh=await self._mesh_info(req.servers),
            hub=req.hub,
            kind=req.kind,
            name=req.name,
            expires=expires,
            uses=uses,
            grants=grants,
            jwt=jwt,
            seed=holder.seed,
        )
        record = InviteState(
            id=iid,
            kind=req.kind,
            name=req.name,
            expires=expires,
            uses=uses,
            grants=grants,
            issuer=admin,
            hub=req.hub,
        )
        kv = await self.bus.kv(resources.INVITES)
        await kv.create(iid, encode(record))
        await self._audit("invite", admin, iid, detail=f"{req.kind} {req.name}, {uses} use(s)")
        return encode(Token(token=encode_token(self.keys.mesh, invite), id=iid, expires=expires))

    async def _join(self, iid: str, data: bytes) -> bytes:
        req = decode(data, JoinRequest)
        if req.mesh != self.keys.mesh_id:
            raise Forbidden(
                iid, "join", f"mesh {self.keys.mesh_id}", f"the invite is for mesh {req.mesh}"
            )
        if not verify_signature(req.key, req.proof, join_proof(iid, req.mesh)):
            raise IntegrityError("the join request", "its proof does not match its key")
        kv = await self.bus.kv(resources.INVITES)
        entry = await kv.get(iid)
        if entry is None or not entry.value:
            raise Forbidden(iid, "join", f"mesh {self.keys.mesh_id}", "no such invite")
        state = decode(entry.value, InviteState)
        if state.expires <= time.time():
            raise Forbidden(iid, "join", f"mesh {self.keys.mesh_id}", "the invite expired")
        if state.used >= state.uses:
            raise Forbidden(iid, "join", f"mesh {self.keys.mesh_id}", "the invite was already used")
        try:
            await kv.update(
                iid,
                encode(msgspec.structs.replace(state, used=state.used + 1)),
                last=entry.revision,
            )
        except Conflict:
            raise Forbidden(
                iid, "join", f"mesh {self.keys.mesh_id}", "the invite was already used"
            ) from None
        kind = KeyKind.NODE if state.kind == "node" else KeyKind.PERSON
        pid = short_id(kind, req.key)
        existing = await read_principal(self.bus, pid, mesh=self.keys.mesh.public)
        if existing is not None and existing.revoked_at:
            raise Forbidden(pid, "join", f"mesh {self.keys.mesh_id}", "it was revoked")
        principal = Principal(
            id=pid,
            kind=state.kind,
            name=req.name or state.name,
            key=req.key,
            owner=state.issuer if state.kind == "node" else "",
            hub=state.hub,
            admitted_at=time.time(),
            invite=iid,
        )
        await self._put_principal(principal)
        await self._audit("join", pid, iid, statement=b"", detail=f"{state.kind} {principal.name}")
        for g in state.grants:
            grant = msgspec.structs.replace(
                g, principal=pid, issued_at=time.time(), issuer=self.keys.mesh_id
            )
            await self._store_grant(grant, seal(self.keys.mesh, grant, context=GRANT_CONTEXT))
        return encode(await self._joined(principal))

    async def _admit(self, admin: str, data: bytes) -> bytes:
        """An admin admits a key directly (the local nodes ``motes up`` starts)."""
        await self._require(admin, "admin", "admit")
        req = decode(data, Admit)
        kind = KeyKind.NODE if req.kind == "node" else KeyKind.PERSON
        pid = short_id(kind, req.key)
        principal = await read_principal(self.bus, pid, mesh=self.keys.mesh.public)
        if principal is None or principal.revoked_at:
            principal = Principal(
                id=pid,
                kind=req.kind,
                name=req.name,
                key=req.key,
                owner=req.owner or (admin if req.kind == "node" else ""),
                admitted_at=time.time(),
            )
            await self._put_principal(principal)
            await self._audit(
                "join", pid, admin, detail=f"{req.kind} {req.name}, admitted by {admin}"
            )
        have = grants_of(await self._grants(), pid)
        for action in req.grants:
            if action not in ACTIONS:
                raise BadMessage(f"no such action {action!r}; actions: {', '.join(ACTIONS)}")
            if not any(g.action == action for g in have):
                grant = Grant(
                    id=secrets.token_hex(8),
                    principal=pid,
                    action=cast(Action, action),
                    resource="*",
                    issued_at=time.time(),
                    issuer=self.keys.mesh_id,
                )
                await self._store_grant(grant, seal(self.keys.mesh, grant, context=GRANT_CONTEXT))
        return encode(await self._joined(principal))

    async def _joined(self, principal: Principal) -> Joined:
        session, expires = await self._session(principal)
        return Joined(
            principal=principal,
            session=session,
            identity=self._identity(principal),
            expires=expires,
            mesh=await self._mesh_info(),
            setup=await self._setup() if principal.kind == "node" else None,
        )

    # --- hubs ------------------------------------------------------------------------

    async def _hubs(self) -> list[Hub]:
        kv = await self.bus.kv(resources.HUBS)
        out = []
        for key, entry in (await kv.items()).items():
            try:
                out.append(decode(entry.value or b"", Hub))
            except BadMessage:
                log.warning("ignoring hub record %s: unreadable", key)
        return sorted(out, key=lambda h: h.name)

    async def _mesh_info(self, servers: list[str] | None = None) -> MeshInfo:
        """The mesh as a joiner sees it: where clients connect (the hubs, once there
        are any) and, off loopback, the CA that vouches for the hubs' certificates."""
        hubs = await self._hubs()
        if not hubs:
            return self.keys.info(servers or self.servers)
        return msgspec.structs.replace(
            self.keys.info([h.client for h in hubs]), ca=_ca_certificate(self.keys.mesh)
        )

    async def _setup(self) -> ServerSetup:
        return ServerSetup(
            operator=self.keys.operator_jwt(),
            system_account=self.keys.system_nkey,
            accounts={
                self.keys.system_nkey: self.keys.system_jwt(),
                self.keys.account_nkey: self.keys.account_jwt(),
            },
            domain=subjects.MESH_DOMAIN,
            hubs=await self._hubs(),
        )

    async def register_hub(self, hub: Hub) -> None:
        """Record a hub: joiners and nodes are told to reach the mesh there."""
        kv = await self.bus.kv(resources.HUBS)
        await kv.put(hub.id, encode(hub))

    # --- grants and revocation -------------------------------------------------------

    async def _grant(self, admin: str, data: bytes) -> bytes:
        req = decode(data, GrantRequest)
        p = await self._principal(admin)
        grant = open_signed(
            req.grant, Grant, context=GRANT_CONTEXT, signer=fingerprint(p.key), what="the grant"
        )
        if grant.action == "run" and grant.resource != "*":
            # A node's owner consents for their own node; anything else needs admin.
            target = await read_principal(self.bus, grant.resource, mesh=self.keys.mesh.public)
            if target is None or target.owner != admin:
                await self._require(admin, "admin", "grant")
        else:
            await self._require(admin, "admin", "grant")
        if grant.issuer != admin:
            raise IntegrityError("the grant", "its issuer is not the one signing it")
        check_terms(grant)
        await self._principal(grant.principal)
        await self._store_grant(grant, req.grant)
        return encode(Ok(grant.id))

    async def _revoke(self, admin: str, data: bytes) -> bytes:
        await self._require(admin, "admin", "revoke")
        req = decode(data, RevokeRequest)
        if req.grant:
            kv = await self.bus.kv(resources.GRANTS)
            await kv.delete(req.grant)
            await self._audit("revoke", admin, req.grant, detail="grant")
            return encode(Ok(req.grant))
        p = await self._principal(req.principal)
        if p.id == self.owner_id:
            raise RequestError("the mesh's owner cannot be revoked")
        t0 = time.time()
        voided = msgspec.structs.replace(p, revoked_at=t0)
        await self._put_principal(voided)
        kv = await self.bus.kv(resources.GRANTS)
        for g in grants_of(await self._grants(), p.id):
            await kv.delete(g.id)
        keys = [p.key, *self.issued.of(p.id)]
        self.keys.revoke(keys, at=t0)
        await self._push_account()
        await self._audit("revoke", admin, p.id, detail=f"{p.kind} {p.name}")
        return encode(Ok({"principal": p.id, "keys": len(keys)}))

    async def _push_account(self) -> None:
        """Send the account with its new revocations to the server: it closes the
        revoked users' connections and refuses their credentials from now on."""
        if self.system is None:
            raise RequestError("this authority has no system account connection")
        reply = await self.system.request(
            "$SYS.REQ.CLAIMS.UPDATE", self.keys.account_jwt().encode(), timeout=5.0
        )
        try:
            answer = json.loads(reply.data)
        except ValueError:
            answer = {}
        if answer.get("error"):
            raise MotesError(f"the lattice refused the account update: {answer['error']}")

    # --- deploys -----------------------------------------------------------------------

    async def _deploy(self, person: str, data: bytes) -> bytes:
        p = await self._principal(person)
        record = open_signed(
            data, AppRecord, context=APP_CONTEXT, signer=fingerprint(p.key), what="the app record"
        )
        await self._require(person, "deploy", record.name)
        kv = await self.bus.kv(resources.APPS)
        await kv.put(record.name, data)
        kind = "deploy" if not record.previous or record.digest != record.previous else "rollback"
        await self._audit(kind, person, record.name, statement=data, detail=record.digest)
        return encode(Ok(record.digest))


def _ca_certificate(mesh: SigningKey) -> bytes:
    """The mesh CA's certificate; X.509 (a large import) only for meshes with hubs."""
    from .tls import ca_certificate

    return ca_certificate(mesh)


# --- the process ---------------------------------------------------------------------

_ED25519 = "cryptography.hazmat.primitives.asymmetric.ed25519"
"""What the authority signs with (``identity.keys`` imports it on first use)."""


async def _main(config: Config, draining: asyncio.Event) -> None:
    from ..wire._nats import NatsBus

    keys = MeshKeys.load_or_create(config.home_path)
    setup = json.loads((keys.dir / "authority.json").read_text())
    bus = await NatsBus.connect(config.lattice, name="motes authority")
    system_lattice = dataclasses.replace(
        config.lattice, credentials=setup["system"], inbox_prefix="_INBOX"
    )
    system = await NatsBus.connect(system_lattice, name="motes authority (system account)")
    authority = Authority(
        bus,
        system,
        keys,
        owner=bytes.fromhex(setup["owner"]),
        servers=list(setup["servers"]),
        lease_ttl=config.timing.lease_ttl_s,
        hub=msgspec.convert(setup["hub"], Hub) if setup.get("hub") else None,
    )
    try:
        await serve_until_drained(lambda started: authority.run(started=started), draining)
    finally:
        await system.close()
        await bus.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m motes.trust.authority")
    parser.add_argument("--config", required=True, help="its settings (a 0600 file)")
    parser.add_argument(
        "--held", action="store_true", help="read --config once the starter says so (stdin)"
    )
    args = parser.parse_args(argv)
    if args.held:  # `motes up` starts us while it starts the lattice (see `_proc.spawn`)
        wait_until_released(preload=("motes.wire._nats", _ED25519))
    config = load_config(env={"MOTES_CONFIG": args.config})
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s authority %(levelname)s %(message)s"
    )
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    process_main(lambda draining: _main(config, draining))


if __name__ == "__main__":
    main()
