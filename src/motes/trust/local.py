"""Trust for a mesh started on this machine (``motes up``): its keys, its authority
process, and the owner's and local nodes' admission, done without a step from anyone.

The first start makes the mesh key (its id is the mesh id) and the owner's person key;
the owner is the mesh's admin. Each later start reuses them: the same mesh, the same
owner, the same node ids.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec

from .. import _proc
from ..config import Config, LatticeConfig, Timing, write_config
from ..errors import StartupError
from ..identity import KeyKind, SigningKey
from ..lattice import Listen, Operator, TlsFiles
from ..wire import acl, subjects
from ..wire.bus import Bus
from ..wire.trust import Admit, Hub, Joined
from .authority import IDENTITY_TTL_S, SESSION_TTL_S
from .client import PrincipalFiles, ask
from .keyring import MeshKeys, write_creds, write_secret

__all__ = ["LocalTrust"]

AUTHORITY = "authority"


class LocalTrust:
    def __init__(self, home: Path, timing: Timing) -> None:
        self.home = home
        self.timing = timing
        self.keys = MeshKeys.load_or_create(home)
        self.owner = PrincipalFiles(home, KeyKind.PERSON)
        self.owner_key = self.owner.key()
        self.proc: asyncio.subprocess.Process | None = None
        self.ca: Path | None = None
        """The mesh CA's certificate, once this machine listens beyond loopback."""

    def hub_tls(self, listen: Listen) -> TlsFiles:
        """This machine's server certificate for ``listen``, signed here (the owner holds
        the mesh key), and the mesh CA beside it."""
        from .tls import ServerTls, ca_certificate, issue_server_cert  # X.509: hubs only

        tls = ServerTls(self.home / "lattice" / "tls")
        cert = issue_server_cert(
            self.keys.mesh, tls.server_key().public, [listen.host], f"hub of {self.keys.mesh_id}"
        )
        tls.write(cert, ca_certificate(self.keys.mesh))
        self.ca = tls.ca
        return TlsFiles(cert=tls.cert, key=tls.key, ca=tls.ca)

    @property
    def mesh_key(self) -> str:
        return self.keys.mesh.public.hex()

    def operator(self) -> Operator:
        return Operator(
            jwt=self.keys.operator_jwt(),
            system_account=self.keys.system_nkey,
            resolver_dir=self.home / "lattice" / "accounts",
            accounts={
                self.keys.system_nkey: self.keys.system_jwt(),
                self.keys.account_nkey: self.keys.account_jwt(),
            },
        )

    def _lattice(
        self,
        servers: tuple[str, ...],
        creds: Path,
        principal: str,
        identity: Path | None = None,
        node: str = "",
    ) -> LatticeConfig:
        return LatticeConfig(
            servers=servers,
            credentials=str(creds),
            identity=str(identity or ""),
            inbox_prefix=acl.inbox_prefix(principal, node),
            mesh_key=self.mesh_key,
            domain=subjects.MESH_DOMAIN,
            tls_ca=str(self.ca or ""),
        )

    def owner_lattice(self, servers: tuple[str, ...]) -> LatticeConfig:
        """The owner's credentials (an admin's), minted here: the owner holds the keys."""
        admin = acl.permissions("admin", acl.Scope(principal=self.owner_key.id))
        session = self.keys.user_jwt(
            self.owner_key.public, name="owner", permissions=admin, ttl_s=SESSION_TTL_S
        )
        renew = acl.permissions("identity", acl.Scope(principal=self.owner_key.id))
        identity = self.keys.user_jwt(
            self.owner_key.public, name="owner", permissions=renew, ttl_s=IDENTITY_TTL_S
        )
        self.owner.save(session, identity, self._membership())
        return self._lattice(servers, self.owner.session, self.owner_key.id, self.owner.identity)

    def _membership(self) -> dict[str, str]:
        return {"id": self.keys.mesh_id, "key": self.mesh_key, "ca": str(self.ca or "")}

    @property
    def _authority_config(self) -> Path:
        return self.keys.dir / "authority-config.json"

    async def spawn_authority(self) -> None:
        """Start the authority's interpreter ahead of need: it imports what it runs, then
        waits for its settings (``start_authority``) while the lattice starts."""
        log_file = open(self.keys.dir / "authority.log", "ab")
        try:
            self.proc = await _proc.spawn(
                _proc.python(
                    "motes.trust.authority", "--config", str(self._authority_config), "--held"
                ),
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                new_session=True,
                held=True,
            )
        finally:
            log_file.close()

    async def start_authority(
        self, servers: tuple[str, ...], hub: Hub | None = None, timeout: float = 30.0
    ) -> None:
        """Start the authority (spawned already, or now); ``hub``: this machine is the
        mesh's first hub."""
        folder = self.keys.dir
        key = SigningKey.load_or_create(folder / "authority.key", KeyKind.PERSON)
        jwt = self.keys.user_jwt(
            key.public,
            name="authority",
            permissions=acl.permissions("authority", acl.Scope(principal=AUTHORITY)),
            ttl_s=None,
        )
        creds = write_creds(folder / "authority.creds", jwt, key)
        system = SigningKey.load_or_create(folder / "system-user.key", KeyKind.PERSON)
        write_creds(folder / "system.creds", self.keys.system_user(system), system)
        setup = {
            "system": str(folder / "system.creds"),
            "owner": self.owner_key.public.hex(),
            "servers": list(servers),
            "hub": msgspec.to_builtins(hub) if hub is not None else None,
        }
        write_secret(folder / "authority.json", json.dumps(setup, indent=1))
        config = Config(
            home=str(self.home),
            lattice=self._lattice(servers, creds, AUTHORITY),
            timing=self.timing,
        )
        write_config(config, self._authority_config)
        if self.proc is None:
            await self.spawn_authority()
        assert self.proc is not None and self.proc.stdout is not None
        await _proc.release(self.proc)
        try:
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            await self.stop()
            tail = (folder / "authority.log").read_text(errors="replace").strip()[-400:]
            raise StartupError(f"the mesh's authority did not start: {tail}")

    async def admit_node(self, bus: Bus, name: str, home: Path) -> LatticeConfig:
        """Admit a local node (owned by the owner, allowed to schedule); its credentials
        go to its home."""
        files = PrincipalFiles(home, KeyKind.NODE)
        key = SigningKey.provision(files.key_path, KeyKind.NODE)
        admit = Admit(kind="node", name=name, key=key.public, grants=["schedule"])
        joined = await ask(bus, "admit", self.owner_key.id, admit, Joined)
        files.save(joined.session, joined.identity, self._membership())
        return self._lattice(
            tuple(joined.mesh.servers), files.session, key.id, files.identity, node=key.id
        )

    async def stop(self) -> None:
        if self.proc is not None:
            await _proc.stop(self.proc, 10.0)
