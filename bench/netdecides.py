"""Figures for "the network decides": scale from zero, failover, live upgrade.

Each function runs against a real local mesh (embedded nats-server on 127.0.0.1, node
processes) with the default timing (heartbeats every 0.25 s, failure timeout 1.5 s) and
returns raw samples; the runner takes medians and writes the rows.

- ``scale_from_zero_ms``: a freshly deployed ``min=0`` mote's first call, end to end
  (no-responders, demand to the leader, placement, a warm worker loads the bundle).
- ``failover_s``: SIGKILL of the node running a mote's only instance, until a call to it
  succeeds again from another node.
- ``upgrade_errors``: failed plus lost calls while a new version is deployed under a
  steady 500 calls/s.

``durable_throughput`` has its own module, ``bench/durable.py`` (``--only durable``).

Run alone: ``python -m bench.netdecides [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from motes.client import Mesh
from motes.errors import MotesError
from motes.node.localmesh import LocalMesh

from .runner import Result

__all__ = ["failover_s", "run", "scale_from_zero_ms", "upgrade_errors"]

_ECHO = """
import motes

app = motes.App({name!r})


@app.mote(min={min}, max={max})
def echo(x: int) -> int:
    return x + {version}
"""


def _write_app(folder: Path, name: str, *, min: int = 1, max: int = 4, version: int = 0) -> Path:
    path = folder / f"{name}.py"
    path.write_text(_ECHO.format(name=name, min=min, max=max, version=version))
    return path


async def _until_warm(client: Mesh, nodes: int) -> None:
    """Every node has had time to refill its warm pool (a worker start is ~0.3 s of CPU)."""
    await asyncio.sleep(1.0)
    await client.ops.nodes()


async def scale_from_zero_ms(mesh: LocalMesh, client: Mesh, folder: Path, reps: int) -> list[float]:
    samples = []
    for i in range(reps):
        name = f"zero{i}"
        await client.deploy(_write_app(folder, name, min=0))
        await _until_warm(client, len(mesh.nodes))  # nodes prefetch the bundle meanwhile
        started = time.perf_counter()
        assert await client.call(f"{name}.echo", 1) == 1
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def failover_s(mesh: LocalMesh, client: Mesh, folder: Path, reps: int) -> list[float]:
    """Kill the node serving the only instance; time until a call succeeds again."""
    await client.deploy(_write_app(folder, "solo", min=1, max=1))
    names = {s.record.id: s.record.name for s in await client.ops.nodes()}
    samples = []
    for _ in range(reps):
        victim = next(names[i.node] for i in await client.ops.ps() if i.app == "solo")
        await mesh.kill_node(victim)
        started = time.perf_counter()
        while True:
            try:
                await client.call("solo.echo", 1, timeout=0.5)
                break
            except MotesError:
                continue
        samples.append(time.perf_counter() - started)
        await mesh.restart_node(victim)
        await mesh.wait_ready()
        await _until_warm(client, len(mesh.nodes))
    return samples


async def upgrade_errors(
    client: Mesh, folder: Path, rate: float = 500.0, seconds: float = 6.0
) -> Counter[str]:
    """Deploy v2 halfway through ``seconds`` of calls at ``rate``/s; count the outcomes."""
    app_file = _write_app(folder, "live", min=2, version=1)
    await client.deploy(app_file)
    outcomes: Counter[str] = Counter()
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        try:
            await client.call("live.echo", i, timeout=10)
            outcomes["ok"] += 1
        except MotesError as exc:
            outcomes[type(exc).__name__] += 1

    async def upgrade() -> None:
        await asyncio.sleep(seconds / 3)
        await client.deploy(_write_app(folder, "live", min=2, version=2))

    upgrading = asyncio.create_task(upgrade())
    start = time.perf_counter()
    sent = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        while sent < elapsed * rate:
            task = asyncio.create_task(one(sent))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(0.002)
    await upgrading
    await asyncio.gather(*pending)
    outcomes["sent"] = sent
    outcomes["lost"] = sent - sum(v for k, v in outcomes.items() if k != "sent")
    return outcomes


async def run(session: object) -> list[Result]:
    """The runner's entry: its own 3-node mesh, default timing; one row per figure."""
    reps = 5
    with tempfile.TemporaryDirectory(prefix="motes-bench-nd-") as tmp:
        folder = Path(tmp)
        async with LocalMesh(folder / "mesh", nodes=3, write_mesh_file=False) as mesh:
            async with mesh.client() as client:
                zero = await scale_from_zero_ms(mesh, client, folder, reps)
                fail = await failover_s(mesh, client, folder, reps)
                up = await upgrade_errors(client, folder)
    bad = up["sent"] - up["ok"]
    return [
        Result(
            "scale_from_zero_ms", "ms", round(statistics.median(zero), 1), None, None, None, reps
        ),
        Result("failover_s", "s", round(statistics.median(fail), 3), None, None, None, reps),
        Result("upgrade_errors", "calls", float(bad), None, None, None, 1),
    ]


async def _main(quick: bool) -> None:
    reps = 3 if quick else 5
    with tempfile.TemporaryDirectory(prefix="motes-bench-nd-") as tmp:
        folder = Path(tmp)
        async with LocalMesh(folder / "mesh", nodes=3, write_mesh_file=False) as mesh:
            async with mesh.client() as client:
                zero = await scale_from_zero_ms(mesh, client, folder, reps)
                print(f"scale_from_zero_ms p50 {statistics.median(zero):.0f} ({zero})")
                fail = await failover_s(mesh, client, folder, reps)
                print(f"failover_s p50 {statistics.median(fail):.2f} ({fail})")
                up = await upgrade_errors(client, folder, seconds=3 if quick else 6)
                print(f"upgrade: {dict(up)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    ns = parser.parse_args()
    asyncio.run(_main(ns.quick))


if __name__ == "__main__":
    main()
