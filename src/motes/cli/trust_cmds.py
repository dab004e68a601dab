"""Commands of trust: who you are, invites and joining, grants, revocation, the audit log."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path

import msgspec

from ..client import Mesh
from ..config import Config
from ..errors import IntegrityError, RequestError
from ..identity import KeyKind
from ..identity.grants import RUN_BUDGETS, RunTerms
from ..trust.client import PrincipalFiles
from ..trust.join import join as join_mesh
from ..trust.join import member_lattice
from ..wire.trust import ACTIONS, Grant
from ..wire.trust import Kind as PrincipalKind
from .registry import Kind, arg, command
from .render import Table, View

__all__ = ["audit", "grant", "grants", "invite", "join", "revoke", "whoami"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d`` as seconds."""
    m = _DURATION.match(text.strip())
    if not m:
        raise RequestError(f"{text!r} is not a duration (e.g. 30s, 15m, 1h, 7d)")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _grant_spec(text: str) -> tuple[str, str]:
    action, _, resource = text.partition(":")
    if action not in ACTIONS:
        raise RequestError(f"{action!r} is not an action; actions: {', '.join(ACTIONS)}")
    return action, resource or "*"


@command(
    "id", "show (or create) your key: the id the mesh knows you by", json=True, kind=Kind.LOCAL
)
async def whoami(config: Config, ns: argparse.Namespace) -> int:
    files = PrincipalFiles(config.home_path, KeyKind.PERSON)
    key = files.key()
    info = files.mesh_info()
    data = {
        "id": key.id,
        "fingerprint": key.fingerprint.hex(),
        "key_file": str(files.key_path),
        "mesh": info.get("id", ""),
        "admitted": files.exists(),
    }
    if getattr(ns, "json", False):
        print(msgspec.json.encode(data).decode())
        return 0
    print(f"you are {key.id} (key {files.key_path}, fingerprint {key.fingerprint.hex()[:32]}…)")
    if files.exists():
        print(f"member of mesh {info.get('id', '?')}")
    else:
        print("not a member of any mesh yet: ask its owner for an invite (`motes join TOKEN`)")
    return 0


@command(
    "invite",
    "print a single-use, expiring token that lets a person or a machine join",
    arg("--person", metavar="NAME", help="invite a person"),
    arg("--node", metavar="NAME", help="invite a machine (a node)"),
    arg("--ttl", default="1h", help="how long the token is good for (default 1h)"),
    arg("--uses", type=int, default=1, help="how many joins it allows (default 1)"),
    arg(
        "--grant",
        action="append",
        default=[],
        metavar="ACTION[:RESOURCE]",
        help="grant on joining, e.g. call:shop or run:* (repeatable)",
    ),
)
async def invite(mesh: Mesh, ns: argparse.Namespace) -> View:
    if bool(ns.person) == bool(ns.node):
        raise RequestError("invite either a person (--person NAME) or a machine (--node NAME)")
    kind: PrincipalKind = "person" if ns.person else "node"
    name = ns.person or ns.node
    grants = [_grant_spec(g) for g in ns.grant]
    token = await mesh.trust.invite(kind, name, ttl_s=duration(ns.ttl), uses=ns.uses, grants=grants)
    until = datetime.fromtimestamp(token.expires).strftime("%Y-%m-%d %H:%M:%S")
    return View(
        data={"token": token.token, "id": token.id, "expires": token.expires},
        before=[token.token],
        after=[f"(invite {token.id} for {kind} {name}: {ns.uses} use(s), until {until})"],
    )


@command(
    "join",
    "join a mesh with an invite token (a machine then runs its node agent)",
    arg("token"),
    arg("--name", help="your name (or the machine's) in the mesh (default: the invite's)"),
    arg("--no-start", action="store_true", help="a machine: only join, do not start the node"),
    arg("--label", action="append", default=[], metavar="KEY=VALUE", help="a machine's labels"),
    kind=Kind.LOCAL,
)
async def join(config: Config, ns: argparse.Namespace) -> int:
    joined, files = await join_mesh(
        ns.token, config.home_path, name=ns.name or "", servers=config.lattice.servers
    )
    p = joined.principal
    print(f"joined mesh {joined.mesh.id} as {p.kind} {p.name} ({p.id})")
    if p.kind != "node":
        return 0
    if joined.setup is not None and joined.setup.hubs:
        # The mesh listens beyond loopback: this machine runs its own server, a leaf.
        from ..node.inventory import parse_labels
        from ..node.machine import LeafMachine

        try:
            labels = parse_labels(ns.label)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        machine = LeafMachine(files, config, labels)
        await machine.prepare(joined.setup)
        if ns.no_start:
            return 0
        return await machine.run()
    if ns.no_start:
        return 0
    from .local import become_node

    become_node(config.replace(lattice=member_lattice(files)), p.name, files.dir, ns.label)
    return 0


@command(
    "grant",
    "let a principal do an action on a resource (signed by you, an admin)",
    arg("principal", help="a principal's id or name"),
    arg("action", choices=ACTIONS),
    arg("resource", nargs="?", default="*", help="app, app.mote, node id or dataset (default *)"),
    arg("--until", help="it ends after this long (e.g. 7d); default: until revoked"),
    arg("--native", action="store_true", help="run: its apps may run unsandboxed (not only wasm)"),
    arg("--cpu-s-per-day", type=float, metavar="S", help="run: CPU seconds a day on the node"),
    arg("--memory-mb", type=int, metavar="MB", help="run: each instance's memory limit"),
    arg("--instances", type=int, metavar="N", help="run: how many instances at once"),
)
async def grant(mesh: Mesh, ns: argparse.Namespace) -> View:
    budget = {key: float(value) for key in RUN_BUDGETS if (value := getattr(ns, key)) is not None}
    until = duration(ns.until) if ns.until else None
    g = await mesh.trust.grant(
        ns.principal, ns.action, ns.resource, until_s=until, budget=budget, native=ns.native
    )
    terms = f" ({RunTerms.of(g).describe()})" if g.action == "run" else ""
    return View(
        data=g, before=[f"granted {g.principal} {g.action} {g.resource}{terms} (grant {g.id})"]
    )


@command(
    "revoke",
    "revoke a principal (its connections close at once) or one grant",
    arg("principal", nargs="?", help="a principal's id or name"),
    arg("--grant", dest="grant_id", help="revoke only this grant (by id)"),
)
async def revoke(mesh: Mesh, ns: argparse.Namespace) -> View:
    if ns.grant_id:
        await mesh.trust.revoke_grant(ns.grant_id)
        return View(data={"grant": ns.grant_id}, before=[f"grant {ns.grant_id} revoked"])
    if not ns.principal:
        raise RequestError("name a principal to revoke, or --grant ID")
    t0 = time.perf_counter()
    pid = await mesh.trust.revoke(ns.principal)
    took = time.perf_counter() - t0
    return View(
        data={"principal": pid, "seconds": took},
        before=[f"{pid} revoked in {took * 1000:.0f} ms: its connections are closed"],
    )


@command("grants", "every principal the mesh admitted, and the grants in force", json=True)
async def grants(mesh: Mesh, ns: argparse.Namespace) -> View:
    view = await mesh.trust.view()
    rows = []
    for p in sorted(view.principals.values(), key=lambda p: (p.kind, p.name)):
        mine = [g for g in view.grants if g.principal == p.id]
        state = "revoked" if p.revoked_at else p.kind
        actions = ", ".join(_described(g) for g in mine) or "(none)"
        rows.append([p.id, p.name, state, p.owner or "-", actions])
    data = {"principals": list(view.principals.values()), "grants": view.grants}
    return View(data=data, table=Table(["ID", "NAME", "KIND", "OWNER", "GRANTS"], rows))


def _described(g: Grant) -> str:
    """``run NODE (native, 2 instance(s))``: a grant as ``motes grants`` lists it."""
    if g.action == "run":
        return f"run {g.resource} ({RunTerms.of(g).describe()})"
    return f"{g.action} {g.resource}"


@command(
    "audit",
    "the signed, hash-chained audit log: joins, grants, revocations, deploys",
    arg("action", nargs="?", choices=["verify"], help="verify: check every signature and link"),
    arg("-f", "--follow", action="store_true"),
    json=True,
    kind=Kind.STREAM,
)
async def audit(mesh: Mesh, ns: argparse.Namespace) -> int:
    if ns.action == "verify":
        try:
            checked = await mesh.trust.verify_audit()
        except IntegrityError as exc:
            print(f"motes: the audit log does not verify: {exc}", file=sys.stderr)
            return 1
        head = checked.head.hex()[:16]
        print(f"the audit log verifies: {len(checked.entries)} entries, head {head}")
        return 0
    async for e in mesh.trust.audit_log(follow=ns.follow):
        if ns.json:
            row = {k: v for k, v in msgspec.to_builtins(e).items() if k != "statement"}
            print(msgspec.json.encode(row).decode(), flush=True)
        else:
            stamp = datetime.fromtimestamp(e.at).strftime("%Y-%m-%d %H:%M:%S")
            print(f"{e.seq:5d} {stamp} {e.kind:8} {e.actor} -> {e.subject} {e.detail}", flush=True)
    return 0


@command(
    "creds",
    "export your current credential as a NATS .creds file (for a plain NATS client)",
    arg("-o", "--output", required=True, help="where to write it (mode 0600)"),
    kind=Kind.STREAM,
)
async def creds(mesh: Mesh, ns: argparse.Namespace) -> int:
    source = mesh.config.lattice.credentials
    if not source:
        raise RequestError("this connection has no credential to export")
    out = Path(ns.output)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        shutil.copyfileobj(src, dst)
    print(f"wrote {out}: connect with inbox prefix {mesh.config.lattice.inbox_prefix}")
    return 0
