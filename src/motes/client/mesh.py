"""``motes.connect()`` and ``Mesh``: one connection to a mesh, in facets.

- ``mesh.calls``: ``call``, ``map``, ``actor``, ``submit``, ``handle``, ``flow``,
  ``set_flow``, ``flows``, ``queue``;
- ``mesh.apps``: ``deploy``, ``rollback``, ``list``;
- ``mesh.ops``: ``nodes``, ``ps``, ``why``, ``here``, ``drain``, ``logs``;
- ``mesh.store``: the store (``put``, ``get``, ``open``, ``writer``, ``ls``, ``check``, ...);
- ``mesh.blocks``: blocks (``create``, ``get``, ``update``, ``children``, ...) and their
  computed cells (``mesh.blocks.cells``);
- ``mesh.events()``: what changes in the mesh, as it happens;
- ``mesh.exec(argv)``: a native program run confined on a node (``client.exec``).

The commonest calls have shortcuts on the mesh itself: ``mesh.call``, ``mesh.map``,
``mesh.actor``, ``mesh.submit``, ``mesh.deploy``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from ..app import App
from ..blocks import Blocks
from ..config import Config, LatticeConfig, Timing, load_config, read_mesh_file
from ..errors import MeshNotRunning, Unauthorized
from ..identity import SigningKey, read_public, short_id
from ..identity.jwt import read_creds
from ..identity.keys import KeyKind
from ..store.client import StoreClient
from ..trust.client import Credentials, PrincipalFiles
from ..trust.keyring import write_secret
from ..wire import acl, subjects
from ..wire.bus import Bus
from ..wire.messages import ExecResult
from ._core import Core
from .apps import Apps
from .calls import ActorRef, Calls
from .durable import CallHandle, Flow, QueueStat
from .events import EventFeed
from .exec import run_program
from .ops import Ops
from .trust import Trust

__all__ = ["ActorRef", "CallHandle", "ExecResult", "Flow", "Mesh", "QueueStat", "connect"]


class Mesh:
    """A connection to a mesh. Get one with ``async with motes.connect() as mesh``."""

    def __init__(self, bus: Bus, config: Config, key: SigningKey | None = None) -> None:
        """``key``: who this connection acts as (it signs what it deploys); by default
        the key in its credential, else the home's person key."""
        self.bus = bus
        self.config = config
        self.timing = config.timing
        core = self._core = Core(bus, config, key or _key_of(config))
        self.calls = Calls(core)
        """Calls, maps, actors, durable calls and flows."""
        self.ops = Ops(core)
        """Nodes, instances, the scheduler's reasons, owner context, logs."""
        self.apps = Apps(core, self.calls.durable, self.ops)
        """Deploy, roll back, list."""
        self.trust = Trust(core)
        """Invites, grants, revocation, the audit log."""
        self.store = StoreClient(
            bus,
            scatter_s=config.timing.scatter_s,
            request_s=config.timing.request_s,
            cache_dir=_cache_dir(config),
            node=_this_node(config),
            convergence=Path(config.store.convergence) if config.store.convergence else None,
        )
        """The mesh's store: ``put``, ``get``, ``open``, ``writer``, ``ls``, ``check``, datasets."""
        self.blocks = Blocks(bus, self.calls.call_traced)
        """Blocks and their computed cells: ``create``, ``get``, ``update``, ``cells``."""

    @property
    def principal(self) -> str:
        """Who this connection acts as: the id of its key (``p…`` for a person)."""
        return self._core.principal

    async def close(self) -> None:
        await self.bus.close()

    async def __aenter__(self) -> Mesh:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def events(self) -> EventFeed:
        """What changes in the mesh: nodes joining, leaving and lost, placements with
        their cause, apps deployed, instance states. ``async with mesh.events() as feed``
        listens from the start of the block (``async for`` alone, from the first event
        asked for); leaving the block, or ``aclose()``, stops it."""
        return EventFeed(self.bus)

    async def exec(
        self,
        argv: Sequence[str],
        *,
        files: Mapping[str, str] | None = None,
        writable: Mapping[str, str] | None = None,
        net: bool = False,
        timeout: float = 30.0,
        memory_mb: int = 256,
        output_bytes: int | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes = b"",
        node: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> ExecResult:
        """Run the program ``argv`` on a node, confined: a read-only system, a private
        ``/tmp``, its own PID namespace, and of the node's files only ``files``
        (``{path inside: path on the node}``, read-only) and ``writable``; no network
        unless ``net``. At ``timeout`` seconds its whole process tree is killed.

        On ``node`` (name or id), else on a node with ``labels``. Its exit status,
        output (stdout plus stderr at most ``output_bytes``, by default what one reply
        carries), wall and CPU time, or a typed error: ``Forbidden`` without a ``run``
        grant on that node, ``SandboxLimit`` naming the limit it hit, ``SandboxDenied``
        for a view the node will not give, ``SandboxUnavailable`` where nothing there
        can confine it. A non-zero exit status is a result, not an error.
        """
        return await run_program(
            self._core,
            argv,
            files=files or {},
            writable=writable or {},
            net=net,
            timeout=timeout,
            memory_mb=memory_mb,
            output_bytes=output_bytes,
            env=env or {},
            stdin=stdin,
            node=node,
            labels=labels or {},
        )

    # --- shortcuts to the commonest calls ----------------------------------------------

    async def call(
        self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """``mesh.calls.call``: call ``app.mote``; its result or its typed error."""
        return await self.calls.call(name, *args, timeout=timeout, **kwargs)

    def map(
        self,
        name: str,
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        **options: Any,
    ) -> AsyncIterator[Any]:
        """``mesh.calls.map``: one call per item, in parallel; results in input order."""
        return self.calls.map(name, items, **options)

    def actor(self, name: str, key: str) -> ActorRef:
        """``mesh.calls.actor``: the activation of actor ``app.Actor`` for ``key``."""
        return self.calls.actor(name, key)

    async def submit(self, name: str, /, *args: Any, **kwargs: Any) -> CallHandle:
        """``mesh.calls.submit``: a durable call; ``await handle.result()``."""
        return await self.calls.submit(name, *args, **kwargs)

    async def deploy(
        self, app: App | str | os.PathLike[str], *, wait: bool = True, timeout: float | None = None
    ) -> str:
        """``mesh.apps.deploy``: bundle, store and place an app; its digest."""
        return await self.apps.deploy(app, wait=wait, timeout=timeout)


def _key_of(config: Config) -> SigningKey:
    if config.lattice.credentials:
        try:
            return read_creds(Path(config.lattice.credentials).read_text())[1]
        except OSError as exc:
            raise Unauthorized(
                f"cannot read the credential {config.lattice.credentials}: {exc}"
            ) from None
    return SigningKey.load_or_create(config.home_path / "person.key", KeyKind.PERSON)


def _as_home_principal(config: Config) -> Config:
    """With no credential configured, act as the principal whose credentials the home
    holds (the mesh's owner after ``motes up``, or whoever ``motes join`` admitted)."""
    if config.lattice.credentials:
        return config
    files = PrincipalFiles(config.home_path, KeyKind.PERSON)
    if not files.exists():
        return config
    info = files.mesh_info()
    convergence = config.store.convergence or str(_person_secret(config.home_path))
    return config.replace(
        lattice={
            "credentials": str(files.session),
            "identity": str(files.identity),
            "inbox_prefix": acl.inbox_prefix(files.id),
            "mesh_key": str(info.get("key", "")),
            "domain": subjects.MESH_DOMAIN,
            "tls_ca": config.lattice.tls_ca or str(info.get("ca", "")),
        },
        store={"convergence": convergence},
    )


def _person_secret(home: Path) -> Path:
    """A person's own convergence secret: their stored data dedups with their own."""
    path = home / "convergence.key"
    if not path.exists():
        write_secret(path, os.urandom(32))
    return path


async def _connect_as(config: Config) -> Bus:
    """Connect with the session credential. A joined person renews it first (so grants
    made since take effect); anyone whose session lapsed renews it with their
    identity credential, which may do nothing else."""
    from ..wire._nats import NatsBus

    lattice = config.lattice
    files = _files_of(lattice)
    if files is not None and files.mesh_info().get("renew"):
        await _renew(lattice, files)
    try:
        return await NatsBus.connect(lattice, name="motes client")
    except Unauthorized:
        if files is None or not lattice.identity:
            raise
        await _renew(lattice, files)
        return await NatsBus.connect(lattice, name="motes client")


def _files_of(lattice: LatticeConfig) -> PrincipalFiles | None:
    if not lattice.credentials or not lattice.identity:
        return None
    return PrincipalFiles(Path(lattice.credentials).parent, KeyKind.PERSON)


async def _renew(lattice: LatticeConfig, files: PrincipalFiles) -> None:
    from ..wire._nats import NatsBus

    identity = dataclasses.replace(lattice, credentials=lattice.identity)
    bus = await NatsBus.connect(identity, name="motes client (renewing)")
    try:
        await Credentials(bus, files).renew()
    finally:
        await bus.close()


def _this_node(config: Config) -> tuple[str, Path] | None:
    """(id, home) of the node this process runs on (a mote's worker): its own shares are
    read straight from its disk."""
    node = config.node
    if not node.home:
        return None
    nid = node.id
    if not nid:
        public = read_public(Path(node.home) / "node.pub")
        if public is None:
            return None
        nid = short_id(KeyKind.NODE, public)
    return nid, Path(node.home)


def _cache_dir(config: Config) -> Path | None:
    if config.store.cache == "off":
        return None
    if config.store.cache:
        return Path(config.store.cache)
    if config.node.home:
        return Path(config.node.home) / "cache"
    return config.home_path / "cache"


def _home_servers(home: Path) -> tuple[str, ...]:
    """Where the home's mesh listens: the local mesh ``motes up`` started there, else
    the mesh ``motes join`` joined from there."""
    joined = PrincipalFiles(home, KeyKind.PERSON).mesh_info().get("servers")
    try:
        url = str(read_mesh_file(home)["url"])
    except MeshNotRunning:
        if not joined:
            raise
        return tuple(joined)
    return tuple(u for u in url.split(",") if u)


class _Connector:
    """``await connect()`` or ``async with connect() as mesh``."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.mesh: Mesh | None = None

    async def _open(self) -> Mesh:
        config = self.config
        if not config.lattice.servers:
            config = config.replace(lattice={"servers": _home_servers(config.home_path)})
        config = _as_home_principal(config)
        bus = await _connect_as(config)
        return Mesh(bus, config)

    def __await__(self) -> Any:
        return self._open().__await__()

    async def __aenter__(self) -> Mesh:
        self.mesh = await self._open()
        return self.mesh

    async def __aexit__(self, *exc: object) -> None:
        if self.mesh is not None:
            await self.mesh.close()


def connect(
    url: str | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    timing: Timing | None = None,
    cache: str | os.PathLike[str] | bool = True,
    config: Config | None = None,
) -> _Connector:
    """Connect to a mesh: ``url`` if given (several servers comma-separated), else the
    configured lattice (``MOTES_URL``, the home's ``motes.toml``, or the ``MOTES_CONFIG``
    a mote is given), else the local mesh started by ``motes up`` at the motes home
    (``--home``/``MOTES_HOME``/the platform data dir).

    Stored data read through this connection is cached in ``cache``: by default the
    configured cache (a mote's is its node's), else ``<motes home>/cache``; ``False``
    reads without a cache.
    """
    if config is None:
        config = load_config(home)
    if url:
        config = config.replace(lattice={"servers": tuple(u for u in url.split(",") if u)})
    if timing is not None:
        config = config.replace(timing=timing)
    if cache is False:
        config = config.replace(store={"cache": "off"})
    elif cache is not True:
        config = config.replace(store={"cache": str(cache)})
    return _Connector(config)
