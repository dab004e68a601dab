"""A joined machine: its own nats-server, a leaf of the mesh's hubs, and its node agent.

``motes join TOKEN`` on a machine of a mesh that listens beyond loopback runs this. The
machine's server listens on loopback only, for this machine's processes, and dials out
to the hubs' leaf-node port (so it works behind NAT), with TLS checked against the mesh
CA and the machine's **link** credential. It knows the mesh's operator and accounts (they
come with the join; JWTs carry no secret), so it authenticates local connections itself;
revocations are enforced at the hubs, which cut a revoked machine's link.

The node agent connects to that local server: a call between two motes on this machine
stays on it, and JetStream (on the hubs) is reached across the link in the mesh's domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from pathlib import Path

import msgspec

from .. import _proc
from ..config import Config, NodeConfig, write_config
from ..errors import StartupError
from ..identity import KeyKind, SigningKey
from ..lattice import LeafRemote, NatsServer, Operator, ServerConfig
from ..trust.client import PrincipalFiles, ask
from ..trust.join import member_lattice
from ..trust.keyring import write_creds
from ..wire.trust import CredReply, CredRequest, ServerSetup

__all__ = ["LeafMachine"]

log = logging.getLogger(__name__)


class LeafMachine:
    """The machine whose node's files are ``files``: set up once (``prepare``, while it
    can reach the hubs), then ``run`` (also after a restart, with no hub reachable)."""

    def __init__(self, files: PrincipalFiles, config: Config, labels: dict[str, str]) -> None:
        self.files = files
        self.config = config
        self.labels = labels
        self.dir = files.dir / "machine"
        self.server: NatsServer | None = None

    @property
    def _setup_path(self) -> Path:
        return self.dir / "setup.json"

    @property
    def _link(self) -> Path:
        return self.dir / "link.creds"

    async def prepare(self, setup: ServerSetup) -> None:
        """Keep the mesh's server setup and get this machine's link credential."""
        from ..wire._nats import NatsBus

        if not setup.hubs:
            raise StartupError("the mesh has no hub to link to: it listens on loopback only")
        self.dir.mkdir(parents=True, exist_ok=True)
        self._setup_path.write_bytes(msgspec.json.encode(setup))
        key = SigningKey.generate(KeyKind.NODE)
        bus = await NatsBus.connect(member_lattice(self.files), name="joining: link")
        try:
            reply = await ask(
                bus, "creds", self.files.id, CredRequest(role="link", keys=[key.public]), CredReply
            )
        finally:
            await bus.close()
        write_creds(self._link, reply.jwt, key)

    def _server_config(self) -> ServerConfig:
        setup = msgspec.json.decode(self._setup_path.read_bytes(), type=ServerSetup)
        info = self.files.mesh_info()
        account = next(k for k in setup.accounts if k != setup.system_account)
        return ServerConfig(
            store_dir=self.dir / "jetstream",
            name=f"leaf-{self.files.id}",
            operator=Operator(
                jwt=setup.operator,
                system_account=setup.system_account,
                resolver_dir=self.dir / "accounts",
                accounts=dict(setup.accounts),
                memory=True,
            ),
            jetstream=False,
            leaf_remotes=(
                LeafRemote(
                    urls=tuple(h.leaf for h in setup.hubs),
                    credentials=self._link,
                    account=account,
                    ca=Path(info["ca"]),
                ),
            ),
        )

    def node_config(self, url: str) -> Config:
        lattice = dataclasses.replace(member_lattice(self.files, (url,)), leaf=True, tls_ca="")
        return self.config.replace(
            lattice=lattice,
            node=NodeConfig(
                name=self.files.dir.name,
                home=str(self.files.dir),
                labels=self.labels,
                machine=self.files.id,
                role="leaf",
                link=",".join(
                    r for remote in self._server_config().leaf_remotes for r in remote.urls
                ),
            ),
        )

    async def run(self) -> int:
        """Serve until SIGINT or SIGTERM (the agent drains first), or the agent exits."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        self.server = await NatsServer.start(self._server_config(), workdir=self.dir)
        agent: asyncio.subprocess.Process | None = None
        try:
            path = write_config(self.node_config(self.server.url), self.dir / "node.json")
            agent = await _proc.spawn(
                _proc.python("motes.node", "--config", str(path)), new_session=True
            )
            print(
                f"machine up: leaf server {self.server.url}, node agent pid {agent.pid}", flush=True
            )
            exited = asyncio.ensure_future(agent.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            return agent.returncode if exited.done() and agent.returncode is not None else 0
        finally:
            if agent is not None and agent.returncode is None:
                await _proc.stop(agent)
            with contextlib.suppress(Exception):
                await self.server.stop()
