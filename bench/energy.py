"""energy_saved: estimated joules of one CPU job placed by the energy rule, against the
same job placed by spread alone.

A 4-node mesh on this box (default ``Timing``), two simulated power profiles set in the
nodes' config (``[node] power_idle_w`` / ``power_max_w``, watts per core): node-1 and
node-2 a 'desktop' (30 W idle / 120 W full over 8 cores: 3.75 / 15 W per core), node-3
and node-4 a 'Pi' (2 W / 6 W over 4 cores: 0.5 / 1.5 W per core). Two apps, each one
batch mote ``crunch`` (``kind="batch"``, ``min=max=4``) that burns ``ms`` of CPU:

- ``job_on.crunch``: the energy rule applies (the default);
- ``job_off.crunch``: the same job with ``energy=False``: spread alone places it.

``job_on`` is deployed first (its instances go where the models say joules are
cheapest), then ``job_off`` (one instance per node). Then, ``reps`` times in turn (on,
off, on, off ...), ``calls`` calls of ``ms`` CPU milliseconds each, as many in flight as
the job has instances; a repetition's joules are the growth of the job's instances'
``InstanceStatus.meter.joules`` over it (read live with ``mesh.ops.ps()``). Row
``energy_saved``: the median joules per repetition, rule on against spread; ratio on ÷
off (goal <= 0.8, i.e. >= 20 % fewer joules).

The joules are the meter's estimates (CPU seconds times the node's full-load watts per
core), not readings of a wattmeter, and every node is this same machine: the profiles are
simulated, so the figure measures placement under the models, not a Pi's real draw (a
real Pi also takes longer per call, which the rule learns from measured history).

Run alone: ``python -m bench.energy [--calls N] [--ms MS] [--reps N]`` prints the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from motes.client import Mesh
from motes.config import Timing
from motes.testing import local_mesh
from motes.wire.messages import InstanceStatus

from .runner import SPREAD, Result, Session
from .stats import median

__all__ = ["measure", "run"]

METRIC = "energy_saved"
INSTANCES = 4
DESKTOP = (3.75, 15.0)
PI = (0.5, 1.5)
POWER = {"node-1": DESKTOP, "node-2": DESKTOP, "node-3": PI, "node-4": PI}
NOTE = "joules: the meter's power-model estimates on simulated profiles, not wattmeter readings"

_JOB = '''"""The energy benchmark's job: burn a given CPU time."""

import time

import motes

app = motes.App({name!r})


@app.mote(kind="batch", min={n}, max={n}, energy={energy})
def crunch(ms: float) -> float:
    start = time.process_time()
    while time.process_time() - start < ms / 1000:
        sum(range(1000))
    return time.process_time() - start
'''


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _instances(client: Mesh, app: str) -> list[InstanceStatus]:
    return [i for i in await client.ops.ps() if i.app == app and i.state == "ready"]


async def _totals(client: Mesh, app: str, served: int) -> tuple[float, float]:
    """(joules, CPU seconds) of the app's instances once they have served ``served``."""
    deadline = time.monotonic() + 30
    while True:
        insts = await _instances(client, app)
        if sum(i.served for i in insts) >= served and all(i.meter for i in insts):
            joules = sum(i.meter.joules for i in insts if i.meter)
            cpu = sum(i.meter.cpu_user_s + i.meter.cpu_sys_s for i in insts if i.meter)
            return joules, cpu
        if time.monotonic() > deadline:
            raise RuntimeError(f"{app}: the meter did not show {served} calls within 30 s")
        await asyncio.sleep(0.1)


async def _deploy(client: Mesh, folder: Path, name: str, *, energy: bool) -> dict[str, Any]:
    app_file = folder / name / f"{name}.py"
    app_file.parent.mkdir()
    app_file.write_text(_JOB.format(name=name, n=INSTANCES, energy=energy))
    await client.deploy(app_file)
    names = {n.record.id: n.record.name for n in await client.ops.nodes()}
    placed = Counter(names[i.node] for i in await _instances(client, name))
    why = await client.ops.why(f"{name}.crunch")
    verdicts = {
        row.name: next((v.reason for v in row.verdicts if v.rule == "energy"), None)
        for row in why.nodes
    }
    _say(f"  {name}.crunch placed: {dict(sorted(placed.items()))}")
    return {"app": name, "energy": energy, "placed": dict(sorted(placed.items())), "why": verdicts}


async def _batch(client: Mesh, app: str, calls: int, ms: float, served: int) -> dict[str, float]:
    """``calls`` calls, one per instance in flight; the joules and CPU they added."""
    j0, c0 = await _totals(client, app, served)
    queue = iter(range(calls))

    async def caller() -> None:
        for _ in queue:
            await client.call(f"{app}.crunch", ms, timeout=120)

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(INSTANCES)))
    wall = time.perf_counter() - t0
    j1, c1 = await _totals(client, app, served + calls)
    return {"joules": j1 - j0, "cpu_s": c1 - c0, "wall_s": wall}


async def measure(calls: int = 100, ms: float = 20.0, reps: int = 5) -> dict[str, Any]:
    """Both jobs on one fresh 4-node mesh, interleaved (see the module docstring)."""
    t0 = time.monotonic()
    samples: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="mb-energy-") as tmp:
        folder = Path(tmp)
        async with local_mesh(folder, nodes=len(POWER), power=POWER, timing=Timing()) as mesh:
            async with mesh.client() as client:
                jobs = {
                    "on": await _deploy(client, folder, "job_on", energy=True),
                    "off": await _deploy(client, folder, "job_off", energy=False),
                }
                served = {"on": 0, "off": 0}
                for rep in range(reps + 1):  # the first round warms up, unrecorded
                    for side in ("on", "off"):
                        app = jobs[side]["app"]
                        got = await _batch(client, app, calls, ms, served[side])
                        served[side] += calls
                        if rep:
                            samples[side].append(got)
                        _say(
                            f"  {app} {'warm-up' if not rep else f'rep {rep}/{reps}'}: "
                            f"{got['joules']:.2f} J, {got['cpu_s']:.2f} CPU s, "
                            f"{got['wall_s']:.2f} s"
                        )
                for side in ("on", "off"):  # what `motes why` says after the calls
                    why = await client.ops.why(f"{jobs[side]['app']}.crunch")
                    jobs[side]["why_after"] = {
                        row.name: next((v.reason for v in row.verdicts if v.rule == "energy"), None)
                        for row in why.nodes
                    }
    return {
        "power_w_per_core": POWER,
        "instances": INSTANCES,
        "calls": calls,
        "ms": ms,
        "reps": reps,
        "jobs": jobs,
        "samples": samples,
        "elapsed_s": time.monotonic() - t0,
    }


def rows(result: dict[str, Any]) -> list[Result]:
    on = median([s["joules"] for s in result["samples"]["on"]])
    off = median([s["joules"] for s in result["samples"]["off"]])
    reps = len(result["samples"]["on"])
    ratio = round(on / off, 4) if off else None
    return [Result(METRIC, "J", round(on, 3), round(off, 3), SPREAD, ratio, reps, NOTE)]


async def run(session: Session) -> list[Result]:
    """The runner's entry."""
    sizes = session.sizes
    _say(f"energy: {sizes.energy_calls} calls of {sizes.energy_ms:g} ms CPU, {sizes.reps} reps")
    result = await measure(sizes.energy_calls, sizes.energy_ms, sizes.reps)
    session.details["energy"] = result
    return rows(result)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.energy",
        description="Estimated joules of one CPU job: energy rule on, and spread alone.",
    )
    parser.add_argument("--calls", type=int, default=100, help="calls per repetition")
    parser.add_argument("--ms", type=float, default=20.0, help="CPU milliseconds per call")
    parser.add_argument("--reps", type=int, default=5, help="recorded repetitions per side")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(measure(args.calls, args.ms, args.reps))
    except KeyboardInterrupt:
        _say("interrupted; every process the benchmark started has been stopped")
        raise SystemExit(130) from None
    print(json.dumps({**result, "rows": [asdict(r) for r in rows(result)]}, indent=2))


if __name__ == "__main__":
    main()
