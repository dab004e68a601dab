"""The systems under test. Motes is one contender; each peer is another.

A contender answers the runner's questions (``call_rtt``, ``call_throughput``,
``map_throughput``), each one repetition at a time, so the runner can interleave
contenders (A B A B ...). A contender that cannot do something raises
``NotImplementedError``; the runner then leaves that peer out of the metric.

In-process contenders only supply ``once()`` (one call, awaited) and inherit the timing
loops below, so Motes and raw nats-py are timed by exactly the same code. Out-of-process
peers (Ray, Dask: their own virtualenv under ``bench/.peers/``, run in a network namespace
with only loopback, see ``bench/netns.py``) override the three methods to ask a driver
process in that environment (``bench/drivers/``) to run the same loops there and send
back the numbers (``PeerContender``).

``startup`` (for the ``startup`` metric) starts a whole system from nothing, waits until
it is ready, lets it idle and measures one process's RSS: Motes through its CLI
(``MotesUpContender``), a peer through a one-shot driver in a fresh namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from motes._proc import die_with_parent
from motes.client import Mesh
from motes.config import LatticeConfig

from .netns import NamespacedDriver

__all__ = [
    "Contender",
    "MotesContender",
    "MotesUpContender",
    "PeerContender",
    "PeerDriver",
    "RawNatsContender",
]

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

    async def map_heavy(self, kind: str, n: int, ms: int) -> float:
        """Seconds for one map over ``n`` items of ``ms`` each (``nap``: asleep, ``burn``:
        on the CPU), results checked."""
        raise NotImplementedError

    async def startup(self, idle_s: float) -> tuple[float, float]:
        """(seconds from nothing to ready, RSS in MiB of one process after ``idle_s`` idle)."""
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
        return n / await self._map(self.mote, n)

    async def map_heavy(self, kind: str, n: int, ms: int) -> float:
        return await self._map(f"{self.mote}.{kind}", n)  # ms: fixed by bench/apps/heavy.py

    async def _map(self, mote: str, n: int) -> float:
        """Seconds for one map over ``range(n)``, every result checked, in order."""
        count = 0
        wrong = 0
        t0 = time.perf_counter_ns()
        async for result in self.client.map(mote, range(n)):
            wrong += result != count
            count += 1
        dt = (time.perf_counter_ns() - t0) / 1e9
        if count != n or wrong:
            raise RuntimeError(f"map over {mote}: {count} results of {n}, {wrong} wrong")
        return dt


class RawNatsContender(Contender):
    """The floor: nats-py ``request`` to a responder process that echoes the payload.

    On an authenticated mesh both present the mesh owner's credential (``lattice``), as
    the Motes client does, so the floor pays for authentication too (once per
    connection)."""

    name = "raw nats-py"
    subject = "bench.raw.echo"

    def __init__(self, lattice: LatticeConfig) -> None:
        self.url = ",".join(lattice.servers)
        self.credentials = lattice.credentials
        self.inbox_prefix = lattice.inbox_prefix
        self.nc: Client | None = None
        self.proc: asyncio.subprocess.Process | None = None

    def _auth(self) -> dict[str, Any]:
        if not self.credentials:
            return {}
        return {"user_credentials": self.credentials, "inbox_prefix": self.inbox_prefix}

    async def start(self) -> None:
        path = os.environ.get("PYTHONPATH", "")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.responder",
            self.url,
            self.subject,
            self.credentials,  # a path (0600), not the secret itself
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
        self.nc = await nats.connect(self.url, name="bench raw client", **self._auth())
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


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS), as the peers' drivers measure it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def node_rss_mb(agent: int, node_home: Path) -> float:
    """An idle node's RSS in MiB: its agent's plus its store service's, wherever that
    runs (a process of its own has the node's home in its ``--config``)."""
    stores = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes() if entry.name.isdigit() else b""
        except OSError:
            continue
        if b"motes.store.service" in cmd and str(node_home).encode() + b"/" in cmd:
            stores.append(int(entry.name))
    return rss_mb(agent) + sum(rss_mb(pid) for pid in stores)


class MotesUpContender(Contender):
    """``motes up --nodes 3 --detach`` in a fresh home, timed until the CLI returns.

    The CLI returns once every node is ready and one leads (it then lists the nodes);
    ``idle_s`` later the first node is measured: its agent (``mesh.json``
    ``nodes[0].pid``, which runs the node's store service as a task) plus any store
    service process of that node (older versions ran one), not its warm worker. Then
    ``motes down`` stops the mesh.
    """

    nodes = 3

    name = "motes"

    def __init__(self) -> None:
        self.cli = Path(sys.executable).parent / "motes"

    async def _cli(self, home: str, *args: str) -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            str(self.cli),
            "--home",
            home,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, err

    async def startup(self, idle_s: float) -> tuple[float, float]:
        home = tempfile.mkdtemp(prefix="motes-bench-up-")
        info: dict[str, Any] = {}
        try:
            t0 = time.perf_counter()
            code, err = await self._cli(home, "up", "--nodes", str(self.nodes), "--detach")
            elapsed = time.perf_counter() - t0
            if code != 0:
                raise RuntimeError(f"motes up failed ({code}): {err.decode(errors='replace')}")
            info = json.loads((Path(home) / "mesh.json").read_text())
            await asyncio.sleep(idle_s)
            rss = node_rss_mb(int(info["nodes"][0]["pid"]), Path(home) / "nodes" / "node-1")
        finally:
            code, err = await self._cli(home, "down")
            pid = int(info.get("supervisor_pid") or 0)
            if code != 0 and pid:  # ours, started just above
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(home, ignore_errors=True)
        return elapsed, rss


class PeerDriver:
    """A long-running driver of one peer (``bench/drivers/<peer>_driver.py serve``).

    Started once per run; several contenders may share it (Ray: actor calls and tasks).
    """

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.tmp = tempfile.mkdtemp(prefix=f"mb-{peer}-")  # short: Ray's socket paths
        self.driver = NamespacedDriver(peer, f"{peer}_driver.py", ["serve", self.tmp], "serve.log")
        self.info: dict[str, Any] = {}

    async def start(self) -> None:
        self.info = await self.driver.start()

    async def stop(self) -> list[str]:
        try:
            return await self.driver.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def ask(self, op: str, **args: Any) -> Any:
        return await self.driver.ask({"op": op, **args})


class PeerContender(Contender):
    """A peer measured by its driver: calls through ``driver`` in ``mode``; ``startup``
    through a one-shot driver in a fresh namespace (when ``startup_peer`` is set)."""

    def __init__(
        self,
        name: str,
        driver: PeerDriver | None,
        mode: str = "",
        *,
        startup_peer: str | None = None,
    ) -> None:
        self.name = name
        self.driver = driver
        self.mode = mode
        self.startup_peer = startup_peer
        self.import_s: list[float] = []  # the peer's import time, outside its startup_s

    def _driver(self) -> PeerDriver:
        if self.driver is None:
            raise NotImplementedError
        return self.driver

    async def call_rtt(self, n: int) -> list[int]:
        ns: list[int] = await self._driver().ask("call_rtt", mode=self.mode, n=n)
        return ns

    async def call_throughput(self, n: int, window: int) -> float:
        # The peer's own idiom: all n submitted, then one wait for them all (no window).
        return float(await self._driver().ask("call_throughput", mode=self.mode, n=n))

    async def map_throughput(self, n: int) -> float:
        return float(await self._driver().ask("map_throughput", n=n))

    async def map_heavy(self, kind: str, n: int, ms: int) -> float:
        return float(await self._driver().ask("map_heavy", kind=kind, n=n, ms=ms))

    async def startup(self, idle_s: float) -> tuple[float, float]:
        peer = self.startup_peer
        if peer is None:
            raise NotImplementedError
        tmp = tempfile.mkdtemp(prefix=f"mb-{peer}-")
        driver = NamespacedDriver(
            peer, f"{peer}_driver.py", ["startup", tmp, str(idle_s)], "startup.log"
        )
        try:
            await driver.start()
            out: dict[str, float] = await driver.result(timeout=120 + idle_s)
        finally:
            await driver.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        self.import_s.append(out["import_s"])
        return out["startup_s"], out["rss_mb"]
