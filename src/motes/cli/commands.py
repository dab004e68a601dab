"""One coroutine per CLI command; each returns the process exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from ..client import Mesh, connect
from ..config import MESH_FILE, read_mesh_file
from ..errors import MeshNotRunning, RequestError, StartupError
from ..node.inventory import parse_labels
from ..node.localmesh import LocalMesh
from ..wire.messages import NodeStatus
from .demo import demo
from .table import print_table

__all__ = [
    "apps",
    "call",
    "demo",
    "deploy",
    "down",
    "drain",
    "flow",
    "here",
    "logs",
    "node",
    "nodes",
    "ps",
    "queue",
    "rollback",
    "up",
    "why",
]


def _connect(ns: argparse.Namespace) -> Any:
    return connect(ns.url, home=ns.home)


def _print_json(value: Any) -> None:
    print(json.dumps(msgspec.to_builtins(value), indent=2))


# --- the local mesh ----------------------------------------------------------------------


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


async def up(ns: argparse.Namespace) -> int:
    home: Path = ns.home
    labels = _parse_node_labels(ns.label)
    unknown = set(labels) - {f"node-{i}" for i in range(1, ns.nodes + 1)}
    if unknown:
        raise RequestError(
            f"--label names unknown node(s) {sorted(unknown)}; nodes are node-1..node-{ns.nodes}"
        )
    pid = _running_supervisor(home)
    if pid is not None:
        raise RequestError(f"a mesh already runs at {home} (pid {pid}); `motes down` stops it")
    if ns.detach:
        return await _up_detached(ns)
    # With --url the nodes join that lattice (a server or cluster) instead of an embedded one.
    mesh = LocalMesh(home, nodes=ns.nodes, labels=labels, port=ns.port, url=ns.url)
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
    async with connect(mesh.url) as client:
        _print_nodes(await client.nodes())
    print("Ctrl-C stops the mesh.", flush=True)
    await stop.wait()
    print("stopping the mesh...", flush=True)
    await mesh.stop()
    print("mesh stopped.")
    return 0


async def _up_detached(ns: argparse.Namespace) -> int:
    home: Path = ns.home
    home.mkdir(parents=True, exist_ok=True)
    args = [
        sys.executable,
        "-m",
        "motes.cli",
        "--home",
        str(home),
        "up",
        "--nodes",
        str(ns.nodes),
        "--port",
        str(ns.port),
    ]
    for label in ns.label:
        args += ["--label", label]
    with open(home / "mesh.log", "ab") as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
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
            async with connect(str(info["url"])) as client:
                _print_nodes(await client.nodes())
            return 0
        await asyncio.sleep(0.05)
    proc.terminate()
    raise StartupError(f"the mesh was not ready within 60 s; see {home / 'mesh.log'}")


async def down(ns: argparse.Namespace) -> int:
    home: Path = ns.home
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


async def node(ns: argparse.Namespace) -> int:
    """One node agent joining an existing lattice (another machine's `motes up`, or a cluster)."""
    url = ns.url or os.environ.get("MOTES_URL")
    if not url:
        raise RequestError("`motes node` needs the lattice: --url nats://HOST:PORT (or MOTES_URL)")
    args = [
        sys.executable,
        "-m",
        "motes.node",
        "--url",
        url,
        "--name",
        ns.name,
        "--home",
        str(ns.home / "nodes" / ns.name),
    ]
    for label in ns.label:
        args += ["--label", label]
    # Become the agent, so signals (Ctrl-C drains, a second one exits) go straight to it.
    os.execv(sys.executable, args)


# --- inspection --------------------------------------------------------------------------


def _print_nodes(statuses: list[NodeStatus]) -> None:
    rows = []
    for s in statuses:
        r, inv = s.record, s.record.inventory
        rows.append(
            [
                r.name,
                r.id,
                str(r.pid),
                s.state + (" *" if s.leader else ""),
                str(inv.cpus),
                f"{inv.memory_mb // 1024} GiB",
                inv.arch,
                str(inv.gpus),
                f"{s.load.instances}/{s.load.inflight}",
                ",".join(f"{k}={v}" for k, v in sorted(r.labels.items())) or "-",
            ]
        )
    print_table(
        ["NODE", "ID", "PID", "STATE", "CPUS", "MEMORY", "ARCH", "GPUS", "INST/INFLIGHT", "LABELS"],
        rows,
    )
    if any(s.leader for s in statuses):
        print("(* scheduler leader)")


async def nodes(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        statuses = await client.nodes()
    if ns.json:
        _print_json(
            [
                {
                    "id": s.record.id,
                    "name": s.record.name,
                    "pid": s.record.pid,
                    "host": s.record.host,
                    "state": s.state,
                    "leader": s.leader,
                    "labels": s.record.labels,
                    "load": msgspec.to_builtins(s.load),
                    "inventory": msgspec.to_builtins(s.record.inventory),
                }
                for s in statuses
            ]
        )
    else:
        _print_nodes(statuses)
    return 0


async def deploy(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        started = time.monotonic()
        digest = await client.deploy(ns.file, wait=not ns.no_wait)
        app = next(a for a in await client.apps() if a.digest == digest)
        took = time.monotonic() - started
        print(
            f"deployed {app.name} {digest[7:19]} in {took:.2f} s: "
            + ", ".join(f"{app.name}.{m.name}" for m in app.motes)
        )
        running = {i.mote for i in await client.ps() if i.digest == digest}
        for m in app.motes:
            if m.min > 0 and m.name not in running:
                why = await client.why(f"{app.name}.{m.name}")
                print(f"  {app.name}.{m.name} is pending: {'; '.join(why.vetoes())}")
    return 0


async def apps(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        records = await client.apps()
    if ns.json:
        _print_json(records)
        return 0
    rows = [
        [
            a.name,
            a.digest[7:19],
            datetime.fromtimestamp(a.deployed_at).strftime("%Y-%m-%d %H:%M:%S"),
            ", ".join(f"{m.name}({m.kind[0]}, min={m.min})" for m in a.motes),
        ]
        for a in records
    ]
    print_table(["APP", "VERSION", "DEPLOYED", "MOTES"], rows)
    return 0


async def _node_names(client: Mesh) -> dict[str, str]:
    return {s.record.id: s.record.name for s in await client.nodes()}


async def ps(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        instances = await client.ps()
        names = await _node_names(client)
    if ns.json:
        _print_json(
            [{**msgspec.to_builtins(i), "node_name": names.get(i.node, i.node)} for i in instances]
        )
        return 0
    rows = [
        [
            f"{i.app}.{i.mote}",
            i.iid,
            i.digest[7:19],
            names.get(i.node, i.node),
            i.state,
            str(i.pid or "-"),
            str(i.inflight),
            str(i.served),
            str(i.restarts),
            i.detail[:60] or "",
        ]
        for i in instances
    ]
    print_table(
        [
            "MOTE",
            "INSTANCE",
            "VERSION",
            "NODE",
            "STATE",
            "PID",
            "INFLIGHT",
            "SERVED",
            "RESTARTS",
            "DETAIL",
        ],
        rows,
    )
    return 0


async def call(ns: argparse.Namespace) -> int:
    args = []
    for i, raw in enumerate(ns.args):
        try:
            args.append(json.loads(raw))
        except ValueError as exc:
            raise RequestError(
                f"argument {i} is not JSON ({exc}): {raw!r}; quote strings, e.g. '\"a b\"'"
            ) from None
    async with _connect(ns) as client:
        if ns.key is not None:
            actor, _, method = ns.mote.rpartition(".")
            if not actor or not method:
                raise RequestError("with --key, name the method: APP.ACTOR.METHOD")
            result = await getattr(client.actor(actor, ns.key), method)(*args, timeout=ns.timeout)
        else:
            result = await client.call(ns.mote, *args, timeout=ns.timeout)
    print(msgspec.json.encode(result).decode())
    return 0


async def logs(ns: argparse.Namespace) -> int:
    app, _, mote = ns.target.partition(".")
    async with _connect(ns) as client:
        names = await _node_names(client)
        async for batch in client.logs(app, mote or None, follow=ns.follow):
            node = names.get(batch.node, batch.node)
            for line in batch.lines:
                stamp = datetime.fromtimestamp(line.ts).strftime("%H:%M:%S")
                stream = sys.stderr if line.stream == "err" else sys.stdout
                print(
                    f"{stamp} {node} {batch.app}.{batch.mote}[{batch.iid}] {line.text}",
                    file=stream,
                    flush=True,
                )
    return 0


async def why(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        reply = await client.why(ns.mote)
    if ns.json:
        _print_json(reply)
        return 0
    print(
        f"{reply.mote}: {reply.desired} wanted, {reply.placed} placed"
        + (f" ({reply.note})" if reply.note else "")
    )
    rows = []
    for n in reply.nodes:
        ok = all(v.ok for v in n.verdicts)
        score = sum(v.score for v in n.verdicts) if ok else None
        for i, v in enumerate(n.verdicts):
            head = (
                [
                    f"{n.name} ({n.node})",
                    str(n.placed),
                    "eligible" if ok else "vetoed",
                    f"{score:g}" if score is not None else "-",
                ]
                if i == 0
                else ["", "", "", ""]
            )
            rows.append([*head, v.rule, "ok" if v.ok else "VETO", f"{v.score:g}", v.reason])
    print_table(["NODE", "PLACED", "VERDICT", "SCORE", "RULE", "", "RULE SCORE", "REASON"], rows)
    return 0


async def here(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        if ns.away:
            await client.here(None)
            print("you are at no node now; interactive motes may run anywhere")
            return 0
        node = ns.node
        if node is None:
            host = socket.gethostname()
            local = [s.record.name for s in await client.nodes() if s.record.host == host]
            if len(local) != 1:
                where = (
                    f"nodes on {host}: {', '.join(local)}" if local else f"no node runs on {host}"
                )
                raise RequestError(f"say which node you are at with --node ({where})")
            node = local[0]
        nid = await client.here(node)
    print(f"you are at {node} ({nid}): interactive motes move there, batch motes move away")
    return 0


async def drain(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        nid = await client.drain(ns.node, drained=not ns.undo)
    if ns.undo:
        print(f"{ns.node} ({nid}) takes instances again")
    else:
        print(f"draining {ns.node} ({nid}): its instances move to other nodes")
    return 0


async def rollback(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        digest = await client.rollback(ns.app)
    print(f"rolled {ns.app} back to {digest[7:19]}")
    return 0


async def queue(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        stats = await client.queue()
    if ns.json:
        _print_json(stats)
        return 0
    if not stats:
        print("no durable calls waiting")
        return 0
    rows = [[q.mote, str(q.depth), str(q.running), f"{q.oldest_s:.1f} s"] for q in stats]
    print_table(["MOTE", "DEPTH", "RUNNING", "OLDEST"], rows)
    return 0


async def flow(ns: argparse.Namespace) -> int:
    async with _connect(ns) as client:
        if ns.flow_command == "set":
            revision = await client.set_flow(ns.flow, ns.stages)
            print(f"{ns.flow}: {' -> '.join(ns.stages)} (revision {revision})")
            return 0
        flows = await client.flows()
    if ns.flow:
        app, _, name = ns.flow.partition(".")
        flows = [f for f in flows if f.app == app and (not name or f.name == name)]
    if ns.json:
        _print_json(flows)
        return 0
    print_table(["FLOW", "STAGES"], [[f"{f.app}.{f.name}", " -> ".join(f.stages)] for f in flows])
    return 0
