"""The systems under test. Motes is one contender; each peer is another.

A contender answers the runner's questions (``call_rtt``, ``call_throughput``,
``map_throughput``), each one repetition at a time, so the runner can interleave
contenders (A B A B ...). A contender that cannot do something raises
``NotImplementedError``; the runner then leaves that peer out of the metric.

In-process contenders only supply ``once()`` (one call, awaited) and inherit the timing
loops below, so Motes and raw nats-py are timed by exactly the same code. Out-of-process
peers (Ray, Dask: their own virtualenv under ``bench/.peers/``, run in a network namespace
with only loopback) override the three methods to ask a driver process in that
environment to run the same loops there and send back the numbers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import nats
from nats.aio.client import Client

from motes._proc import die_with_parent
from motes.client import Mesh

__all__ = ["Contender", "MotesContender", "RawNatsContender"]

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = b"x"


class Contender:
    """Base class; see the module docstring."""

    name: str = "?"

    async def start(self) -> None:
        """Get ready to measure (connect, start processes, warm up)."""

    async def stop(self) -> None:
        """Release everything ``start`` took; must be safe after a failed start."""

    async def once(self) -> None:
        """One call, awaited (in-process contenders)."""
        raise NotImplementedError

    async def call_rtt(self, n: int) -> list[int]:
        """Round-trip times in ns of ``n`` calls made one after another."""
        once = self.once
        clock = time.perf_counter_ns
        out = [0] * n
        for i in range(n):
            t0 = clock()
            await once()
            out[i] = clock() - t0
        return out

    async def call_throughput(self, n: int, window: int) -> float:
        """Calls/s of ``n`` calls with ``window`` always in flight (closed loop)."""
        once = self.once
        left = n

        async def lane() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await once()

        t0 = time.perf_counter_ns()
        await asyncio.gather(*(lane() for _ in range(min(window, n))))
        return n / ((time.perf_counter_ns() - t0) / 1e9)

    async def map_throughput(self, n: int) -> float:
        """Items/s of one map over ``n`` small items (ints), results checked."""
        raise NotImplementedError


class MotesContender(Contender):
    """Calls to one mote of the bench app through a connected ``Mesh`` client."""

    def __init__(self, client: Mesh, mote: str, name: str) -> None:
        self.client = client
        self.mote = mote
        self.name = name

    async def once(self) -> None:
        await self.client.call(self.mote, PAYLOAD)

    async def map_throughput(self, n: int) -> float:
        count = 0
        wrong = 0
        t0 = time.perf_counter_ns()
        async for result in self.client.map(self.mote, range(n)):
            wrong += result != count
            count += 1
        dt = (time.perf_counter_ns() - t0) / 1e9
        if count != n or wrong:
            raise RuntimeError(f"map over {self.mote}: {count} results of {n}, {wrong} wrong")
        return n / dt


class RawNatsContender(Contender):
    """The floor: nats-py ``request`` to a responder process that echoes the payload."""

    name = "raw nats-py"
    subject = "bench.raw.echo"

    def __init__(self, url: str) -> None:
        self.url = url
        self.nc: Client | None = None
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        path = os.environ.get("PYTHONPATH", "")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.responder",
            self.url,
            self.subject,
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
            start_new_session=True,  # stopped by us, in order, not by a terminal's Ctrl-C
            env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))},
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(15):
            line = await self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"bench.responder did not start (said {line!r})")
        self.nc = await nats.connect(self.url, name="bench raw client")
        reply = await self.nc.request(self.subject, PAYLOAD, timeout=5)
        if reply.data != PAYLOAD:
            raise RuntimeError(f"bench.responder answered {reply.data!r}")

    async def stop(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def once(self) -> None:
        assert self.nc is not None
        await self.nc.request(self.subject, PAYLOAD, timeout=30)
