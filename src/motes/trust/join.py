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
from ..wire import acl
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
    return LatticeConfig(
        servers=servers or tuple(info.get("servers", ())),
        credentials=str(files.session),
        identity=str(files.identity),
        inbox_prefix=acl.inbox_prefix(files.id),
        mesh_key=str(info.get("key", "")),
    )


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
    lattice = LatticeConfig(
        servers=where, credentials=str(ticket), inbox_prefix=acl.inbox_prefix(invite.id)
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
        },
    )
    return joined, files
