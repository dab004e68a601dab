"""Joining a mesh with an invite token, from the joiner's side.

The joiner makes its key here (it never travels), checks the token (not damaged, not
expired, signed by the mesh it names), reaches the mesh with the invite's own
credential, proves it holds the new key, and keeps the credentials it is given.
Each way it can fail has its own one-line reason.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import LatticeConfig
from ..errors import Unauthorized
from ..identity import KeyKind, SigningKey
from ..identity.invites import decode_token, join_proof
from ..wire import acl, subjects
from ..wire.trust import Invite, Joined, JoinRequest
from .client import PrincipalFiles, ask
from .keyring import write_creds

__all__ = ["home_of", "join", "member_lattice"]


def home_of(invite: Invite, home: Path, name: str) -> PrincipalFiles:
    """Where the joiner keeps its key and credentials: a person in the home itself, a
    node in ``<home>/nodes/<name>``."""
    if invite.kind == "node":
        return PrincipalFiles(home / "nodes" / name, KeyKind.NODE)
    return PrincipalFiles(home, KeyKind.PERSON)


def member_lattice(files: PrincipalFiles, servers: tuple[str, ...] = ()) -> LatticeConfig:
    """How the member whose files these are reaches its mesh: its session credential
    (renewed with its identity credential), at ``servers`` or those it joined at."""
    info = files.mesh_info()
    node = files.id if files.kind is KeyKind.NODE else ""
    return LatticeConfig(
        servers=servers or tuple(info.get("servers", ())),
        credentials=str(files.session),
        identity=str(files.identity),
        inbox_prefix=acl.inbox_prefix(files.id, node),
        mesh_key=str(info.get("key", "")),
        domain=subjects.MESH_DOMAIN,
        tls_ca=str(info.get("ca", "")),
    )


def _trust_ca(invite: Invite, files: PrincipalFiles) -> str:
    """The mesh CA a joiner checks the hubs' certificates against: the one in the
    invite, once it is shown to be self-signed by the mesh key the invite names (a
    server with any other certificate, public CAs included, is refused). "": the mesh
    listens on loopback only."""
    if not invite.mesh.ca:
        return ""
    from .tls import check_ca  # X.509, a large import: only a join needs it

    check_ca(invite.mesh.ca, invite.mesh.key)
    path = files.dir / "ca.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(invite.mesh.ca)
    return str(path)


async def join(
    token: str, home: Path, *, name: str = "", servers: tuple[str, ...] = ()
) -> tuple[Joined, PrincipalFiles]:
    from ..wire._nats import NatsBus

    invite = decode_token(token)
    name = name or invite.name
    files = home_of(invite, home, name)
    if files.exists() and files.mesh_info().get("id") not in (None, invite.mesh.id):
        other = files.mesh_info().get("id")
        raise Unauthorized(
            f"{files.dir} already belongs to mesh {other}; this invite is for mesh "
            f"{invite.mesh.id} (join from another home: --home DIR)"
        )
    key = files.key()
    where = servers or tuple(invite.mesh.servers)
    if not where:
        raise Unauthorized("the invite names no server to reach; give one with --url")
    ticket = files.dir / "run" / f"{invite.id}.creds"
    write_creds(ticket, invite.jwt, SigningKey.from_seed(KeyKind.PERSON, invite.seed))
    ca = _trust_ca(invite, files)
    lattice = LatticeConfig(
        servers=where,
        credentials=str(ticket),
        inbox_prefix=acl.inbox_prefix(invite.id),
        tls_ca=ca,
    )
    try:
        try:
            bus = await NatsBus.connect(lattice, name=f"joining as {name}")
        except Unauthorized:
            raise Unauthorized(
                f"the lattice at {','.join(where)} does not accept this invite: it was made "
                f"by mesh {invite.mesh.id}, or it expired or was revoked"
            ) from None
        try:
            request = JoinRequest(
                invite=invite.id,
                mesh=invite.mesh.id,
                key=key.public,
                name=name,
                proof=key.sign(join_proof(invite.id, invite.mesh.id)),
            )
            joined = await ask(bus, "join", invite.id, request, Joined)
        finally:
            await bus.close()
    finally:
        os.unlink(ticket)
    if joined.mesh.id != invite.mesh.id or joined.mesh.key != invite.mesh.key:
        raise Unauthorized("the mesh that answered is not the one the invite names")
    files.save(
        joined.session,
        joined.identity,
        {
            "id": invite.mesh.id,
            "key": invite.mesh.key.hex(),
            "servers": list(where),
            "renew": invite.kind == "person",
            "principal": joined.principal.id,
            "ca": ca,
        },
    )
    return joined, files
