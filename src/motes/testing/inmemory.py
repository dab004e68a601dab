"""A node agent's children as tasks on an in-memory lattice, for fast tests of the shells.

``TaskLauncher`` is a ``node.workers.Launcher`` whose workers are ``runtime.Worker``
shells and whose store service is the one nodes run (``store.service.serve_store``), each
a task (``node.workers.TaskChild``) on its own ``MemoryBus`` connection: the same code the
processes run, without processes or sockets. ``store_fails`` gives a store service that
never gets ready.
"""

from __future__ import annotations

import asyncio
import logging

from ..config import Config
from ..node.workers import TaskChild
from ..runtime.worker import Worker
from ..store.service import serve_store
from ..wire.memory import MemoryLattice

__all__ = ["TaskLauncher"]

log = logging.getLogger(__name__)


class TaskLauncher:
    def __init__(self, lattice: MemoryLattice, config: Config, *, store_fails: bool = False):
        self.lattice = lattice
        self.config = config
        self.store_fails = store_fails
        self._tasks: set[asyncio.Task[None]] = set()
        self.workers: list[Worker] = []

    def _own(self, child: TaskChild) -> TaskChild:
        self._tasks.add(child.task)
        child.task.add_done_callback(self._ended)
        return child

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("a child task ended: %r", task.exception())

    async def start_worker(self, wid: str) -> TaskChild:
        bus = self.lattice.connect(f"worker {wid}")

        async def run(stop: asyncio.Event, ready: asyncio.Event) -> None:
            # User code shares this process with every other worker: no per-mote MOTES_CONFIG.
            worker = Worker(bus, self.config, wid, mote_config=False, stopping=stop)
            self.workers.append(worker)
            try:
                await worker.run(started=ready)
            finally:
                await bus.close()

        return self._own(TaskChild.start(run))

    async def start_store(self) -> TaskChild:
        bus = self.lattice.connect(f"store {self.config.node.id}")

        async def run(stop: asyncio.Event, ready: asyncio.Event) -> None:
            if self.store_fails:
                await bus.close()
                raise OSError("the store's disk is not writable (a test's failure)")
            await serve_store(bus, self.config, stop=stop, ready=ready)

        return self._own(TaskChild.start(run))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
