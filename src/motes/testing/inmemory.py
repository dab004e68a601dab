"""A node agent's children as tasks on an in-memory lattice, for fast tests of the shells.

``TaskLauncher`` is a ``node.workers.Launcher`` whose workers are ``runtime.Worker``
shells and whose store service is a ``store.StoreService``, each run as a task of the
launcher on its own ``MemoryBus`` connection: the same code the processes run, without
processes or sockets. ``store_fails`` gives a store service that never gets ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from ..config import Config
from ..runtime.worker import Worker
from ..store.service import StoreService
from ..wire.memory import MemoryLattice
from ..wire.messages import LogLine

__all__ = ["TaskChild", "TaskLauncher"]

log = logging.getLogger(__name__)


class TaskChild:
    """A service running as a task, seen as a child: ``signal`` stops it."""

    def __init__(self, task: asyncio.Task[None], stop: asyncio.Event, ready: asyncio.Event):
        self.task = task
        self._stop = stop
        self._ready = ready

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


class TaskLauncher:
    def __init__(self, lattice: MemoryLattice, config: Config, *, store_fails: bool = False):
        self.lattice = lattice
        self.config = config
        self.store_fails = store_fails
        self._tasks: set[asyncio.Task[None]] = set()
        self.workers: list[Worker] = []

    def _own(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("a child task ended: %r", task.exception())

    async def start_worker(self, wid: str) -> TaskChild:
        bus = self.lattice.connect(f"worker {wid}")
        stop, ready = asyncio.Event(), asyncio.Event()
        # User code shares this process with every other worker: no per-mote MOTES_CONFIG.
        worker = Worker(bus, self.config, wid, mote_config=False, stopping=stop)
        self.workers.append(worker)

        async def run() -> None:
            try:
                await worker.run(started=ready)
            finally:
                await bus.close()

        return TaskChild(self._own(asyncio.create_task(run())), stop, ready)

    async def start_store(self) -> TaskChild:
        node = self.config.node
        bus = self.lattice.connect(f"store {node.id}")
        stop, ready = asyncio.Event(), asyncio.Event()
        service = StoreService(
            bus,
            node=node.id,
            directory=Path(node.home) / "store",
            cache_dir=Path(node.home) / "cache",
            labels=dict(node.labels),
            timing=self.config.timing,
        )

        async def run() -> None:
            try:
                if self.store_fails:
                    raise OSError("the store's disk is not writable (a test's failure)")
                async with asyncio.TaskGroup() as tg:
                    task = tg.create_task(service.run(started=ready))
                    await stop.wait()
                    task.cancel()
            finally:
                await service.forget()
                await bus.close()

        return TaskChild(self._own(asyncio.create_task(run())), stop, ready)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
