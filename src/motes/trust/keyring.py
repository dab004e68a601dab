"""The mesh's keys, kept by its owner under ``<home>/trust/`` (every file 0600).

- ``mesh.key``: the mesh's root of trust. Its id (``m...``) is the mesh id; it is the NATS
  operator key, and it signs invites, admissions and the audit log.
- ``account.key``: the NATS account every member belongs to; it signs members' JWTs.
- ``system.key``: NATS's system account, through which account updates (new
  revocations) reach the server without a restart.
- ``revocations.json``: user nkey -> unix time, written into the account JWT.
- ``convergence.key``: the secret apps' stored data is keyed with (derived per app).

``MeshKeys`` mints every JWT: the operator's and accounts' (for the server's config and
its resolver) and users' (for principals, with permissions from ``wire.acl``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..identity import KeyKind, SigningKey
from ..identity.jwt import (
    NKEY_ACCOUNT,
    NKEY_USER,
    Permissions,
    account_jwt,
    creds_file,
    nkey_public,
    operator_jwt,
    user_jwt,
)
from ..wire.trust import MeshInfo

__all__ = ["MeshKeys", "write_creds", "write_secret"]

TRUST_DIR = "trust"


def write_secret(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path``, mode 0600, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def write_creds(path: Path, jwt: str, key: SigningKey) -> Path:
    """A NATS ``.creds`` file for ``key`` (mode 0600)."""
    return write_secret(path, creds_file(jwt, key))


@dataclass(frozen=True, slots=True)
class MeshKeys:
    dir: Path
    mesh: SigningKey
    account: SigningKey
    system: SigningKey

    @classmethod
    def load_or_create(cls, home: Path) -> MeshKeys:
        folder = home / TRUST_DIR
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        return cls(
            folder,
            SigningKey.load_or_create(folder / "mesh.key", KeyKind.MESH),
            SigningKey.load_or_create(folder / "account.key", KeyKind.MESH),
            SigningKey.load_or_create(folder / "system.key", KeyKind.MESH),
        )

    @staticmethod
    def exists(home: Path) -> bool:
        return (home / TRUST_DIR / "mesh.key").exists()

    # --- names ---------------------------------------------------------------------------

    @property
    def mesh_id(self) -> str:
        return self.mesh.id

    @property
    def account_nkey(self) -> str:
        return nkey_public(self.account.public, NKEY_ACCOUNT)

    @property
    def system_nkey(self) -> str:
        return nkey_public(self.system.public, NKEY_ACCOUNT)

    def info(self, servers: list[str] | None = None) -> MeshInfo:
        return MeshInfo(
            id=self.mesh_id, key=self.mesh.public, account=self.account_nkey, servers=servers or []
        )

    # --- the server's view ---------------------------------------------------------------

    def operator_jwt(self) -> str:
        return operator_jwt(
            self.mesh, name=f"motes {self.mesh_id}", system_account=self.system_nkey
        )

    def system_jwt(self) -> str:
        return account_jwt(self.mesh, self.system, name="SYS", jetstream=False)

    def account_jwt(self) -> str:
        """The mesh's account, with every revocation so far (a newer ``iat`` each time, so
        the server takes it over the one it holds)."""
        return account_jwt(
            self.mesh,
            self.account,
            name="MESH",
            revocations=self.revocations(),
            iat=int(time.time()),
        )

    def revocations(self) -> dict[str, int]:
        try:
            data = json.loads((self.dir / "revocations.json").read_text())
        except FileNotFoundError:
            return {}
        return {str(k): int(v) for k, v in data.items()}

    def revoke(self, users: list[bytes], at: float | None = None) -> dict[str, int]:
        """Add users' keys to the revocations (their JWTs issued before now are void)."""
        stamp = int(at if at is not None else time.time()) + 1
        current = self.revocations()
        for user in users:
            current[nkey_public(user, NKEY_USER)] = stamp
        write_secret(self.dir / "revocations.json", json.dumps(current, indent=1))
        return current

    # --- users ---------------------------------------------------------------------------

    def user_jwt(
        self,
        user: bytes,
        *,
        name: str,
        permissions: Permissions,
        ttl_s: float | None,
        bearer: bool = False,
    ) -> str:
        expires = time.time() + ttl_s if ttl_s else None
        return user_jwt(
            self.account,
            user,
            account=self.account_nkey,
            name=name,
            permissions=permissions,
            expires=expires,
            bearer=bearer,
        )

    def system_user(self, user: SigningKey) -> str:
        """A user of the system account: it may push account updates."""
        perms = Permissions(pub_allow=("$SYS.REQ.>",), sub_allow=("_INBOX.>",))
        return user_jwt(
            self.system, user.public, account=self.system_nkey, name="authority", permissions=perms
        )

    # --- secrets -------------------------------------------------------------------------

    def convergence(self, app: str) -> bytes:
        """The convergence secret of ``app``'s stored data: the same for all its
        instances (their writes deduplicate), different for every app."""
        path = self.dir / "convergence.key"
        try:
            root = path.read_bytes()
        except FileNotFoundError:
            root = os.urandom(32)
            write_secret(path, root)
        return hmac.new(root, f"motes-convergence-v1 app {app}".encode(), hashlib.sha256).digest()
