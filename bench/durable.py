"""durable_throughput: durable calls/s against raw JetStream publish-with-ack on one server.

Motes: ``client.map("dur.echo", range(calls), durable=True)`` on a 3-node local mesh (the
``echo`` mote at ``min=2``; a sync one, and an async one in its own row): every call is
published to the ``MOTES_CALLS`` work queue, run by an instance, its result stored in the
results bucket and the message acked, and the client sees the result through its watch.
The floor, interleaved with it: a plain nats-py client publishing the same number of
messages of about the same size to a stream on the *same* nats-server, so the same fsync
setting (``sync_interval: always``), with every publish sent before any ack is awaited, as
``map`` does (both go through nats-py's ``publish_async``: at most its 4000 pending
acks in flight).

Run alone: ``python -m bench.durable [--calls N] [--reps R]`` (also ``--only durable`` in
the runner).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import nats.js.errors

from motes.client import Mesh
from motes.node.localmesh import LocalMesh
from motes.wire.codec import encode
from motes.wire.messages import DurableCall

from .runner import Result, Session, compare
from .stats import median

__all__ = ["IN_FLIGHT", "durable_pair", "measure", "run"]

METRIC = "durable"
CALLS = 1000
IN_FLIGHT = 4000
"""nats-py's ``publish_async_max_pending``: both sides send every message without waiting,
so this bounds the acks in flight for both."""

_ECHO = """
import motes

app = motes.App("dur")


@app.mote(min=2, max=4)
def echo(x: int) -> int:
    return x


@app.mote(min=2, max=4)
async def aecho(x: int) -> int:
    return x
"""


async def _raw_rate(client: Mesh, calls: int) -> float:
    """Raw JetStream publish-with-ack/s: all ``calls`` sent, then every ack awaited."""
    lattice = client.config.lattice
    auth = {"user_credentials": lattice.credentials, "inbox_prefix": lattice.inbox_prefix}
    # The mesh owner's credential, as the Motes client presents.
    nc = await nats.connect(
        list(lattice.servers), name="bench raw jetstream", **(auth if lattice.credentials else {})
    )
    js = nc.jetstream(publish_async_max_pending=IN_FLIGHT)
    stream = "BENCH_RAW"
    try:
        await js.delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    await js.add_stream(name=stream, subjects=["bench.raw"])
    payload = encode(DurableCall(f"{uuid.uuid4().hex}.0", [0], {}, 30_000))  # one call's bytes
    try:
        started = time.perf_counter()
        acks = [await js.publish_async("bench.raw", payload) for _ in range(calls)]
        await asyncio.gather(*acks)
        return calls / (time.perf_counter() - started)
    finally:
        await js.delete_stream(stream)
        await nc.close()


async def _motes_rate(client: Mesh, mote: str, calls: int) -> float:
    started = time.perf_counter()
    results = [r async for r in client.map(mote, range(calls), durable=True)]
    rate = calls / (time.perf_counter() - started)
    assert results == list(range(calls)), "durable map returned wrong results"
    return rate


async def durable_pair(client: Mesh, mote: str, calls: int) -> tuple[float, float]:
    """(durable calls/s through Motes, raw JetStream publish-with-ack/s), back to back."""
    return await _motes_rate(client, mote, calls), await _raw_rate(client, calls)


# --- where the CPU goes (``--cpu``) -------------------------------------------------------

_ROLES = (("nats-server", "nats-server"), ("motes.runtime.worker", "workers"))


def cpu_by_role(home: Path) -> dict[str, float]:
    """CPU seconds so far of this process ("client") and of the mesh's processes (those
    whose command line names ``home``), by role: nats-server, workers, agents (the rest)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"client": sum(os.times()[:2]), "nats-server": 0.0, "workers": 0.0, "agents": 0.0}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if str(home) not in cmd:
            continue
        role = next((r for key, r in _ROLES if key in cmd), "agents")
        out[role] += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


async def cpu_profile(calls: int) -> dict[str, dict[str, float]]:
    """CPU microseconds per call, by role, for each mote's durable map and for raw."""
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="motes-bench-dur-") as tmp:
        folder = Path(tmp)
        (folder / "dur.py").write_text(_ECHO)
        async with LocalMesh(folder / "mesh", nodes=3, write_mesh_file=False) as mesh:
            async with mesh.client() as client:
                await client.deploy(folder / "dur.py")
                await durable_pair(client, "dur.echo", 200)  # warm-up
                await durable_pair(client, "dur.aecho", 200)
                sides: dict[str, Callable[[], Awaitable[float]]] = {
                    "dur.echo": lambda: _motes_rate(client, "dur.echo", calls),
                    "dur.aecho": lambda: _motes_rate(client, "dur.aecho", calls),
                    "raw": lambda: _raw_rate(client, calls),
                }
                for name, side in sides.items():
                    before = cpu_by_role(mesh.home)
                    await side()
                    after = cpu_by_role(mesh.home)
                    out[name] = {k: (after[k] - before[k]) / calls * 1e6 for k in after}
    return out


async def measure(reps: int, calls: int) -> dict[str, tuple[float, float]]:
    """Median (motes, raw) per mote over ``reps`` interleaved pairs, after a warm-up."""
    pairs: dict[str, list[tuple[float, float]]] = {"dur.echo": [], "dur.aecho": []}
    with tempfile.TemporaryDirectory(prefix="motes-bench-dur-") as tmp:
        folder = Path(tmp)
        (folder / "dur.py").write_text(_ECHO)
        async with LocalMesh(folder / "mesh", nodes=3, write_mesh_file=False) as mesh:
            async with mesh.client() as client:
                await client.deploy(folder / "dur.py")
                for mote in pairs:
                    await durable_pair(client, mote, min(calls, 200))  # warm-up
                for _ in range(reps):
                    for mote, got in pairs.items():
                        got.append(await durable_pair(client, mote, calls))
    return {
        mote: (median([m for m, _ in got]), median([r for _, r in got]))
        for mote, got in pairs.items()
    }


def _note(calls: int) -> str:
    return (
        f"both sides: sync_interval always (one nats-server), {calls} calls sent before"
        f" any ack is awaited (at most {IN_FLIGHT} in flight)"
    )


async def run(s: Session) -> list[Result]:
    reps = max(s.sizes.reps, 3)
    got = await measure(reps, CALLS)
    s.details[METRIC] = {"calls": CALLS, "in_flight": IN_FLIGHT, "sync_interval": "always"}
    rows: list[Result] = []
    for mote, name in (("dur.echo", "durable_throughput"), ("dur.aecho", "durable_async")):
        mine, raw = got[mote]
        for row in compare(name, "calls/s", mine, {"raw JetStream": raw}, reps):
            row.note = _note(CALLS)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="CPU per call by process role")
    ns = parser.parse_args()
    if ns.cpu:
        for side, roles in asyncio.run(cpu_profile(ns.calls)).items():
            total = sum(roles.values())
            parts = ", ".join(f"{k} {v:.0f}" for k, v in roles.items())
            print(f"{side}: {total:.0f} us CPU per call ({parts})")
        return
    for mote, (mine, raw) in asyncio.run(measure(ns.reps, ns.calls)).items():
        print(f"{mote}: {mine:.0f} calls/s vs raw JetStream {raw:.0f}/s: {mine / raw:.2f}")
    print(_note(ns.calls))


if __name__ == "__main__":
    main()
