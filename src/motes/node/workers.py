"""Worker processes as a node agent sees them: spawn warm, assign, query, stop, collect output.

Each worker is ``python -m motes.runtime.worker`` in its own process group-less child that
dies with the agent (PDEATHSIG). Its stdout and stderr are read line by line and shipped,
in batches, to the log stream, tagged with the instance they belong to.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import nats.errors

from .._proc import die_with_parent
from ..errors import BadMessage, MotesError, StartupError
from ..wire import subjects
from ..wire.bus import Lattice
from ..wire.codec import decode, decode_reply, encode, raise_for
from ..wire.messages import (
    Err,
    InstanceSpec,
    InstanceStatus,
    LogBatch,
    LogLine,
    Ok,
    WorkerAssign,
    WorkerQuery,
    WorkerStop,
)

__all__ = ["WorkerProc", "spawn_worker"]

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_LOG_FLUSH_S = 0.2
_MAX_LINE = 4000


@dataclass(eq=False)
class WorkerProc:
    """One worker process and what the agent knows of it."""

    wid: str
    proc: asyncio.subprocess.Process
    lattice: Lattice
    node: str
    spec: InstanceSpec | None = None
    lines: list[LogLine] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def wait_warm(self, timeout: float) -> None:
        """Return once the worker answers on its control subject."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            if not self.alive:
                raise StartupError(
                    f"worker {self.wid} exited at start (code {self.proc.returncode})"
                )
            try:
                await self.lattice.nc.request(
                    subjects.worker(self.wid), encode(WorkerQuery()), timeout=0.5
                )
                return
            except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"worker {self.wid} did not start within {timeout:g} s"
                    ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def assign(self, spec: InstanceSpec, bundle_dir: str, timeout: float) -> None:
        """Load the instance; raises the worker's typed error if loading failed."""
        self.spec = spec
        msg = WorkerAssign(spec=spec, bundle_dir=bundle_dir, node=self.node)
        try:
            reply = await self.lattice.nc.request(
                subjects.worker(self.wid), encode(msg), timeout=timeout
            )
        except nats.errors.TimeoutError:
            raise StartupError(f"instance {spec.iid} did not load within {timeout:g} s") from None
        except nats.errors.NoRespondersError:
            raise StartupError(f"worker {self.wid} vanished while loading {spec.iid}") from None
        answer = decode_reply(reply.data)
        if isinstance(answer, Ok | Err):
            raise_for(answer)

    async def query(self, timeout: float) -> InstanceStatus | None:
        try:
            reply = await self.lattice.nc.request(
                subjects.worker(self.wid), encode(WorkerQuery()), timeout=timeout
            )
            return decode(reply.data, InstanceStatus)
        except (TimeoutError, nats.errors.Error, BadMessage):
            return None

    async def stop(self, grace: float) -> None:
        """Ask the worker to drain and exit; kill it if it has not within the grace."""
        if self.alive:
            try:
                await self.lattice.nc.request(
                    subjects.worker(self.wid), encode(WorkerStop(grace_s=grace)), timeout=1.0
                )
            except nats.errors.Error:
                self._signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace + 2):
                await self.proc.wait()
        except TimeoutError:
            log.warning("worker %s did not stop in time; killing it", self.wid)
            self._signal(signal.SIGKILL)
            await self.proc.wait()

    def _signal(self, sig: int) -> None:
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass  # it exited meanwhile: what we wanted

    # --- output ------------------------------------------------------------------------

    async def pump(self) -> None:
        """Read the worker's output until it exits, shipping it to the log stream."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._read(self.proc.stdout, "out"))
            tg.create_task(self._read(self.proc.stderr, "err"))
            flusher = tg.create_task(self._flush_forever())
            await self.proc.wait()
            flusher.cancel()
        await self.flush()

    async def _read(self, stream: asyncio.StreamReader, name: str) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line past the reader's limit: take what is there
                raw = await stream.read(_MAX_LINE)
            if not raw:
                return
            text = raw.decode(errors="replace").rstrip("\n")[:_MAX_LINE]
            self.lines.append(LogLine(ts=time.time(), stream=name, text=text))

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(_LOG_FLUSH_S)
            await self.flush()

    async def flush(self) -> None:
        if not self.lines or self.lattice.nc.is_closed:
            return
        lines, self.lines = self.lines, []
        app, mote, iid = (
            (self.spec.app, self.spec.mote, self.spec.iid) if self.spec else ("_node", "worker", "")
        )
        batch = LogBatch(node=self.node, app=app, mote=mote, iid=iid or self.wid, lines=lines)
        try:
            await self.lattice.js.publish(subjects.log(app, mote, self.node), encode(batch))
        except (nats.errors.Error, MotesError) as exc:
            log.debug("could not ship %d log lines of %s: %s", len(lines), self.wid, exc)


async def spawn_worker(lattice: Lattice, url: str, node: str, home: str) -> WorkerProc:
    """Start a worker process (not yet warm: call ``wait_warm``).

    A mote inside it reaches the mesh with a plain ``motes.connect()`` (``MOTES_URL``),
    and reads stored data through its node (``MOTES_NODE_HOME``): the node's cache, and
    the shares the node holds straight from its disk.
    """
    wid = f"{node}-{os.getpid()}-{next(_ids)}"
    env = dict(os.environ, PYTHONUNBUFFERED="1", MOTES_URL=url, MOTES_NODE_HOME=home)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "motes.runtime.worker",
        "--url",
        url,
        "--wid",
        wid,
        "--node",
        node,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent,
        env=env,
    )
    return WorkerProc(wid=wid, proc=proc, lattice=lattice, node=node)
