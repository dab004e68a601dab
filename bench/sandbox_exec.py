"""sandbox_exec_ms: one confined run of ``/bin/true`` against a plain ``subprocess.run``.

Motes: ``motes.sandbox.confine.run_confined(["/bin/true"], Confinement())`` on this
machine's first backend (bubblewrap where it runs, else Landlock), cgroup included where
one can be made; peers, same run, interleaved: ``subprocess.run(["/bin/true"])`` (no
confinement at all, the floor) and the same confined run under Landlock. Median wall
time of ``RUNS`` runs each, per repetition; stated, no goal yet.

Row ``mesh_exec_ms``: ``mesh.exec(["/bin/true"])`` from a client of the run's
(authenticated) mesh to one of its nodes, one at a time: the lattice's two crossings,
the node's grant check and the same confined run, against ``subprocess.run`` timed in
the same loop, interleaved. Also ``python -m bench.sandbox_exec`` on its own (it starts
a one-node mesh for the ``mesh.exec`` row).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from motes.client import Mesh
from motes.errors import SandboxUnavailable
from motes.sandbox import _landlock
from motes.sandbox.confine import backend, run_confined
from motes.testing import local_mesh
from motes.wire.messages import Confinement

from .contenders import MotesContender
from .runner import Result, Session, compare
from .stats import median

METRIC = "sandbox_exec"
RUNS = 50


async def _confined(prefer: str, n: int) -> float:
    conf = Confinement()
    t = time.perf_counter()
    for _ in range(n):
        await run_confined(["/bin/true"], conf, prefer=prefer)  # type: ignore[arg-type]
    return (time.perf_counter() - t) / n * 1e3


async def _plain(n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        await asyncio.to_thread(subprocess.run, ["/bin/true"], check=True)
    return (time.perf_counter() - t) / n * 1e3


async def _mesh_exec(mesh: Mesh, node: str, n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        await mesh.exec(["/bin/true"], node=node)
    return (time.perf_counter() - t) / n * 1e3


async def measure_mesh(mesh: Mesh, reps: int, n: int = RUNS) -> tuple[float, float]:
    """Median ms of ``mesh.exec`` of ``/bin/true`` and of ``subprocess.run``, interleaved."""
    node = (await mesh.ops.nodes())[0].record.id
    await mesh.exec(["/bin/true"], node=node)  # the node's first run probes the backend
    mine: list[float] = []
    plain: list[float] = []
    for _ in range(reps):
        mine.append(await _mesh_exec(mesh, node, n))
        plain.append(await _plain(n))
    return median(mine), median(plain)


async def measure(reps: int, n: int = RUNS) -> tuple[str, float, dict[str, float]]:
    chosen = backend()
    mine: list[float] = []
    theirs: dict[str, list[float]] = {"subprocess.run": []}
    lock = chosen != "landlock" and _landlock.abi() >= 4
    if lock:
        theirs["landlock"] = []
    for _ in range(reps):
        mine.append(await _confined(chosen, n))
        theirs["subprocess.run"].append(await _plain(n))
        if lock:
            theirs["landlock"].append(await _confined("landlock", n))
    return chosen, median(mine), {k: median(v) for k, v in theirs.items()}


async def run(s: Session) -> list[Result]:
    reps = max(s.sizes.reps, 3)
    try:
        chosen, mine, peers = await measure(reps)
    except SandboxUnavailable as exc:
        return [Result("sandbox_exec_ms", "ms", None, None, None, None, 0, str(exc))]
    s.details[METRIC] = {"backend": chosen, "runs_per_rep": RUNS}
    rows = compare(f"sandbox_exec_ms ({chosen})", "ms", mine, peers, reps)
    owner = s.motes.get("sync")
    if isinstance(owner, MotesContender):
        via, plain = await measure_mesh(owner.client, reps)
        rows += compare(f"mesh_exec_ms ({chosen})", "ms", via, {"subprocess.run": plain}, reps)
    return rows


async def _main(reps: int) -> None:
    chosen, mine, peers = await measure(reps)
    print(f"{chosen} /bin/true: {mine:.2f} ms")
    for name, value in peers.items():
        print(f"{name}: {value:.2f} ms (ratio {mine / value:.2f})")
    with tempfile.TemporaryDirectory(prefix="motes-bench-exec-") as tmp:
        async with local_mesh(Path(tmp), nodes=1) as mesh, mesh.client() as client:
            via, plain = await measure_mesh(client, reps)
    print(f"mesh.exec {chosen} /bin/true: {via:.2f} ms")
    print(f"subprocess.run: {plain:.2f} ms (ratio {via / plain:.2f})")


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
