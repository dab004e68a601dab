"""Messages and records of trust: principals, grants, invites, credentials, the audit log.

Records kept in KV travel inside a ``Signed`` envelope (``identity.signed``), signed by
whoever made the statement: a grant by its issuer, a principal's admission by the mesh,
an audit entry by the mesh's authority. Requests to the authority are maps.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = [
    "ACTIONS",
    "Action",
    "Admit",
    "AuditEntry",
    "CredReply",
    "CredRequest",
    "Grant",
    "GrantRequest",
    "Hub",
    "InstanceCreds",
    "Invite",
    "InviteRequest",
    "InviteState",
    "JoinRequest",
    "Joined",
    "MeshInfo",
    "Principal",
    "Renewed",
    "RevokeRequest",
    "Role",
    "ServerSetup",
    "Token",
]

Action = Literal["deploy", "call", "read", "write", "hold", "run", "admin", "schedule"]
ACTIONS: tuple[str, ...] = ("deploy", "call", "read", "write", "hold", "run", "admin", "schedule")
Role = Literal["store", "scheduler", "worker", "instance", "link"]
"""What a node asks credentials for, for its own processes (``link``: its leaf
server's link to the hubs)."""
Kind = Literal["person", "node"]


class MeshInfo(msgspec.Struct, frozen=True, kw_only=True, tag="mesh1"):
    """What a member needs to know of its mesh (public)."""

    id: str
    """The mesh key's short id (``m...``): the mesh id."""
    key: bytes
    """The mesh's public key (its root of trust; the NATS operator key)."""
    account: str
    """The NATS account (``A...``) every member's credential belongs to."""
    servers: list[str] = []
    """Where clients connect (the hubs' client URLs)."""
    ca: bytes = b""
    """The mesh's CA certificate (PEM), self-signed by ``key``: what servers off
    loopback show certificates from. Empty: the mesh listens on loopback only."""


class Hub(msgspec.Struct, frozen=True, kw_only=True, tag="hub1"):
    """An always-on machine whose nats-server is one of the mesh's hubs."""

    id: str
    """Its node's id."""
    name: str
    client: str
    """``tls://host:port`` for clients."""
    leaf: str
    """``tls://host:port`` for leaf nodes."""
    route: str
    """``tls://host:port`` for the other hubs (mutual TLS)."""


class ServerSetup(msgspec.Struct, frozen=True, kw_only=True, tag="setup1"):
    """What a machine's own nats-server needs to join the mesh: the operator and
    account JWTs (public: JWTs carry no secret), the JetStream domain and the hubs."""

    operator: str
    system_account: str
    accounts: dict[str, str]
    domain: str
    hubs: list[Hub] = []


class Principal(msgspec.Struct, frozen=True, kw_only=True, tag="prin1"):
    """An admitted principal (KV ``motes_principals``, signed by the mesh)."""

    id: str
    kind: Kind
    name: str
    key: bytes
    owner: str = ""
    """For a node: the person who owns it (whose consent runs others' code there)."""
    hub: bool = False
    """For a node: admitted to be one of the mesh's hubs (it may ask for a server
    certificate and hold the mesh's replicated state)."""
    admitted_at: float = 0.0
    invite: str = ""
    revoked_at: float = 0.0


class Grant(msgspec.Struct, frozen=True, kw_only=True, tag="grant1"):
    """``principal`` may do ``action`` on ``resource`` (within ``budget``, until ``until``).

    Resources are patterns: an app or ``app.mote`` for deploy and call (``*`` matches one
    name, ``>`` or a bare ``*`` everything), a dataset's storage index for read, write
    and hold, a node id (or ``*``) for run. A ``run`` grant's ``native`` lets the
    principal's apps run as ordinary processes there (without it, only sandboxed:
    wasm), and its ``budget`` bounds them there: ``cpu_s_per_day``, ``memory_mb`` (per
    instance) and ``instances`` (at once); see ``motes.identity.grants.RUN_BUDGETS``.
    """

    id: str
    principal: str
    action: Action
    resource: str = "*"
    budget: dict[str, float] = {}
    native: bool = False
    """``run`` only: unconfined (native) code is allowed, not just sandboxed."""
    until: float = 0.0
    """0: until revoked."""
    issued_at: float = 0.0
    issuer: str = ""


class Invite(msgspec.Struct, frozen=True, kw_only=True, tag="invite1"):
    """What an invite token carries, signed by the mesh (so a joiner can tell it was not
    tampered with). ``seed`` is the invite's own credential: it lets the joiner reach the
    authority once, to be admitted."""

    id: str
    mesh: MeshInfo
    kind: Kind
    name: str
    expires: float
    uses: int = 1
    grants: list[Grant] = []
    jwt: str = ""
    seed: bytes = b""
    hub: bool = False
    """A machine invited to be a hub."""


class InviteRequest(msgspec.Struct, frozen=True, kw_only=True, tag="invreq1"):
    kind: Kind
    name: str
    ttl_s: float = 3600.0
    uses: int = 1
    grants: list[Grant] = []
    servers: list[str] = []
    hub: bool = False


class JoinRequest(msgspec.Struct, frozen=True, kw_only=True, tag="join1"):
    """Sent with an invite's credential; ``proof`` is the new key's signature of the
    invite id and the mesh id (the joiner holds the key; it never travels)."""

    invite: str
    mesh: str
    key: bytes
    name: str
    proof: bytes


class Joined(msgspec.Struct, frozen=True, kw_only=True, tag="joined1"):
    """The answer to a join (or an admission): who the mesh now knows, and credentials:
    ``session`` for everything its grants allow, ``identity`` only to renew it."""

    principal: Principal
    session: str
    identity: str
    expires: float
    mesh: MeshInfo
    setup: ServerSetup | None = None
    """For a node: what its own nats-server needs (it runs one off the owner's box)."""


class Renewed(msgspec.Struct, frozen=True, kw_only=True, tag="renewed1"):
    session: str
    identity: str
    expires: float


class Admit(msgspec.Struct, frozen=True, kw_only=True, tag="admit1"):
    """An admin admits a key directly (the local nodes ``motes up`` starts)."""

    kind: Kind
    name: str
    key: bytes
    owner: str = ""
    grants: list[str] = []
    """Actions granted on everything (e.g. ``schedule`` for the owner's own nodes)."""


class Token(msgspec.Struct, frozen=True, kw_only=True, tag="token1"):
    token: str
    id: str
    expires: float


class InviteState(msgspec.Struct, frozen=True, kw_only=True, tag="invstate1"):
    """An invite as the authority keeps it (KV ``motes_invites``): how often it was used."""

    id: str
    kind: Kind
    name: str
    expires: float
    uses: int
    used: int = 0
    grants: list[Grant] = []
    issuer: str = ""
    hub: bool = False


class CredRequest(msgspec.Struct, frozen=True, kw_only=True, tag="credreq1"):
    """Ask the authority for a credential: for ``role`` on behalf of the requester.

    ``keys`` are the public keys to mint for (their seeds stay with the requester):
    one for most roles; for ``instance``, the instance's shell and its user code."""

    role: Role
    keys: list[bytes]
    iid: str = ""
    wid: str = ""


class InstanceCreds(msgspec.Struct, frozen=True, kw_only=True, tag="icreds1"):
    shell: str
    """JWT for the worker shell: the mote's own subjects and buckets."""
    app: str
    """JWT for the mote's own code: what the app's deployer was granted."""
    convergence: bytes = b""
    """The secret the app's stored data is encrypted with (derived for the app)."""


class CredReply(msgspec.Struct, frozen=True, kw_only=True, tag="cred1"):
    jwt: str
    expires: float
    instance: InstanceCreds | None = None


class GrantRequest(msgspec.Struct, frozen=True, kw_only=True, tag="grantreq1"):
    grant: bytes
    """A ``Signed`` grant, signed by the admin asking."""


class RevokeRequest(msgspec.Struct, frozen=True, kw_only=True, tag="revreq1"):
    principal: str = ""
    grant: str = ""
    """Revoke one grant (by id) instead of a principal."""


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True, tag="audit1"):
    """One entry of the audit log, kept in stream ``MOTES_AUDIT``, signed by the authority.

    ``prev`` is the hash of the entry before it (of its stored bytes), so an entry
    edited, dropped or moved breaks the chain; ``statement`` is the signed statement
    of the principal who acted (a grant, a join's proof, a deploy)."""

    seq: int
    prev: bytes
    at: float
    kind: Literal["join", "grant", "revoke", "deploy", "rollback", "share", "invite", "mesh"]
    actor: str
    subject: str
    statement: bytes = b""
    detail: str = ""
