"""The rest of the picture: durable queues and flows, the store, and the blocks.

- flows, stored files and each node's holdings are KV buckets, followed by watches;
- a stored file's share health is asked of a store service (``mesh.store.check``,
  without repair) for the newest ``HEALTH_FILES`` files, again when nodes come or go or
  a file is added, and for any other file when a page asks;
- queue depths live in the durable-call stream, which keeps no event for an ack: they
  are read from the stream once a second while some page shows them (and on demand);
- blocks change through their own KV watch and the recomputer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from ..blocks import Recomputer
from ..client import Mesh
from ..client.durable import QueueStat
from ..errors import BadMessage, MotesError
from ..wire import resources
from ..wire.bus import KV, Entry
from ..wire.codec import decode
from ..wire.messages import FlowDef
from ..wire.store import FileRecord, Holdings, RepairReport
from .topics import Topics

__all__ = ["HEALTH_FILES", "Health", "Sources"]

log = logging.getLogger(__name__)

HEALTH_FILES = 100
"""Share health is kept current for this many of the newest files."""


@dataclass(frozen=True, slots=True)
class Health:
    report: RepairReport | None
    checked_at: float
    error: str = ""


class Sources:
    def __init__(self, mesh: Mesh, topics: Topics, recomputer: Recomputer | None) -> None:
        self.mesh = mesh
        self.topics = topics
        self.recomputer = recomputer
        self.files: dict[str, FileRecord] = {}
        self.holdings: dict[str, Holdings] = {}
        self.flows: dict[str, FlowDef] = {}
        self.health: dict[str, Health] = {}
        self.checking: set[str] = set()
        self.queues: list[QueueStat] = []
        self.queues_at = 0.0
        self._health_due = asyncio.Event()
        self._queue_lock = asyncio.Lock()

    async def run(self) -> None:
        bus = self.mesh.bus
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._follow(await bus.kv(resources.FILES), self._on_file))
            tg.create_task(self._follow(await bus.kv(resources.HOLDINGS), self._on_holdings))
            tg.create_task(self._follow(await bus.kv(resources.FLOWS), self._on_flow))
            tg.create_task(self._sample_queues())
            tg.create_task(self._check_health())
            if self.recomputer is not None:
                tg.create_task(self.recomputer.run())
                tg.create_task(self._follow_cells(self.recomputer))
            tg.create_task(self._follow_blocks())

    def nodes_changed(self) -> None:
        """Nodes came or went: share health may have changed."""
        self._health_due.set()

    # --- KV-backed parts -------------------------------------------------------------

    async def _follow(self, kv: KV, on: Any) -> None:
        async with await kv.watch() as watch:
            async for entry in watch:
                try:
                    on(entry)
                except BadMessage as exc:
                    log.debug("ignoring %s/%s: %s", kv.name, entry.key, exc)

    def _on_file(self, entry: Entry) -> None:
        if entry.value is None:
            self.files.pop(entry.key, None)
            self.health.pop(entry.key, None)
        else:
            self.files[entry.key] = decode(entry.value, FileRecord)
            self._health_due.set()
        self.topics.mark("store")

    def _on_holdings(self, entry: Entry) -> None:
        old = self.holdings.get(entry.key)
        if entry.value is None:
            self.holdings.pop(entry.key, None)
            self._health_due.set()
        else:
            new = decode(entry.value, Holdings)
            self.holdings[entry.key] = new
            if old is not None and new == old:
                return  # re-reported unchanged (every second): nothing to show
            if old is None or old.files.keys() != new.files.keys():
                self._health_due.set()
        self.topics.mark("store")

    def _on_flow(self, entry: Entry) -> None:
        if entry.value is None:
            self.flows.pop(entry.key, None)
        else:
            self.flows[entry.key] = decode(entry.value, FlowDef)
        self.topics.mark("queues")

    async def _follow_blocks(self) -> None:
        async for _ in self.mesh.blocks.watch():
            self.topics.mark("blocks")

    async def _follow_cells(self, recomputer: Recomputer) -> None:
        while True:
            await recomputer.changed.wait()
            recomputer.changed.clear()
            self.topics.mark("blocks")
            await asyncio.sleep(0.05)

    # --- queues ------------------------------------------------------------------------

    async def _sample_queues(self) -> None:
        while True:
            if self.topics.watched("queues"):
                await self.refresh_queues()
            await asyncio.sleep(1.0)

    async def refresh_queues(self, max_age: float = 0.5) -> list[QueueStat]:
        async with self._queue_lock:
            if time.monotonic() - self.queues_at >= max_age:
                try:
                    stats = await self.mesh.calls.queue()
                except MotesError as exc:
                    log.debug("queue: %s", exc)
                    return self.queues
                self.queues_at = time.monotonic()
                if stats != self.queues:
                    self.queues = stats
                    self.topics.mark("queues")
        return self.queues

    # --- share health ------------------------------------------------------------------

    async def _check_health(self) -> None:
        while True:
            await self._health_due.wait()
            await asyncio.sleep(0.3)
            self._health_due.clear()
            newest = sorted(self.files.items(), key=lambda kv: -kv[1].stored_at)[:HEALTH_FILES]
            for si, record in newest:
                await self.check(si, record)
            await asyncio.sleep(1.0)  # at most one round of checks a second

    async def check(self, si: str, record: FileRecord | None = None) -> Health:
        """Ask a store service how many shares of this file the mesh holds now."""
        record = record or self.files.get(si)
        if record is None:
            return Health(None, time.time(), "no such file")
        self.checking.add(si)
        try:
            async with asyncio.timeout(30):
                report = await self.mesh.store.check(record.verify, repair=False)
            health = Health(report, time.time())
        except (MotesError, TimeoutError) as exc:
            health = Health(None, time.time(), str(exc) or "timed out")
        finally:
            self.checking.discard(si)
        before = self.health.get(si)
        self.health[si] = health
        if before is None or before.report != health.report or before.error != health.error:
            self.topics.mark("store")
        return health
