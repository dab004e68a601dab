"""A local mesh: an embedded nats-server and N node agent processes on this machine.

``motes up``, ``motes demo`` and the tests all use this. Each node is its own OS process
with its own home (key, bundles) under ``<home>/nodes/<name>``. While the mesh runs,
``<home>/mesh.json`` says where it is (URL, pids), which is how ``motes.connect()`` and
``motes down`` find it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import _proc
from ..config import MESH_FILE, Config, LatticeConfig, NodeConfig, Timing, write_config
from ..errors import MeshNotRunning, StartupError
from ..identity import KeyKind, SigningKey
from ..lattice import Listen, NatsServer, ServerConfig
from ..trust.local import LocalTrust
from ..wire import subjects
from ..wire.bus import Bus
from ..wire.codec import decode
from ..wire.messages import NodeState, NodeStatus
from ..wire.trust import Hub

__all__ = ["LocalMesh", "NodeProc"]

log = logging.getLogger(__name__)
_READY_ROUND_S = 0.1
"""How long one round of ``wait_ready`` waits for the nodes' answers."""


@dataclass(eq=False)
class NodeProc:
    name: str
    home: Path
    labels: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    held: bool = False
    """Its interpreter is started and waits for its settings (``LocalMesh.start_node``)."""

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class LocalMesh:
    """Start with ``await mesh.start()``; always ``await mesh.stop()`` (or ``async with``)."""

    def __init__(
        self,
        home: Path,
        *,
        nodes: int = 3,
        labels: dict[str, dict[str, str]] | None = None,
        url: str | None = None,
        port: int = 0,
        timing: Timing | None = None,
        write_mesh_file: bool = True,
        auth: bool = True,
        listen: Listen | None = None,
        meter: str = "on",
        power: dict[str, tuple[float, float]] | None = None,
        wasm_cache: Path | None = None,
    ) -> None:
        """``auth``: the embedded lattice authenticates every connection (NATS operator
        mode; the mesh's keys under ``<home>/trust``). Off only to measure what it costs,
        and when ``url`` names a lattice started elsewhere. ``meter``: the nodes' call
        meter (``[node] meter``; ``off`` only to measure what it costs). ``power``: node
        name -> its power model's (idle, full-load) watts per core (``[node] power_idle_w``
        and ``power_max_w``), to simulate machines of different kinds on one box.
        ``wasm_cache``: where the nodes keep compiled WebAssembly motes; default
        ``<home>/wasm``, one cache for this machine's nodes (they build each app once
        between them).

        ``listen``: other machines reach this one there; its server is then the mesh's
        first hub (TLS with a certificate the mesh key signs, leaf nodes accepted), and
        this machine's own nodes connect to it with TLS too."""
        if nodes < 1:
            raise ValueError("a mesh needs at least one node")
        self.home = home
        self.port = port
        self.timing = timing or Timing()
        self.server: NatsServer | None = None
        self.trust: LocalTrust | None = None
        self.auth = auth and url is None
        if listen is not None and not self.auth:
            raise ValueError("a lattice reachable from other machines always authenticates")
        self.listen = listen
        self.meter = meter
        self.power = dict(power or {})
        self.wasm_cache = wasm_cache or home / "wasm"
        self._owner: LatticeConfig | None = None
        self._node_lattice: dict[str, LatticeConfig] = {}
        self._url = url
        self._write = write_mesh_file
        labels = labels or {}
        self.nodes = [
            NodeProc(f"node-{i}", home / "nodes" / f"node-{i}", labels.get(f"node-{i}", {}))
            for i in range(1, nodes + 1)
        ]

    @property
    def url(self) -> str:
        if self._url is not None:
            return self._url
        if self.server is None:
            raise MeshNotRunning("the local mesh is not started")
        if self.listen is not None:
            return self.listen.url(self.server.port)
        return self.server.url

    @property
    def machine(self) -> str:
        """This machine's name in the mesh: its nats-server's."""
        return f"hub-{self.trust.keys.mesh_id}" if self.trust else "motes"

    async def start(self, timeout: float = 60.0) -> None:
        """Ready when every node is and one of them leads. The interpreters of the
        authority and of every node start first and import while the lattice starts and
        the nodes are admitted; each reads its settings once they are written."""
        self.home.mkdir(parents=True, exist_ok=True)
        try:
            if self.auth:
                self.trust = LocalTrust(self.home, self.timing)
                await self.trust.spawn_authority()
            await asyncio.gather(*(self._spawn_node(n) for n in self.nodes))
            if self._url is None:
                self.server = await NatsServer.start(
                    self._server_config(), workdir=self.home / "lattice"
                )
            if self.trust is not None:
                await self._admit_local()
            await asyncio.gather(*(self.start_node(n) for n in self.nodes))
            await self.wait_ready(timeout)
        except BaseException:
            await self.stop()
            raise
        if self._write:
            self._write_mesh_file()

    def _server_config(self) -> ServerConfig:
        store = self.home / "lattice" / "jetstream"
        operator = self.trust.operator() if self.trust else None
        listen = self.listen
        if listen is None:
            return ServerConfig(
                store_dir=store, port=self.port, operator=operator, domain=subjects.MESH_DOMAIN
            )
        assert self.trust is not None
        return ServerConfig(
            store_dir=store,
            host=listen.bind,
            port=listen.port,
            name=self.machine,
            operator=operator,
            domain=subjects.MESH_DOMAIN,
            tls=self.trust.hub_tls(listen),
            # The first hub runs JetStream on its own: nats-server will not start
            # clustered JetStream without a second server to route to, and streams made
            # standalone are dropped as orphans when a server turns clustered. So the
            # mesh's state lives on this hub, and a hub cluster is future work.
            leaf_port=listen.leaf_port,
        )

    def _hub(self) -> Hub | None:
        if self.listen is None:
            return None
        listen = self.listen
        return Hub(
            id=self.machine,
            name=self.machine,
            client=self.url,
            leaf=listen.url(listen.leaf_port),
            route=listen.url(listen.route_port),
        )

    async def _admit_local(self) -> None:
        """The authority, the owner's credentials, and each local node's admission."""
        assert self.trust is not None
        servers = self.servers
        await self.trust.start_authority(servers, hub=self._hub())
        self._owner = self.trust.owner_lattice(servers)
        bus = await self.connect("motes up (owner)")
        try:
            admitted = await asyncio.gather(
                *(self.trust.admit_node(bus, n.name, n.home) for n in self.nodes)
            )
        finally:
            await bus.close()
        self._node_lattice.update(zip((n.name for n in self.nodes), admitted, strict=True))

    @property
    def _domain(self) -> str:
        """The mesh's JetStream domain: ours if we started the lattice, else unknown."""
        return subjects.MESH_DOMAIN if self._url is None else ""

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in self.url.split(",") if u.strip())

    @property
    def lattice(self) -> LatticeConfig:
        """How to reach this mesh's lattice, as its owner."""
        if self._owner is not None:
            return self._owner
        return LatticeConfig(servers=self.servers, domain=self._domain)

    def client_config(self, timing: Timing | None = None) -> Config:
        """Settings for a client of this mesh acting as its owner."""
        return Config(home=str(self.home), lattice=self.lattice, timing=timing or self.timing)

    def client(self, *, timing: Timing | None = None, cache: str | bool = True) -> Any:
        """``async with mesh.client() as c``: the owner's connection (``motes.connect``)."""
        from ..client import connect

        return connect(config=self.client_config(timing), cache=cache)

    def node_config(self, node: NodeProc) -> Config:
        lattice = self._node_lattice.get(node.name) or LatticeConfig(
            servers=self.servers, domain=self._domain
        )
        idle_w, max_w = self.power.get(node.name, (0.0, 0.0))
        return Config(
            home=str(self.home),
            lattice=lattice,
            timing=self.timing,
            node=NodeConfig(
                name=node.name,
                home=str(node.home),
                labels=dict(node.labels),
                machine=self.machine,
                role="hub",
                meter=self.meter,
                power_idle_w=idle_w,
                power_max_w=max_w,
                wasm_cache=str(self.wasm_cache),
            ),
        )

    async def _spawn_node(self, node: NodeProc) -> None:
        """Start the node's interpreter, held until ``start_node`` writes its settings."""
        node.home.mkdir(parents=True, exist_ok=True)
        log_file = open(node.home / "node.log", "ab")
        try:
            node.proc = await _proc.spawn(
                _proc.python("motes.node", "--config", str(self._node_file(node)), "--held"),
                stdout=log_file,
                stderr=log_file,
                new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
                held=True,
            )
        finally:
            log_file.close()
        node.held = True

    @staticmethod
    def _node_file(node: NodeProc) -> Path:
        return node.home / "run" / "node.json"

    async def start_node(self, node: NodeProc) -> None:
        """Write the node's settings and let it run (spawning it first if it is not)."""
        node.home.mkdir(parents=True, exist_ok=True)
        # Minted here, so the node reads its key without loading the crypto library.
        SigningKey.provision(node.home / "node.key", KeyKind.NODE)
        write_config(self.node_config(node), self._node_file(node))
        if not (node.held and node.alive):
            await self._spawn_node(node)
        assert node.proc is not None
        node.held = False
        await _proc.release(node.proc)

    async def connect(self, name: str = "motes mesh") -> Bus:
        from ..wire._nats import NatsBus

        return await NatsBus.connect(self.lattice, name=name)

    async def statuses(self, bus: Bus, timeout: float | None = None) -> list[NodeStatus]:
        """Every node's answer that arrives within ``timeout`` (default: ``scatter_s``)."""
        answers = await bus.scatter(
            subjects.CTL_NODES,
            b"",
            expected=len(self.nodes),
            timeout=self.timing.scatter_s if timeout is None else timeout,
        )
        return [decode(a, NodeStatus) for a in answers]

    async def wait_ready(self, timeout: float = 60.0, *, leader: bool = True) -> None:
        """Until every live node answers ready (and, if asked, one of them leads)."""
        bus = await self.connect()
        try:
            deadline = time.monotonic() + timeout
            while True:
                for n in self.nodes:
                    if n.proc is not None and n.proc.returncode is not None:
                        tail = _tail(n.home / "node.log")
                        raise StartupError(f"{n.name} exited with code {n.proc.returncode}: {tail}")
                want = {n.name for n in self.nodes if n.alive}
                # A short round: while a node is still starting it does not answer, and a
                # round waits its whole timeout for it; a missed answer is asked again.
                seen = await self.statuses(bus, _READY_ROUND_S)
                ready = {s.record.name for s in seen if s.state == NodeState.READY}
                if want <= ready and (not leader or any(s.leader for s in seen)):
                    return
                if time.monotonic() > deadline:
                    missing = sorted(want - ready)
                    raise StartupError(
                        f"mesh not ready after {timeout:g} s; waiting for {missing or 'a leader'}"
                    )
                await asyncio.sleep(0.05)
        finally:
            await bus.close()

    def node(self, name: str) -> NodeProc:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    async def kill_node(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a node and its workers (SIGKILL: as if the machine died) and reap it."""
        node = self.node(name)
        if node.proc is not None and node.alive:
            os.killpg(node.pid, sig)
            await node.proc.wait()

    async def restart_node(self, name: str) -> None:
        """Start a stopped node again with its old home (same key, same node id)."""
        node = self.node(name)
        if node.alive:
            raise StartupError(f"{name} is still running")
        await self.start_node(node)

    def signal_node_group(self, name: str, sig: int) -> None:
        """Signal a node and all its workers (its process group): SIGSTOP freezes a
        machine as a suspended laptop would, SIGCONT wakes it."""
        node = self.node(name)
        if node.alive:
            os.killpg(node.pid, sig)

    async def stop(self, grace: float = 10.0) -> None:
        """Drain every node (SIGTERM), kill stragglers, stop the server, remove mesh.json."""
        running = [n for n in self.nodes if n.alive]
        for n in running:
            assert n.proc is not None
            os.killpg(n.pid, signal.SIGCONT)  # a paused node could not drain
            n.proc.send_signal(signal.SIGTERM)
        for n in running:
            assert n.proc is not None
            try:
                async with asyncio.timeout(grace):
                    await n.proc.wait()
            except TimeoutError:
                log.warning("%s did not drain within %g s; killing it", n.name, grace)
                n.proc.kill()
                await n.proc.wait()
        if self.trust is not None:
            await self.trust.stop()
        if self.server is not None:
            await self.server.stop()
        if self._write:
            (self.home / MESH_FILE).unlink(missing_ok=True)

    def _write_mesh_file(self) -> None:
        info = {
            "url": self.url,
            "supervisor_pid": os.getpid(),
            "server_pid": self.server.pid if self.server else None,
            "nodes": [{"name": n.name, "pid": n.pid} for n in self.nodes],
            "started_at": time.time(),
        }
        tmp = self.home / (MESH_FILE + ".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(self.home / MESH_FILE)

    async def __aenter__(self) -> LocalMesh:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
