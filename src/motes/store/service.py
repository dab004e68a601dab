"""The store service: one per node with disk, a task of the node agent's process.

It keeps shares (``shares.DiskShares``) and serves them over NATS, answers "which shares
do you hold", reports the node's holdings (shares and cache, per file) to KV for the
scheduler's data-locality rule, and answers check/repair requests (a queue group: one
service takes each). One service at a time, the holder of the ``store-repair`` lease,
watches for lost store nodes and repairs every registered file when one goes.

It runs on a lattice connection (and credential) of its own, beside the agent rather
than in a process of its own: a second interpreter per node cost ~40 MiB and ~0.3 s of
start-up. Disk work runs in threads, never on the event loop (a share is checked on it:
one hash of at most a chunk's share, well under a millisecond), so transfers do not hold
up the agent's heartbeats; a failure ends only the service's task, which the agent
restarts while the node's workers keep serving.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from ..config import Config, Timing
from ..errors import BadMessage, MotesError, RetryableError
from ..wire import resources, subjects
from ..wire.bus import Bus, Message, Subscription
from ..wire.codec import decode, encode, encode_error
from ..wire.lease import Lease, LeaseLost
from ..wire.messages import Ok
from ..wire.store import (
    FileRecord,
    Holdings,
    Locate,
    Located,
    RepairRequest,
    ShareGet,
    SharePiece,
    SharePut,
    SharePutMany,
    SharesPut,
    Tag,
)
from ._net import StoreNet
from .cache import BlobCache
from .caps import FileVerifyCap, parse_cap
from .format import check_share
from .repair import check_file
from .shares import DiskShares, parse_header

__all__ = ["StoreService", "serve_store"]

log = logging.getLogger(__name__)
REPAIR_LEASE_KEY = "store-repair"
_HOLDINGS_REFRESH_S = resources.HOLDINGS_TTL_S / 4
"""Even unchanged, the record is re-put this often, so it lapses only when we are gone."""


class StoreService:
    def __init__(
        self,
        bus: Bus,
        *,
        node: str,
        directory: Path,
        cache_dir: Path,
        labels: dict[str, str],
        timing: Timing,
    ) -> None:
        self.bus = bus
        self.node = node
        self.shares = DiskShares(directory)
        self.cache = BlobCache(cache_dir)
        self.labels = labels
        self.timing = timing
        self._writes = asyncio.Semaphore(8)
        self._changed = asyncio.Event()
        self._changed.set()
        self.repairing = False
        """Whether this service holds the repair lease now."""
        self._tg: asyncio.TaskGroup | None = None
        self._reported_at = 0.0

    async def run(self, *, started: asyncio.Event | None = None) -> None:
        """Serve until cancelled; ``started`` is set once every subscription is live."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            served: list[tuple[Subscription, Callable[[Message], Awaitable[None]]]] = [
                (await self.bus.subscribe(subjects.store(self.node, "put")), self._on_put),
                (await self.bus.subscribe(subjects.store(self.node, "get")), self._on_get),
                (await self.bus.subscribe(subjects.store(self.node, "tag")), self._on_tag),
                (await self.bus.subscribe(subjects.STORE_LOCATE), self._on_locate),
                (
                    await self.bus.subscribe(
                        subjects.STORE_REPAIR, queue=subjects.STORE_REPAIR_QUEUE
                    ),
                    self._on_repair,
                ),
            ]
            for sub, handle in served:
                tg.create_task(_serve(sub, handle))
            await self.bus.flush()
            await self._report_holdings()
            tg.create_task(self._holdings_loop())
            tg.create_task(self._repair_loop())  # never raises: each round is guarded
            log.info("store on %s ready (%s)", self.node, self.shares.dir)
            if started is not None:
                started.set()

    async def forget(self) -> None:
        """Withdraw this node's holdings record (a clean stop: no one waits for us)."""
        try:
            kv = await self.bus.kv(resources.HOLDINGS)
            await kv.delete(self.node)
        except RetryableError:
            pass

    # --- serving shares ----------------------------------------------------------------

    async def _reply(self, msg: Message, data: bytes) -> None:
        if msg.reply:
            await self.bus.publish(msg.reply, data)

    async def _on_put(self, msg: Message) -> None:
        assert self._tg is not None
        await self._writes.acquire()  # at most 8 writes at once; the rest wait in NATS
        self._tg.create_task(_logged(self._put(msg), "storing a share"))

    async def _put(self, msg: Message) -> None:
        try:
            try:
                answer = await asyncio.to_thread(self._store, msg.data)
            except BadMessage as exc:
                await self._reply(msg, encode_error(exc))
                return
            except OSError as exc:
                await self._reply(msg, encode_error(MotesError(f"store on {self.node}: {exc}")))
                return
            self._changed.set()
            await self._reply(msg, answer)
        finally:
            self._writes.release()

    def _store(self, data: bytes) -> bytes:
        """Decode and keep one share (or piece of one), or a batch of whole shares; the
        encoded answer. Runs in a thread: decoding copies, hashing and fsync block."""
        put = decode(data, SharePut | SharePutMany)  # type: ignore[arg-type]
        if isinstance(put, SharePutMany):
            return encode(SharesPut(self.shares.put_many(put.shares)))
        self.shares.put(put.root, put.num, put.header, put.offset, put.total, put.data)
        return encode(Ok(None))

    async def _on_get(self, msg: Message) -> None:
        try:
            answer, rotted = await asyncio.to_thread(self._serve_share, msg.data)
        except KeyError:
            await self._reply(msg, encode_error(BadMessage(f"no such share on {self.node}")))
            return
        except BadMessage as exc:
            await self._reply(msg, encode_error(exc))
            return
        if rotted:
            self._changed.set()
        await self._reply(msg, answer)

    def _serve_share(self, data: bytes) -> tuple[bytes, bool]:
        """The encoded answer (a ``SharePiece`` or why not), and whether the share had
        rotted on disk (and is set aside now). Runs in a thread: reads and hashes."""
        get = decode(data, ShareGet)
        header, total, piece = self.shares.read(get.root, get.num, get.offset, get.length)
        if get.offset == 0 and len(piece) == total:
            # Whole-share reads are checked here too: a share rotted on disk is set
            # aside (and repair regenerates it) rather than served again and again.
            head = parse_header(get.root, header)
            if not check_share(head, get.num, piece):
                self.shares.quarantine(get.root, get.num)
                why = BadMessage(f"share {get.num} on {self.node} is corrupt; set aside")
                return encode_error(why), True
        return encode(SharePiece(header, total, piece)), False

    async def _on_tag(self, msg: Message) -> None:
        try:
            tag = decode(msg.data, Tag)
            await asyncio.to_thread(self.shares.tag, tag.sis, tag.roots)
        except BadMessage as exc:
            await self._reply(msg, encode_error(exc))
            return
        self._changed.set()
        await self._reply(msg, encode(Ok(None)))

    async def _on_locate(self, msg: Message) -> None:
        try:
            locate = decode(msg.data, Locate)
        except BadMessage:
            return
        held = await asyncio.to_thread(self.shares.held, locate.roots)
        await self._reply(msg, encode(Located(self.node, held, self.labels)))

    # --- holdings ------------------------------------------------------------------------

    async def _holdings_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timing.holdings_s)
            try:
                cache_changed = self.cache.blobs.stat().st_mtime > self._reported_at
                stale = time.time() - self._reported_at > _HOLDINGS_REFRESH_S
                if self._changed.is_set() or cache_changed or stale:
                    await self._report_holdings()
            except (OSError, MotesError) as exc:
                log.warning("store: could not report holdings: %s", exc)
                self._changed.set()

    async def _report_holdings(self) -> None:
        self._changed.clear()
        self._reported_at = time.time()
        (files, share_bytes), (cached, cache_bytes) = await asyncio.gather(
            asyncio.to_thread(self.shares.holdings), asyncio.to_thread(self.cache.holdings)
        )
        for si, size in cached.items():
            files[si] = files.get(si, 0) + size
        record = Holdings(
            node=self.node,
            files=files,
            share_bytes=share_bytes,
            cache_bytes=cache_bytes,
            free_bytes=self.shares.free_bytes(),
        )
        kv = await self.bus.kv(resources.HOLDINGS)
        await kv.put(self.node, encode(record))

    # --- check and repair ----------------------------------------------------------------

    async def _on_repair(self, msg: Message) -> None:
        assert self._tg is not None
        self._tg.create_task(_logged(self._repair_one(msg), "a check"))

    async def _repair_one(self, msg: Message) -> None:
        try:
            req = decode(msg.data, RepairRequest)
            cap = parse_cap(req.verify)
            if not isinstance(cap, FileVerifyCap):
                raise BadMessage("check needs a file's verify capability")
            labels = await self._policy_of(cap)
            report = await check_file(self._net(), cap, repair=req.repair, labels=labels)
        except MotesError as exc:
            await self._reply(msg, encode_error(exc))
            return
        await self._reply(msg, encode(report))

    def _net(self) -> StoreNet:
        return StoreNet(self.bus, scatter_s=self.timing.scatter_s, request_s=self.timing.request_s)

    async def _policy_of(self, cap: FileVerifyCap) -> dict[str, str]:
        kv = await self.bus.kv(resources.FILES)
        entry = await kv.get(cap.si_hex)
        return decode(entry.value or b"", FileRecord).labels if entry is not None else {}

    async def _repair_loop(self) -> None:
        """While holding the repair lease: after a store node is lost, repair every file.

        The lease renews itself (``Lease.hold``) beside the repair rounds, so a round
        that takes longer than the lease's TTL does not let a second repairer start.
        """
        kv = await self.bus.kv(resources.lease(self.timing.lease_ttl_s))
        lease = Lease(kv, REPAIR_LEASE_KEY, self.node, self.timing.lease_ttl_s)
        while True:
            await lease.campaign()
            self.repairing = True
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(lease.hold())
                    tg.create_task(self._repair_rounds())
            except* LeaseLost:
                log.info("store: %s no longer holds the repair lease", self.node)
            finally:
                self.repairing = False

    async def _repair_rounds(self) -> None:
        """Repair every file after a store node is lost.

        A node is lost when it has not answered two rounds running (one late answer on a
        busy machine is not a loss). A repairer that just took the lease checks every file
        once (the last one may have died with a node), and so does a round after one that
        failed; and every file is checked every ``sweep_s`` regardless.
        """
        net = self._net()
        seen: set[str] = set()
        missed: set[str] = set()
        swept = time.monotonic()
        force = True
        while True:
            await asyncio.sleep(self.timing.repair_s)
            try:
                await net.locate([])
                live = set(net.nodes.labels)
                gone = seen - live
                lost = gone & missed
                missed = gone - lost
                seen = live | missed
                if force or lost or time.monotonic() - swept > self.timing.sweep_s:
                    why = ", ".join(sorted(lost)) + " lost" if lost else "a sweep"
                    log.info("store: %s; checking every file", why)
                    await self._repair_all(net)
                    swept, force = time.monotonic(), False
            except Exception:  # a busy lattice, a node gone mid-repair: try next round
                log.exception("store: a repair round failed; the next one checks every file")
                force = True

    async def _repair_all(self, net: StoreNet) -> None:
        kv = await self.bus.kv(resources.FILES)
        for entry in (await kv.items()).values():
            try:
                record = decode(entry.value or b"", FileRecord)
                cap = parse_cap(record.verify)
                assert isinstance(cap, FileVerifyCap)
                report = await check_file(net, cap, repair=True, labels=record.labels)
            except MotesError as exc:
                log.warning("store: repairing %s failed: %s", record.verify[:24], exc)
                continue
            if report.repaired_shares:
                log.info(
                    "store: %s: %d share(s) regenerated", record.verify[:24], report.repaired_shares
                )


async def _logged(coro: Coroutine[Any, Any, None], what: str) -> None:
    """A failure in one request's task is logged; it never takes the service down."""
    try:
        await coro
    except Exception:
        log.exception("store: %s failed", what)


async def _serve(sub: Subscription, handle: Callable[[Message], Awaitable[None]]) -> None:
    async for msg in sub:
        try:
            await handle(msg)
        except Exception:  # one bad request must not end the subscription
            log.exception("store: a request on %s failed", msg.subject)


async def serve_store(
    bus: Bus, config: Config, *, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    """Run this node's store service on ``bus`` (its own connection, which it closes)
    until ``stop``; ``ready`` is set once it serves. The node agent runs it as a task of
    its process (``node.workers.TaskChild``) and restarts it if it fails."""
    node = config.node
    service = StoreService(
        bus,
        node=node.id,
        directory=Path(node.home) / "store",
        cache_dir=Path(node.home) / "cache",
        labels=dict(node.labels),
        timing=config.timing,
    )
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(service.run(started=ready))
            await stop.wait()
            task.cancel()
    except Exception:
        log.exception("the store service on %s failed", node.name)
        raise
    finally:
        await service.forget()
        await bus.close()
