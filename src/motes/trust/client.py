"""Talking to the authority, and keeping credentials fresh.

A principal keeps, in its home (all 0600): its key, ``identity.creds`` (may only ask
for a new session; lasts 30 days) and ``session.creds`` (what its connections present;
lasts an hour). ``Credentials`` renews the session before it runs out, and
``NodeCredentials`` mints and renews the credentials of a node's own processes (its
store service, scheduler, workers and instances), each written to a 0600 file that the
process's connection reads at every (re)connect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..config import LatticeConfig
from ..errors import BadMessage, MotesError, NoResponders, error_from_wire
from ..identity import KeyKind, SigningKey, short_id
from ..identity.jwt import decode_jwt, read_creds
from ..wire import acl, subjects
from ..wire.bus import Bus
from ..wire.codec import decode, encode
from ..wire.messages import Err
from ..wire.trust import CredReply, CredRequest, Renewed, Role
from .keyring import write_creds, write_secret

__all__ = ["Credentials", "NodeCredentials", "PrincipalFiles", "ask", "lattice_for"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_ASK_TIMEOUT_S = 10.0
_LINK_WAIT_S = 30.0
"""How long a node's processes wait for the authority to be reachable at start."""


async def ask(
    bus: Bus, op: str, principal: str, request: Any, answer: type[T], *, wait_s: float = 0.0
) -> T:
    """One request to the authority; its typed error if it refused. ``wait_s``: while
    nothing answers (a leaf machine's link to the hubs still coming up), ask again with
    backoff for up to that long."""
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while True:
        try:
            reply = await bus.request(
                subjects.auth(op, principal), encode(request), timeout=_ASK_TIMEOUT_S
            )
            break
        except NoResponders:
            if time.monotonic() + pause > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
    try:
        return decode(reply.data, answer)
    except BadMessage:
        try:
            err = decode(reply.data, Err)
        except BadMessage:
            raise BadMessage(f"the authority answered {op} with something unreadable") from None
        raise error_from_wire(err.code, err.message, err.fields) from None


def lattice_for(base: LatticeConfig, creds: Path, principal: str, node: str = "") -> LatticeConfig:
    """``base``'s servers, TLS and domain, as ``principal`` (its credential, its own
    inbox: under its node's, for a node's processes)."""
    return replace(base, credentials=str(creds), inbox_prefix=acl.inbox_prefix(principal, node))


@dataclass(frozen=True, slots=True)
class PrincipalFiles:
    """Where a principal's key and credentials live in its home."""

    dir: Path
    kind: KeyKind

    @property
    def key_path(self) -> Path:
        return self.dir / ("node.key" if self.kind is KeyKind.NODE else "person.key")

    @property
    def session(self) -> Path:
        return self.dir / "session.creds"

    @property
    def identity(self) -> Path:
        return self.dir / "identity.creds"

    @property
    def mesh(self) -> Path:
        """The mesh this principal belongs to (id, key, servers): ``membership.json``."""
        return self.dir / "membership.json"

    def key(self) -> SigningKey:
        return SigningKey.load_or_create(self.key_path, self.kind)

    @property
    def id(self) -> str:
        return self.key().id

    def exists(self) -> bool:
        return self.session.exists()

    def save(self, session: str, identity: str, mesh: dict[str, Any] | None = None) -> None:
        key = self.key()
        write_creds(self.session, session, key)
        write_creds(self.identity, identity, key)
        if mesh is not None:
            write_secret(self.mesh, json.dumps(mesh, indent=1))

    def mesh_info(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.mesh.read_text()))
        except FileNotFoundError:
            return {}

    def lattice(self, base: LatticeConfig) -> LatticeConfig:
        node = self.id if self.kind is KeyKind.NODE else ""
        return lattice_for(base, self.session, self.id, node)


def _expires(creds: Path) -> float:
    try:
        jwt, _ = read_creds(creds.read_text())
        return decode_jwt(jwt, now=0).expires or float("inf")
    except (OSError, MotesError):
        return 0.0


class Credentials:
    """Keeps one principal's session fresh while the process runs."""

    def __init__(self, bus: Bus, files: PrincipalFiles) -> None:
        self.bus = bus
        self.files = files

    async def renew(self) -> Renewed:
        renewed = await ask(self.bus, "renew", self.files.id, _Empty(), Renewed)
        self.files.save(renewed.session, renewed.identity)
        return renewed

    async def keep_fresh(self, ttl_hint: float = 3600.0) -> None:
        """Renew at two thirds of the session's life, for as long as it runs."""
        while True:
            left = _expires(self.files.session) - time.time()
            await asyncio.sleep(max(1.0, left - ttl_hint / 3 if left < ttl_hint else left * 2 / 3))
            try:
                await self.renew()
            except MotesError as exc:
                log.warning("renewing %s's credential failed: %s", self.files.id, exc)
                await asyncio.sleep(30)


@dataclass
class _Minted:
    role: Role
    path: Path
    key: SigningKey
    iid: str = ""
    wid: str = ""


@dataclass
class NodeCredentials:
    """Credentials for a node's own processes, minted by the authority for the node's
    requests, written to ``run/`` and renewed before they expire."""

    bus: Bus
    node: str
    run_dir: Path
    base: LatticeConfig
    minted: dict[Path, _Minted] = field(default_factory=dict)

    async def _mint(self, role: Role, name: str, *, iid: str = "", wid: str = "") -> LatticeConfig:
        key = SigningKey.generate(KeyKind.NODE)
        path = self.run_dir / f"{name}.creds"
        reply = await ask(
            self.bus,
            "creds",
            self.node,
            CredRequest(role=role, keys=[key.public], wid=wid),
            CredReply,
            wait_s=_LINK_WAIT_S,
        )
        write_creds(path, reply.jwt, key)
        self.minted[path] = _Minted(role, path, key, iid, wid)
        return lattice_for(self.base, path, key.id, self.node)

    async def store(self) -> LatticeConfig:
        return await self._mint("store", "store")

    async def scheduler(self) -> LatticeConfig:
        return await self._mint("scheduler", "scheduler")

    async def worker(self, wid: str) -> LatticeConfig:
        return await self._mint("worker", wid, wid=wid)

    async def instance(self, iid: str, wid: str) -> tuple[LatticeConfig, LatticeConfig, Path]:
        """(the shell's lattice, the mote code's lattice, its convergence secret file)."""
        shell = SigningKey.generate(KeyKind.NODE)
        code = SigningKey.generate(KeyKind.NODE)
        req = CredRequest(role="instance", keys=[shell.public, code.public], iid=iid, wid=wid)
        reply = await ask(self.bus, "creds", self.node, req, CredReply)
        if reply.instance is None:
            raise BadMessage("the authority sent no instance credentials")
        shell_path = write_creds(
            self.run_dir / f"{wid}.instance.creds", reply.instance.shell, shell
        )
        code_path = write_creds(self.run_dir / f"{wid}.app.creds", reply.instance.app, code)
        secret = write_secret(self.run_dir / f"{wid}.convergence", reply.instance.convergence)
        self.minted[shell_path] = _Minted("instance", shell_path, shell, iid, wid)
        return (
            lattice_for(self.base, shell_path, shell.id, self.node),
            lattice_for(self.base, code_path, code.id, self.node),
            secret,
        )

    def forget(self, wid: str) -> None:
        """A worker is gone: its credential files go too."""
        for suffix in (".creds", ".instance.creds", ".app.creds", ".convergence"):
            path = self.run_dir / f"{wid}{suffix}"
            self.minted.pop(path, None)
            path.unlink(missing_ok=True)

    async def keep_fresh(self) -> None:
        """Renew every credential minted here at two thirds of its life."""
        while True:
            await asyncio.sleep(60.0)
            now = time.time()
            for m in list(self.minted.values()):
                left = _expires(m.path) - now
                if left > 1200.0:
                    continue
                try:
                    if m.role == "instance":
                        await self.instance(m.iid, m.wid)
                    else:
                        reply = await ask(
                            self.bus,
                            "creds",
                            self.node,
                            CredRequest(role=m.role, keys=[m.key.public], wid=m.wid),
                            CredReply,
                        )
                        write_creds(m.path, reply.jwt, m.key)
                except MotesError as exc:
                    log.warning("renewing %s failed: %s", m.path.name, exc)


class _Empty(msgspec.Struct, frozen=True, tag="empty1"):
    pass


def principal_of(creds: Path, kind: KeyKind) -> str:
    """The principal id of the key in a creds file."""
    _, key = read_creds(creds.read_text())
    return short_id(kind, key.public)
