"""Commands that manage processes on this machine: ``up``, ``down``, ``node``, ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from .. import _proc
from ..client import connect
from ..config import MESH_FILE, Config, NodeConfig, read_mesh_file, write_config
from ..errors import MeshNotRunning, RequestError, StartupError
from ..identity import KeyKind
from ..lattice import Listen
from ..node.inventory import parse_labels
from ..node.localmesh import LocalMesh
from ..trust.client import PrincipalFiles
from ..trust.join import member_lattice
from .demo import demo as run_demo
from .mesh_cmds import nodes_view
from .registry import Kind, arg, command
from .render import text

__all__ = ["down", "node", "up"]


def _running_supervisor(home: Path) -> int | None:
    """The pid of the live `motes up` at ``home``, or None (removing a stale mesh.json)."""
    try:
        info = read_mesh_file(home)
    except MeshNotRunning:
        return None
    pid = int(info.get("supervisor_pid") or 0)
    if pid and _is_motes_process(pid):
        return pid
    (home / MESH_FILE).unlink(missing_ok=True)
    return None


def _is_motes_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust the pid
    return b"motes" in cmdline


def _parse_node_labels(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        node, sep, kv = item.partition(":")
        if not sep:
            raise RequestError(f"--label {item!r} is not NODE:KEY=VALUE (e.g. node-1:role=worker)")
        try:
            out.setdefault(node, {}).update(parse_labels([kv]))
        except ValueError as exc:
            raise RequestError(f"--label {item!r}: {exc}") from None
    return out


async def _show_nodes(url: str, config: Config) -> None:
    async with connect(url, config=config) as mesh:
        print(text(nodes_view(await mesh.ops.nodes())), flush=True)


@command(
    "up",
    "start a local mesh: an embedded lattice and N node processes",
    arg("--nodes", type=int, default=3),
    arg(
        "--label",
        action="append",
        default=[],
        metavar="NODE:KEY=VALUE",
        help="label a node, e.g. node-1:role=worker (repeatable)",
    ),
    arg("--port", type=int, default=0, help="lattice port (default: any free port)"),
    arg(
        "--listen",
        metavar="HOST[:PORT]",
        help="let other machines join here (TLS; leaf machines on port 7422)",
    ),
    arg("--detach", action="store_true", help="return once ready; `motes down` stops it"),
    kind=Kind.LOCAL,
)
async def up(config: Config, ns: argparse.Namespace) -> int:
    home = config.home_path
    labels = _parse_node_labels(ns.label)
    try:
        listen = Listen.parse(ns.listen) if ns.listen else None
    except ValueError as exc:
        raise RequestError(f"--listen {exc}") from None
    unknown = set(labels) - {f"node-{i}" for i in range(1, ns.nodes + 1)}
    if unknown:
        raise RequestError(
            f"--label names unknown node(s) {sorted(unknown)}; nodes are node-1..node-{ns.nodes}"
        )
    pid = _running_supervisor(home)
    if pid is not None:
        raise RequestError(f"a mesh already runs at {home} (pid {pid}); `motes down` stops it")
    if ns.detach:
        return await _up_detached(config, ns)
    # With --url the nodes join that lattice (a server or cluster) instead of an embedded one.
    url = ",".join(config.lattice.servers) or None
    mesh = LocalMesh(
        home,
        nodes=ns.nodes,
        labels=labels,
        port=ns.port,
        url=url,
        timing=config.timing,
        listen=listen,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await mesh.start()
    print(
        f"mesh up in {time.monotonic() - started:.2f} s: {ns.nodes} nodes, "
        f"lattice {mesh.url}, home {home}"
    )
    await _show_nodes(mesh.url, config)
    print("Ctrl-C stops the mesh.", flush=True)
    await stop.wait()
    print("stopping the mesh...", flush=True)
    await mesh.stop()
    print("mesh stopped.")
    return 0


async def _up_detached(config: Config, ns: argparse.Namespace) -> int:
    home = config.home_path
    home.mkdir(parents=True, exist_ok=True)
    # The supervisor gets this command's settings as a file, not as inherited variables.
    settings = write_config(config, home / "run" / "up.json")
    args = _proc.python("motes.cli", "up", "--nodes", str(ns.nodes), "--port", str(ns.port))
    for label in ns.label:
        args += ["--label", label]
    if ns.listen:
        args += ["--listen", ns.listen]
    with open(home / "mesh.log", "ab") as log:
        proc = await _proc.spawn(
            args, env={"MOTES_CONFIG": str(settings)}, stdout=log, stderr=log, detached=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise StartupError(
                f"the mesh exited at start (code {proc.returncode}); see {home / 'mesh.log'}"
            )
        try:
            info = read_mesh_file(home)
        except MeshNotRunning:
            info = {}
        if info.get("supervisor_pid") == proc.pid:
            print(
                f"mesh up: {ns.nodes} nodes, lattice {info['url']}, home {home} "
                f"(pid {proc.pid}; `motes down` stops it)"
            )
            await _show_nodes(str(info["url"]), config)
            return 0
        try:
            async with asyncio.timeout(0.05):
                await proc.wait()
        except TimeoutError:
            pass
    proc.terminate()
    raise StartupError(f"the mesh was not ready within 60 s; see {home / 'mesh.log'}")


@command("down", "stop the local mesh started with `motes up --detach`", kind=Kind.LOCAL)
async def down(config: Config, ns: argparse.Namespace) -> int:
    home = config.home_path
    pid = _running_supervisor(home)
    if pid is None:
        print(f"no mesh running at {home}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not _alive(pid):
            print(f"mesh at {home} stopped")
            return 0
        await asyncio.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    print(f"mesh at {home} did not stop within 30 s and was killed", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0); it is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return True


@command(
    "node",
    "run this machine's node agent in the foreground (after `motes join`, or --url)",
    arg("--name", required=True, help="this node's name, e.g. laptop"),
    arg("--label", action="append", default=[], metavar="KEY=VALUE"),
    kind=Kind.LOCAL,
)
async def node(config: Config, ns: argparse.Namespace) -> int:
    """One node agent: a machine that joined a mesh (`motes join`) starting again, or a
    node of a lattice that runs without authentication (--url)."""
    home = config.home_path / "nodes" / ns.name
    files = PrincipalFiles(home, KeyKind.NODE)
    if files.exists():
        config = config.replace(lattice=member_lattice(files, config.lattice.servers))
    elif not config.lattice.servers:
        raise RequestError(
            f"{ns.name} has not joined a mesh from {config.home_path} (`motes join TOKEN`);"
            " for a lattice without authentication give --url nats://HOST:PORT"
        )
    become_node(config, ns.name, home, ns.label)
    return 0


def become_node(config: Config, name: str, home: Path, labels: list[str]) -> NoReturn:
    """Become the node agent ``name`` (home ``home``), so signals (Ctrl-C drains, a
    second one exits) go straight to it, with the allow-listed environment a child of
    ours gets."""
    try:
        parsed = parse_labels(labels)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    settings = config.replace(node=NodeConfig(name=name, home=str(home), labels=parsed))
    path = write_config(settings, home / "run" / "node.json")
    args = _proc.python("motes.node", "--config", str(path))
    sys.stdout.flush()
    os.execve(args[0], args, _proc.child_env())


@command(
    "demo",
    "a 3-node mesh counts identifiers in the standard library",
    arg("--nodes", type=int, default=3),
    kind=Kind.LOCAL,
)
async def demo(config: Config, ns: argparse.Namespace) -> int:
    return await run_demo(ns.nodes)
