"""Commands that talk to a running mesh: each is ``(mesh, args) -> View``."""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from datetime import datetime

import msgspec

from ..client import Mesh
from ..errors import RequestError
from ..wire.messages import NodeStatus
from .registry import Kind, arg, command
from .render import Table, View

__all__ = ["nodes_view"]


async def _node_names(mesh: Mesh) -> dict[str, str]:
    return {s.record.id: s.record.name for s in await mesh.ops.nodes()}


def nodes_view(statuses: list[NodeStatus]) -> View:
    rows = []
    for s in statuses:
        r, inv = s.record, s.record.inventory
        rows.append(
            [
                r.name,
                r.id,
                r.machine or "-",
                r.role or "-",
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
    data = [
        {
            "id": s.record.id,
            "name": s.record.name,
            "pid": s.record.pid,
            "host": s.record.host,
            "machine": s.record.machine,
            "role": s.record.role,
            "link": s.record.link,
            "state": s.state,
            "leader": s.leader,
            "labels": s.record.labels,
            "metrics": s.record.metrics,
            "load": s.load,
            "inventory": s.record.inventory,
        }
        for s in statuses
    ]
    headers = [
        "NODE",
        "ID",
        "MACHINE",
        "ROLE",
        "PID",
        "STATE",
        "CPUS",
        "MEMORY",
        "ARCH",
        "GPUS",
        "INST/INFLIGHT",
    ]
    return View(
        data=data,
        table=Table([*headers, "LABELS"], rows),
        after=(["(* scheduler leader)"] if any(s.leader for s in statuses) else [])
        + _hub_note(statuses),
    )


def _hub_note(statuses: list[NodeStatus]) -> list[str]:
    """What the mesh survives, from how many machines are hubs (none: one machine)."""
    hubs = {s.record.machine for s in statuses if s.record.role == "hub"}
    if not any(s.record.role == "leaf" for s in statuses):
        return []
    return [
        f"({len(hubs)} hub: the mesh's state (apps, placements, durable calls) lives on that "
        "one machine; while it is down, the leaves keep serving their own motes and wait "
        "for it. Hub clusters are not built yet.)"
    ]


@command("nodes", "list the mesh's nodes", json=True)
async def nodes(mesh: Mesh, ns: argparse.Namespace) -> View:
    return nodes_view(await mesh.ops.nodes())


@command(
    "deploy",
    "bundle an app file and deploy it",
    arg("file", help="path to the app's .py file (or its directory with app.py)"),
    arg("--no-wait", action="store_true", help="return before instances are ready"),
)
async def deploy(mesh: Mesh, ns: argparse.Namespace) -> View:
    started = time.monotonic()
    digest = await mesh.apps.deploy(ns.file, wait=not ns.no_wait)
    app = next(a for a in await mesh.apps.list() if a.digest == digest)
    took = time.monotonic() - started
    lines = [
        f"deployed {app.name} {digest[7:19]} in {took:.2f} s: "
        + ", ".join(f"{app.name}.{m.name}" for m in app.motes)
    ]
    running = {i.mote for i in await mesh.ops.ps() if i.digest == digest}
    for m in app.motes:
        if m.min > 0 and m.name not in running:
            why = await mesh.ops.why(f"{app.name}.{m.name}")
            lines.append(f"  {app.name}.{m.name} is pending: {'; '.join(why.vetoes())}")
    return View(data={"app": app.name, "digest": digest}, before=lines)


@command("apps", "list deployed apps", json=True)
async def apps(mesh: Mesh, ns: argparse.Namespace) -> View:
    records = await mesh.apps.list()
    rows = [
        [
            a.name,
            a.digest[7:19],
            datetime.fromtimestamp(a.deployed_at).strftime("%Y-%m-%d %H:%M:%S"),
            ", ".join(f"{m.name}({m.kind[0]}, min={m.min})" for m in a.motes),
        ]
        for a in records
    ]
    return View(data=records, table=Table(["APP", "VERSION", "DEPLOYED", "MOTES"], rows))


@command("ps", "list every instance: mote, version, node, state, in-flight", json=True)
async def ps(mesh: Mesh, ns: argparse.Namespace) -> View:
    instances = await mesh.ops.ps()
    names = await _node_names(mesh)
    data = [{**msgspec.to_builtins(i), "node_name": names.get(i.node, i.node)} for i in instances]
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
    headers = ["MOTE", "INSTANCE", "VERSION", "NODE", "STATE", "PID", "INFLIGHT", "SERVED"]
    return View(data=data, table=Table([*headers, "RESTARTS", "DETAIL"], rows))


@command(
    "call",
    "call a mote with JSON arguments and print its JSON result",
    arg("mote", metavar="APP.MOTE"),
    arg("args", nargs="*", metavar="JSON_ARG"),
    arg("--timeout", type=float, default=None),
    arg("--key", help="for an actor: the key; then APP.ACTOR.METHOD names the method"),
)
async def call(mesh: Mesh, ns: argparse.Namespace) -> View:
    args = []
    for i, raw in enumerate(ns.args):
        try:
            args.append(json.loads(raw))
        except ValueError as exc:
            raise RequestError(
                f"argument {i} is not JSON ({exc}): {raw!r}; quote strings, e.g. '\"a b\"'"
            ) from None
    if ns.key is not None:
        actor, _, method = ns.mote.rpartition(".")
        if not actor or not method:
            raise RequestError("with --key, name the method: APP.ACTOR.METHOD")
        result = await getattr(mesh.actor(actor, ns.key), method)(*args, timeout=ns.timeout)
    else:
        result = await mesh.call(ns.mote, *args, timeout=ns.timeout)
    return View(data=result, before=[msgspec.json.encode(result).decode()])


@command(
    "logs",
    "worker output and exceptions from every node",
    arg("target", metavar="APP[.MOTE]"),
    arg("-f", "--follow", action="store_true"),
    kind=Kind.STREAM,
)
async def logs(mesh: Mesh, ns: argparse.Namespace) -> int:
    app, _, mote = ns.target.partition(".")
    names = await _node_names(mesh)
    async for batch in mesh.ops.logs(app, mote or None, follow=ns.follow):
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


@command(
    "why",
    "every node's verdict, rule by rule, for placing a mote",
    arg("mote", metavar="APP.MOTE"),
    json=True,
)
async def why(mesh: Mesh, ns: argparse.Namespace) -> View:
    reply = await mesh.ops.why(ns.mote)
    head = f"{reply.mote}: {reply.desired} wanted, {reply.placed} placed" + (
        f" ({reply.note})" if reply.note else ""
    )
    rows = []
    for n in reply.nodes:
        ok = all(v.ok for v in n.verdicts)
        score = sum(v.score for v in n.verdicts) if ok else None
        for i, v in enumerate(n.verdicts):
            first = [
                f"{n.name} ({n.node})",
                str(n.placed),
                "eligible" if ok else "vetoed",
                f"{score:g}" if score is not None else "-",
            ]
            cells = first if i == 0 else ["", "", "", ""]
            rows.append([*cells, v.rule, "ok" if v.ok else "VETO", f"{v.score:g}", v.reason])
    headers = ["NODE", "PLACED", "VERDICT", "SCORE", "RULE", "", "RULE SCORE", "REASON"]
    return View(data=reply, table=Table(headers, rows), before=[head])


@command(
    "here",
    "tell the mesh you are at this machine (owner context)",
    arg("--node", help="the node you are at (default: the one on this host)"),
    arg("--away", action="store_true", help="you are at no node"),
)
async def here(mesh: Mesh, ns: argparse.Namespace) -> View:
    if ns.away:
        await mesh.ops.here(None)
        return View(before=["you are at no node now; interactive motes may run anywhere"])
    node = ns.node
    if node is None:
        host = socket.gethostname()
        local = [s.record.name for s in await mesh.ops.nodes() if s.record.host == host]
        if len(local) != 1:
            where = f"nodes on {host}: {', '.join(local)}" if local else f"no node runs on {host}"
            raise RequestError(f"say which node you are at with --node ({where})")
        node = local[0]
    nid = await mesh.ops.here(node)
    return View(
        data={"node": nid},
        before=[f"you are at {node} ({nid}): interactive motes move there, batch motes move away"],
    )


@command(
    "drain",
    "move every instance off a node; place nothing more there",
    arg("node", metavar="NODE"),
    arg("--undo", action="store_true", help="let the node take instances again"),
)
async def drain(mesh: Mesh, ns: argparse.Namespace) -> View:
    nid = await mesh.ops.drain(ns.node, drained=not ns.undo)
    if ns.undo:
        return View(data={"node": nid}, before=[f"{ns.node} ({nid}) takes instances again"])
    return View(
        data={"node": nid}, before=[f"draining {ns.node} ({nid}): its instances move elsewhere"]
    )


@command("rollback", "go back to the app's previous version", arg("app", metavar="APP"))
async def rollback(mesh: Mesh, ns: argparse.Namespace) -> View:
    digest = await mesh.apps.rollback(ns.app)
    return View(data={"digest": digest}, before=[f"rolled {ns.app} back to {digest[7:19]}"])


@command("queue", "durable calls waiting or running, per mote", json=True)
async def queue(mesh: Mesh, ns: argparse.Namespace) -> View:
    stats = await mesh.calls.queue()
    if not stats:
        return View(data=stats, before=["no durable calls waiting"])
    rows = [[q.mote, str(q.depth), str(q.running), f"{q.oldest_s:.1f} s"] for q in stats]
    return View(data=stats, table=Table(["MOTE", "DEPTH", "RUNNING", "OLDEST"], rows))


@command(
    "flow set",
    "rewire a flow now, keeping items in flight",
    arg("flow", metavar="APP.FLOW"),
    arg("stages", nargs="+", metavar="STAGE"),
)
async def flow_set(mesh: Mesh, ns: argparse.Namespace) -> View:
    revision = await mesh.calls.set_flow(ns.flow, ns.stages)
    line = f"{ns.flow}: {' -> '.join(ns.stages)} (revision {revision})"
    return View(data={"revision": revision}, before=[line])


@command(
    "flow show",
    "every flow's current stages",
    arg("flow", nargs="?", metavar="APP[.FLOW]"),
    json=True,
)
async def flow_show(mesh: Mesh, ns: argparse.Namespace) -> View:
    flows = await mesh.calls.flows()
    if ns.flow:
        app, _, name = ns.flow.partition(".")
        flows = [f for f in flows if f.app == app and (not name or f.name == name)]
    rows = [[f"{f.app}.{f.name}", " -> ".join(f.stages)] for f in flows]
    return View(data=flows, table=Table(["FLOW", "STAGES"], rows))
