"""Uploads and downloads: files in, capabilities out, and back, in bounded memory.

An upload reads the source a chunk at a time, encrypts and erasure-codes each chunk in a
thread, and keeps at most ``window`` chunks in flight to the nodes; the manifest is
stored last, then the nodes are told which file their blobs belong to, then the file is
registered for repair. It is refused (``StoreUnhappy``) if some blob could not be spread
over ``happy`` distinct nodes.

A download fetches the manifest, then chunks ``window`` at a time in order, each from the
cache when there, else from the nodes (``blobs.fetch_blob``), and yields plaintext.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

from .._aio import outcome, owned_tasks
from ..errors import BadMessage, DataUnavailable, NotStored, StoreUnhappy
from ..wire import resources
from ..wire.codec import encode
from ..wire.store import FileRecord, Tag
from ._net import StoreNet
from .blobs import fetch_blob, place_shares
from .cache import BlobCache
from .caps import FileReadCap
from .format import (
    Manifest,
    Params,
    ShareHeader,
    chunk_key,
    decode_manifest,
    encode_blob,
    encode_manifest,
    open_chunk,
    open_keys,
    read_key,
    seal_chunk,
    seal_keys,
)

__all__ = ["Download", "Upload"]

log = logging.getLogger(__name__)
WINDOW = 8
"""Chunks in flight per upload: bounds memory to about window x chunk x (2 + n/k)."""
READ_WINDOW = 16
"""Chunks in flight per download (each holds k shares and its plaintext: about 2 x chunk):
more of them keep every holder busy while the client checks and decrypts."""

Progress = Callable[[int], None]


@dataclass
class Upload:
    """One upload. Feed chunks with ``add`` (in order), then ``finish``."""

    net: StoreNet
    secret: bytes
    params: Params
    nodes: list[str]
    kind: str = "file"
    extra_sis: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    progress: Progress | None = None
    window: int = WINDOW
    size: int = 0
    _keys: list[bytes] = field(default_factory=list)
    _roots: list[bytes] = field(default_factory=list)
    _placed: dict[bytes, dict[int, str]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[Exception | None]] = field(default_factory=list)
    _slots: asyncio.Semaphore | None = None
    tasks: asyncio.TaskGroup | None = None
    """Where chunk tasks run: the writer's block owns them."""

    async def add(self, plaintext: bytes) -> None:
        """Queue one chunk (``params.chunk`` bytes, or fewer for the last)."""
        assert self.tasks is not None, "an Upload runs inside StoreClient.writer()"
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.window)
        await self._slots.acquire()
        index = len(self._keys)
        self._keys.append(b"")
        self._roots.append(b"")
        self.size += len(plaintext)
        failed = self._failure()
        if failed is not None:  # an earlier chunk failed: stop early, say why
            self._slots.release()
            self.abort()
            raise failed
        self._tasks.append(self.tasks.create_task(outcome(self._store_chunk(index, plaintext))))

    def _failure(self) -> Exception | None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.result() is not None:
                return task.result()
        return None

    async def _store_chunk(self, index: int, plaintext: bytes) -> None:
        assert self._slots is not None
        try:
            key, root, header, shares = await asyncio.to_thread(self._prepare, plaintext)
            self._keys[index], self._roots[index] = key, root
            await self._place(root, header, shares)
            if self.progress is not None:
                self.progress(len(plaintext))
        finally:
            self._slots.release()

    def _prepare(self, plaintext: bytes) -> tuple[bytes, bytes, ShareHeader, list[bytes]]:
        key = chunk_key(self.secret, self.params, plaintext)
        blob, shares = encode_blob(seal_chunk(key, plaintext), self.params.k, self.params.n)
        return key, blob.root, blob.header, shares

    async def _place(self, root: bytes, header: ShareHeader, shares: list[bytes]) -> None:
        if root in self._placed:
            return  # the same chunk again in this file: stored once
        self._placed[root] = {}
        placed = await place_shares(self.net, root, header, dict(enumerate(shares)), self.nodes)
        distinct = len(set(placed.values()))
        if distinct < self.params.happy:
            raise StoreUnhappy(
                self.params.happy, distinct, f"{len(self.nodes)} node(s) answered the upload"
            )
        self._placed[root] = placed

    def abort(self) -> None:
        """Stop every chunk still being stored (the block that owns them waits for them)."""
        for task in self._tasks:
            task.cancel()

    async def finish(self) -> tuple[FileReadCap, int]:
        """Wait for every chunk, store the manifest, tag and register the file."""
        if self._tasks:
            await asyncio.wait(self._tasks)
        failed = self._failure()
        if failed is not None:
            raise failed
        key = read_key(self.secret, self._keys, self.kind, self.size)
        manifest = Manifest(
            kind=self.kind,
            size=self.size,
            k=self.params.k,
            n=self.params.n,
            chunk=self.params.chunk,
            chunks=list(self._roots),
            sealed_keys=seal_keys(key, self._keys),
        )
        blob, shares = encode_blob(encode_manifest(manifest), self.params.k, self.params.n)
        await self._place(blob.root, blob.header, shares)
        cap = FileReadCap(key, blob.root)
        await self._tag(cap)
        record = FileRecord(
            verify=str(cap.verify_cap()),
            size=self.size,
            k=self.params.k,
            n=self.params.n,
            happy=self.params.happy,
            labels=self.labels,
            stored_at=time.time(),
        )
        kv = await self.net.bus.kv(resources.FILES)
        await kv.put(cap.si_hex, encode(record))
        return cap, self.size

    async def _tag(self, cap: FileReadCap) -> None:
        by_node: dict[str, list[bytes]] = {}
        for root, placed in self._placed.items():
            for node in set(placed.values()):
                by_node.setdefault(node, []).append(root)
        sis = [cap.si_hex, *self.extra_sis]
        results = await asyncio.gather(
            *(self.net.tag(node, encode(Tag(sis, roots))) for node, roots in by_node.items()),
            return_exceptions=True,
        )
        for res in results:  # the shares are stored; a node not told only under-reports
            if isinstance(res, Exception):
                log.warning("store: telling a node what it holds failed: %s", res)
            elif isinstance(res, BaseException):
                raise res


@dataclass
class Download:
    """Read one file by its read capability."""

    net: StoreNet
    cap: FileReadCap
    cache: BlobCache | None
    window: int = READ_WINDOW
    progress: Progress | None = None
    manifest: Manifest | None = None
    _keys: list[bytes] = field(default_factory=list)
    _holders: dict[bytes, dict[int, list[str]]] = field(default_factory=dict)
    _locating: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def sis(self) -> list[str]:
        return [self.cap.si_hex]

    async def open(self) -> Manifest:
        """Fetch and check the manifest (from the cache when there)."""
        if self.manifest is None:
            data = await self._blob(self.cap.root, "the manifest", k_hint=3, locate_first=True)
            manifest = decode_manifest(data)
            self._keys = open_keys(self.cap.key, manifest.sealed_keys, len(manifest.chunks))
            self.manifest = manifest
        return self.manifest

    async def chunks(self, start: int = 0) -> AsyncIterator[bytes]:
        """The file's bytes, a chunk at a time, in order, from chunk ``start`` on."""
        manifest = await self.open()
        roots = manifest.chunks
        pending: dict[int, asyncio.Task[bytes | Exception]] = {}
        async with owned_tasks() as tasks:
            try:
                for i in range(max(start, 0), len(roots)):
                    for j in range(i, min(i + self.window, len(roots))):
                        if j not in pending:
                            pending[j] = tasks.create_task(outcome(self._chunk(j)))
                    data = await pending.pop(i)
                    if isinstance(data, Exception):
                        raise data
                    if self.progress is not None:
                        self.progress(len(data))
                    yield data
            finally:
                for task in pending.values():
                    task.cancel()

    async def _chunk(self, index: int) -> bytes:
        assert self.manifest is not None
        root = self.manifest.chunks[index]
        data = await self._blob(root, f"chunk {index}", k_hint=self.manifest.k)
        plain = await asyncio.to_thread(open_chunk, self._keys[index], data)
        return plain

    async def _blob(
        self, root: bytes, what: str, *, k_hint: int, locate_first: bool = False
    ) -> bytes:
        if self.cache is not None:
            hit = await asyncio.to_thread(self.cache.get, root)
            if hit is not None:
                return hit[1]
        holders = await self._holders_of(root)
        if len(holders) < k_hint and not self.net.complete:  # a store answered late: again
            holders = (await self.net.locate([root], patient=True))[root]
        if not holders and locate_first:
            raise NotStored(str(self.cap.verify_cap()), "no node holds its manifest")
        try:
            _, header_raw, data = await fetch_blob(
                self.net, root, holders, f"{what} of {self.cap.verify_cap()}", k_hint=k_hint
            )
        except BadMessage as exc:  # shares that check out but do not rebuild: forged header
            raise DataUnavailable(what, k_hint, 0, str(exc)) from None
        if self.cache is not None:
            await asyncio.to_thread(self.cache.put, root, header_raw, data, self.sis)
        return data

    async def _holders_of(self, root: bytes) -> dict[int, list[str]]:
        async with self._locating:
            if root not in self._holders:
                await self._locate_from(root)
            return self._holders.pop(root, {})

    async def _locate_from(self, root: bytes) -> None:
        batch = [root]
        if self.manifest is not None:  # locate the next stretch of chunks in one go
            roots = self.manifest.chunks
            at = roots.index(root) if root in roots else 0
            batch = [r for r in roots[at : at + 256] if r not in self._holders]
            if self.cache is not None:
                batch = [r for r in batch if r == root or not self.cache.has(r)]
        self._holders.update(await self.net.locate(batch))


def chunked(data: bytes, size: int) -> Iterable[bytes]:
    view = memoryview(data)
    for at in range(0, len(data), size):
        yield bytes(view[at : at + size])
