"""sandbox_exec_ms: one confined run of ``/bin/true`` against a plain ``subprocess.run``.

Motes: ``motes.sandbox.confine.run_confined(["/bin/true"], Confinement())`` on this
machine's first backend (bubblewrap where it runs, else Landlock), cgroup included where
one can be made; peers, same run, interleaved: ``subprocess.run(["/bin/true"])`` (no
confinement at all, the floor) and the same confined run under Landlock. Median wall
time of ``sandbox_runs`` runs each, per repetition; stated, no goal yet.
Also ``python -m bench.sandbox_exec`` on its own.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from motes.errors import SandboxUnavailable
from motes.sandbox import _landlock
from motes.sandbox.confine import backend, run_confined
from motes.wire.messages import Confinement

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
    try:
        chosen, mine, peers = await measure(max(s.sizes.reps, 3))
    except SandboxUnavailable as exc:
        return [Result("sandbox_exec_ms", "ms", None, None, None, None, 0, str(exc))]
    s.details[METRIC] = {"backend": chosen, "runs_per_rep": RUNS}
    return compare(f"sandbox_exec_ms ({chosen})", "ms", mine, peers, max(s.sizes.reps, 3))


if __name__ == "__main__":
    chosen, mine, peers = asyncio.run(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5))
    print(f"{chosen} /bin/true: {mine:.2f} ms")
    for name, value in peers.items():
        print(f"{name}: {value:.2f} ms (ratio {mine / value:.2f})")
