"""A node agent's children: worker processes and the store service, behind a ``Launcher``.

``ProcessLauncher`` starts workers as real processes (``python -m motes.runtime.worker``):
each gets an allow-listed environment, its settings as the path of a 0600 file, and dies
with the agent (PDEATHSIG). The store service runs as a task of the agent's own process
(``TaskChild``), on a connection and credential of its own: a separate interpreter per
node cost ~40 MiB and ~0.3 s of start-up for a service that is idle most of the time, and
a store failure still only ends its task, which the agent restarts (see ``agent``).
Tests of the agent pass a launcher that runs the workers as tasks too, on an in-memory
lattice.

A ``WorkerProc`` is what the agent knows of one worker: it talks to it over the bus
(assign, query, stop) and ships its output, in batches, to the log stream.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import _proc
from ..config import Config, LatticeConfig, write_config
from ..errors import BadMessage, MotesError, NoReply, NoResponders, RetryableError, StartupError
from ..store.service import serve_store
from ..trust.client import NodeCredentials
from ..wire import resources, subjects
from ..wire.bus import Bus
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

__all__ = ["Child", "Launcher", "ProcessLauncher", "TaskChild", "WorkerProc"]

log = logging.getLogger(__name__)
_ids = itertools.count(1)
_MAX_LINE = 4000


class Child(Protocol):
    """A running child of the agent: a process, or (in tests) a task."""

    @property
    def pid(self) -> int: ...
    @property
    def alive(self) -> bool: ...
    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...
    def signal(self, sig: int) -> None: ...

    def output(self) -> AsyncIterator[LogLine]:
        """Its output, line by line, until it exits."""
        ...

    async def ready(self, timeout: float) -> bool:
        """Whether it said it is ready (the store service does) within ``timeout``."""
        ...


class Launcher(Protocol):
    async def start_worker(self, wid: str) -> Child: ...
    async def start_store(self) -> Child: ...


class _Process:
    """A child process whose stdout and stderr are read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self) -> int:
        return await self.proc.wait()

    def signal(self, sig: int) -> None:
        try:
            self.proc.send_signal(sig)
        except ProcessLookupError:
            pass  # it exited meanwhile: what we wanted

    async def output(self) -> AsyncIterator[LogLine]:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        queue: asyncio.Queue[LogLine | None] = asyncio.Queue()

        async def read(stream: asyncio.StreamReader, name: str) -> None:
            try:
                while True:
                    try:
                        raw = await stream.readline()
                    except ValueError:  # a line past the reader's limit: take what is there
                        raw = await stream.read(_MAX_LINE)
                    if not raw:
                        return
                    text = raw.decode(errors="replace").rstrip("\n")[:_MAX_LINE]
                    queue.put_nowait(LogLine(ts=time.time(), stream=name, text=text))
            finally:
                queue.put_nowait(None)

        async with asyncio.TaskGroup() as tg:
            tg.create_task(read(self.proc.stdout, "out"))
            tg.create_task(read(self.proc.stderr, "err"))
            ended = 0
            while ended < 2:
                line = await queue.get()
                if line is None:
                    ended += 1
                else:
                    yield line

    async def ready(self, timeout: float) -> bool:
        assert self.proc.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.proc.stdout.readline()
        except TimeoutError:
            return False
        return line.strip() == b"ready"


class TaskChild:
    """A service running as a task of this process, seen as a child: ``signal`` stops
    it (SIGKILL cancels it); it exits 0 when it returned, 1 when it raised."""

    def __init__(self, task: asyncio.Task[None], stop: asyncio.Event, ready: asyncio.Event):
        self.task = task
        self._stop = stop
        self._ready = ready

    @classmethod
    def start(
        cls, run: Callable[[asyncio.Event, asyncio.Event], Coroutine[Any, Any, None]]
    ) -> TaskChild:
        """Start ``run(stop, ready)`` as a task; whoever starts it keeps the child."""
        stop, ready = asyncio.Event(), asyncio.Event()
        return cls(asyncio.ensure_future(run(stop, ready)), stop, ready)

    @property
    def pid(self) -> int:
        return os.getpid()

    @property
    def alive(self) -> bool:
        return not self.task.done()

    @property
    def returncode(self) -> int | None:
        if not self.task.done():
            return None
        if self.task.cancelled():
            return -signal.SIGKILL
        return 0 if self.task.exception() is None else 1

    async def wait(self) -> int:
        await asyncio.wait({self.task})
        code = self.returncode
        assert code is not None
        return code

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            self.task.cancel()
        else:
            self._stop.set()

    async def output(self) -> AsyncIterator[LogLine]:
        await self.wait()
        return
        yield  # an async generator that yields nothing: output goes to this process's

    async def ready(self, timeout: float) -> bool:
        """Ready within ``timeout``; False at once if it ended first."""
        waiter = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({waiter, self.task}, timeout=timeout, return_when="FIRST_COMPLETED")
        finally:
            waiter.cancel()
        return self._ready.is_set()


Connect = Callable[[LatticeConfig, str], Awaitable[Bus]]
"""Opens a lattice connection with the given settings and connection name."""


class ProcessLauncher:
    """Workers as real child processes, the store service as a task on a connection of
    its own (``connect``). Each worker gets its settings in a 0600 file under the node's
    ``run/`` directory: never a secret in argv or the environment. In an authenticated
    mesh each child also gets a credential of its own (``creds``), scoped to what it does."""

    def __init__(
        self, config: Config, connect: Connect, creds: NodeCredentials | None = None
    ) -> None:
        self.config = config
        self.connect = connect
        self.creds = creds
        self.run_dir = Path(config.node.home) / "run"

    async def _config_file(self, kind: str, lattice: LatticeConfig | None) -> Path:
        config = self.config if lattice is None else self.config.replace(lattice=lattice)
        return write_config(config, self.run_dir / f"{kind}.json")

    async def start_worker(self, wid: str) -> Child:
        lattice = await self.creds.worker(wid) if self.creds is not None else None
        config = await self._config_file(wid, lattice)
        proc = await _proc.spawn(
            _proc.python("motes.runtime.worker", "--config", str(config), "--wid", wid),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return _Process(proc)

    async def start_store(self) -> Child:
        lattice = await self.creds.store() if self.creds is not None else self.config.lattice
        bus = await self.connect(lattice, f"motes-store-{self.config.node.id}")
        return TaskChild.start(
            lambda stop, ready: serve_store(bus, self.config, stop=stop, ready=ready)
        )


def new_worker_id(node: str) -> str:
    """A worker id, unique on its node (one subject token)."""
    return f"w{os.getpid()}-{next(_ids)}"


@dataclass(eq=False)
class WorkerProc:
    """One worker and what the agent knows of it."""

    wid: str
    child: Child
    bus: Bus
    node: str
    log_flush_s: float = 0.2
    spec: InstanceSpec | None = None
    lines: list[LogLine] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def alive(self) -> bool:
        return self.child.alive

    async def _ask(self, msg: bytes, timeout: float) -> bytes:
        reply = await self.bus.request(subjects.worker(self.node, self.wid), msg, timeout=timeout)
        return reply.data

    async def wait_warm(self, timeout: float) -> None:
        """Return once the worker answers on its control subject."""
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            if not self.alive:
                raise StartupError(
                    f"worker {self.wid} exited at start (code {self.child.returncode})"
                )
            try:
                await self._ask(encode(WorkerQuery()), 0.5)
                return
            except (NoResponders, NoReply):
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"worker {self.wid} did not start within {timeout:g} s"
                    ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def assign(
        self, spec: InstanceSpec, bundle_dir: str, timeout: float, **credentials: str
    ) -> None:
        """Load the instance; raises the worker's typed error if loading failed.

        ``credentials``: the instance's own (``WorkerAssign``'s credential fields)."""
        self.spec = spec
        msg = WorkerAssign(spec=spec, bundle_dir=bundle_dir, node=self.node, **credentials)
        try:
            reply = await self._ask(encode(msg), timeout)
        except NoReply:
            raise StartupError(f"instance {spec.iid} did not load within {timeout:g} s") from None
        except NoResponders:
            raise StartupError(f"worker {self.wid} vanished while loading {spec.iid}") from None
        answer = decode_reply(reply)
        if isinstance(answer, Ok | Err):
            raise_for(answer)

    async def query(self, timeout: float) -> InstanceStatus | None:
        try:
            return decode(await self._ask(encode(WorkerQuery()), timeout), InstanceStatus)
        except (RetryableError, BadMessage):
            return None

    async def stop(self, grace: float) -> None:
        """Ask the worker to drain and exit; kill it if it has not within the grace."""
        if self.alive:
            try:
                await self._ask(encode(WorkerStop(grace_s=grace)), 1.0)
            except RetryableError:
                self.child.signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace + 2):
                await self.child.wait()
        except TimeoutError:
            log.warning("worker %s did not stop in time; killing it", self.wid)
            self.child.signal(signal.SIGKILL)
            await self.child.wait()

    # --- output ------------------------------------------------------------------------

    async def pump(self) -> None:
        """Read the worker's output until it exits, shipping it to the log stream."""
        async with asyncio.TaskGroup() as tg:
            flusher = tg.create_task(self._flush_forever())
            async for line in self.child.output():
                self.lines.append(line)
            await self.child.wait()
            flusher.cancel()
        await self.flush()

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.log_flush_s)
            await self.flush()

    async def flush(self) -> None:
        if not self.lines or self.bus.closed:
            return
        lines, self.lines = self.lines, []
        app, mote, iid = (
            (self.spec.app, self.spec.mote, self.spec.iid) if self.spec else ("_node", "worker", "")
        )
        batch = LogBatch(node=self.node, app=app, mote=mote, iid=iid or self.wid, lines=lines)
        try:
            await self.bus.ensure_stream(resources.LOGS)
            await self.bus.publish_durable(subjects.log(app, mote, self.node), encode(batch))
        except MotesError as exc:
            log.debug("could not ship %d log lines of %s: %s", len(lines), self.wid, exc)
