"""The data-locality figures (``locality_bytes`` and friends): bytes a data-heavy job moves
over the lattice with the data-locality rule on, and off.

A 4-node mesh (default ``Timing``, embedded nats-server on 127.0.0.1); only ``node-3`` is
labelled ``zone=data``. A file of random bytes (64 MiB) is put with
``Policy.parse("k=1,n=1,label.zone=data")``, so node-3 holds its one share of every blob
and nothing else holds any. Then two apps, each one mote ``scan`` (``max=1``) that reads
the file by capability inside the mesh (``async with motes.connect() as mesh``, ``await
mesh.store.open(cap)``, every chunk, hashed) and answers what its client fetched:

- ``job_on.scan`` declares ``reads=[CAP]``: the scheduler's data-locality rule applies;
- ``job_off.scan`` is the same job without ``reads=``: the rule has nothing to go on.

Each is called ``calls`` times (3): the first call fetches the blobs from the nodes, later
calls find them in the cache of the node the job runs on. Measured per call, inside the
mote: ``mesh.store.net.bytes_in`` (share bytes the mote's store client fetched from store
services over the lattice; a cache hit adds nothing), and the same bytes by the node that
served them (``StoreNet.get_share`` wrapped in the mote, as ``StoreNet`` keeps one total),
hence the part fetched from a node other than the job's own (``remote``). Also recorded:
the node each job ran on (``mesh.ps()``, matched by the worker's pid) and ``mesh.why()``'s
locality verdict for every node. The nodes' caches are emptied between the two jobs, so
the second does not find the first one's reads.

Rows: ``locality_bytes`` (first call), ``locality_bytes_later`` (median of the later
calls), ``locality_remote_bytes`` (first call, from other nodes), in MiB; Motes' column is
the rule on, the peer column the rule off; ratio on ÷ off (lower is better).

Run alone: ``python -m bench.locality [--size-mib N] [--calls N]`` prints the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from motes.client import Mesh
from motes.config import Timing
from motes.node.localmesh import LocalMesh
from motes.store import Policy, parse_cap
from motes.testing import local_mesh

from .runner import RULE_OFF, Result, Session
from .stats import median
from .store import sha256_of, write_random

__all__ = ["measure", "run"]

MiB = 1 << 20
NODES = 4
HOLDER = "node-3"
LABELS = {HOLDER: {"zone": "data"}}
POLICY = "k=1,n=1,label.zone=data"
CALL_TIMEOUT_S = 300.0

_JOB = '''"""The locality benchmark's job: read one stored file by capability, count the bytes."""

import hashlib
import os
import time

import motes

app = motes.App({name!r})

CAP = {cap!r}


@app.mote({options})
async def scan(cap: str) -> dict:
    async with motes.connect() as mesh:  # inside a mote: the mesh, and the node's cache
        net = mesh.store.net
        by_node = {{}}
        get_share = net.get_share

        async def counted(node, root, num, timeout=None):
            fetched = await get_share(node, root, num, timeout)
            by_node[node] = by_node.get(node, 0) + len(fetched.data)
            return fetched

        net.get_share = counted  # who served which bytes (StoreNet counts a total only)
        digest = hashlib.sha256()
        size = 0
        t0 = time.perf_counter()
        async for chunk in await mesh.store.open(cap):
            digest.update(chunk)
            size += len(chunk)
        return {{
            "size": size,
            "sha256": digest.hexdigest(),
            "seconds": time.perf_counter() - t0,
            "bytes_in": getattr(net, "bytes_in", None),
            "by_node": by_node,
            "pid": os.getpid(),
        }}
'''


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def job_source(name: str, cap: str, *, reads: bool) -> str:
    options = "reads=[CAP], max=1" if reads else "max=1"
    return _JOB.format(name=name, cap=cap, options=options)


def _share_files(mesh: LocalMesh) -> dict[str, int]:
    """Node name -> share files under its store."""
    out = {}
    for node in mesh.nodes:
        shares = node.home / "store" / "shares"
        out[node.name] = sum(1 for f in shares.rglob("*") if f.is_file()) if shares.is_dir() else 0
    return out


def _empty_caches(mesh: LocalMesh) -> int:
    """Empty every node's blob cache; the bytes removed."""
    removed = 0
    for node in mesh.nodes:
        for folder in ("blobs", "heads", "tags"):
            d = node.home / "cache" / folder
            if not d.is_dir():
                continue
            for entry in d.iterdir():
                if entry.is_file():
                    removed += entry.stat().st_size if folder == "blobs" else 0
                    entry.unlink()
                else:
                    shutil.rmtree(entry)
    return removed


async def _until(probe: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not seen within {timeout:g} s")
        await asyncio.sleep(0.2)


async def _job(
    client: Mesh,
    folder: Path,
    name: str,
    cap: str,
    *,
    reads: bool,
    calls: int,
    size: int,
    digest: str,
    names: dict[str, str],
) -> dict[str, Any]:
    app_file = folder / name / f"{name}.py"
    app_file.parent.mkdir()
    app_file.write_text(job_source(name, cap, reads=reads))
    await client.deploy(app_file)
    mote = f"{name}.scan"
    out: list[dict[str, Any]] = []
    for i in range(1, calls + 1):
        t0 = time.perf_counter()
        answer: dict[str, Any] = await client.call(mote, cap, timeout=CALL_TIMEOUT_S)
        wall = time.perf_counter() - t0
        if answer["size"] != size or answer["sha256"] != digest:
            raise RuntimeError(f"{mote} read {answer['size']:,} bytes that differ from the file")
        instances = {i.pid: i.node for i in await client.ops.ps() if i.app == name}
        node = instances.get(answer["pid"])
        by_node: dict[str, int] = answer["by_node"]
        answer.update(
            call=i,
            call_s=wall,
            node=node,
            node_name=names.get(node or "", node),
            by_node={names.get(k, k): v for k, v in by_node.items()},
            remote_bytes=sum(v for k, v in by_node.items() if k != node),
        )
        if answer["bytes_in"] is None:
            _say("  mesh.store.net.bytes_in does not exist: counting the shares served instead")
            answer["bytes_in"] = sum(by_node.values())
            answer["bytes_in_source"] = "sum of shares served (no StoreNet.bytes_in)"
        out.append(answer)
        _say(
            f"  {mote} call {i}/{calls} on {answer['node_name']}: read {answer['size'] / MiB:.0f}"
            f" MiB in {answer['seconds']:.2f} s; fetched {answer['bytes_in'] / MiB:.2f} MiB over"
            f" the lattice, {answer['remote_bytes'] / MiB:.2f} MiB of it from other nodes"
            f" {answer['by_node']}"
        )
    why = await client.ops.why(mote)
    verdicts = []
    for row in why.nodes:
        loc = next((v for v in row.verdicts if v.rule == "locality"), None)
        verdicts.append(
            {
                "node": row.name,
                "placed": row.placed,
                "eligible": all(v.ok for v in row.verdicts),
                "score": round(sum(v.score for v in row.verdicts), 3),
                "locality": f"locality: {loc.reason}" if loc else None,
                "locality_score": loc.score if loc else None,
            }
        )
    ran_on = sorted({c["node_name"] for c in out if c["node_name"]})
    here = next((v for v in verdicts if v["node"] in ran_on), None)
    return {
        "app": name,
        "reads": reads,
        "ran_on": ", ".join(ran_on) or None,
        "calls": out,
        "why": verdicts,
        "why_note": why.note,
        "verdict_here": here["locality"] if here else None,
    }


async def measure(size_mib: int = 64, calls: int = 3) -> dict[str, Any]:
    """Both jobs on a fresh 4-node mesh; everything recorded (see the module docstring)."""
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mb-locality-") as tmp:
        folder = Path(tmp)
        path = folder / "data"
        await asyncio.to_thread(write_random, path, size_mib)
        size = path.stat().st_size
        digest = await asyncio.to_thread(sha256_of, path)
        async with local_mesh(folder, nodes=NODES, labels=LABELS, timing=Timing()) as mesh:
            async with mesh.client(cache=False) as client:
                names = {s.record.id: s.record.name for s in await client.ops.nodes()}
                holder = next(i for i, n in names.items() if n == HOLDER)
                cap = await client.store.put(path, policy=Policy.parse(POLICY))
                shares = await asyncio.to_thread(_share_files, mesh)
                if not shares[HOLDER] or sum(shares.values()) != shares[HOLDER]:
                    raise RuntimeError(f"the file's shares are not on {HOLDER} alone: {shares}")
                si = parse_cap(cap).si_hex

                async def reported() -> bool:
                    usage = await client.store.du()
                    return any(h.node == holder and h.files.get(si) for h in usage.nodes)

                # The scheduler learns where data is from the nodes' holdings reports.
                await _until(reported, f"{HOLDER}'s holdings report of the file")
                on = await _job(
                    client,
                    folder,
                    "job_on",
                    cap,
                    reads=True,
                    calls=calls,
                    size=size,
                    digest=digest,
                    names=names,
                )
                emptied = await asyncio.to_thread(_empty_caches, mesh)
                _say(f"  caches emptied: {emptied / MiB:.1f} MiB")
                off = await _job(
                    client,
                    folder,
                    "job_off",
                    cap,
                    reads=False,
                    calls=calls,
                    size=size,
                    digest=digest,
                    names=names,
                )
    return {
        "size_MiB": size / MiB,
        "nodes": NODES,
        "labels": LABELS,
        "policy": POLICY,
        "holder": HOLDER,
        "shares": shares,
        "calls": calls,
        "bytes": "mesh.store.net.bytes_in in the job's client: share bytes fetched over the"
        " lattice; remote_bytes: those from a node other than the job's own",
        "on": on,
        "off": off,
        "elapsed_s": time.monotonic() - t0,
    }


def rows(result: dict[str, Any]) -> list[Result]:
    """First call, later calls (median), and remote bytes: rule on vs rule off, in MiB."""

    def first(job: dict[str, Any], key: str) -> float:
        return float(job["calls"][0][key]) / MiB

    def later(job: dict[str, Any]) -> float | None:
        rest = [c["bytes_in"] / MiB for c in job["calls"][1:]]
        return median(rest) if rest else None

    on, off = result["on"], result["off"]
    n = result["calls"]
    figures = [
        ("locality_bytes", first(on, "bytes_in"), first(off, "bytes_in"), 1),
        ("locality_bytes_later", later(on), later(off), n - 1),
        ("locality_remote_bytes", first(on, "remote_bytes"), first(off, "remote_bytes"), 1),
    ]
    out = []
    for metric, mine, theirs, reps in figures:
        if mine is None or theirs is None:
            continue
        ratio = round(mine / theirs, 4) if theirs else None
        out.append(Result(metric, "MiB", round(mine, 3), round(theirs, 3), RULE_OFF, ratio, reps))
    return out


async def run(session: Session) -> list[Result]:
    """``make bench``: the runner's entry (full runs only)."""
    sizes = session.sizes
    _say(f"locality: {sizes.locality_mib} MiB on {HOLDER} alone, {sizes.locality_calls} calls")
    result = await measure(sizes.locality_mib, sizes.locality_calls)
    session.details["locality"] = result
    return rows(result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.locality",
        description="Bytes a job moves over the lattice, data-locality rule on and off.",
    )
    parser.add_argument("--size-mib", type=int, default=64, help="file size (MiB)")
    parser.add_argument("--calls", type=int, default=3, help="calls per job")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(measure(args.size_mib, args.calls))
    except KeyboardInterrupt:
        _say("interrupted; every process the benchmark started has been stopped")
        raise SystemExit(130) from None
    print(json.dumps({**result, "rows": [asdict(r) for r in rows(result)]}, indent=2))


if __name__ == "__main__":
    main()
