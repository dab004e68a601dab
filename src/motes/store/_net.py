"""Talking to the nodes' store services: who is there, who holds what, moving shares.

Every share that arrives is checked here (header against the blob root, bytes against the
header) before anyone uses it: a node is never trusted with the truth of what it serves.
The checks hash in a thread (blake3 lets go of the GIL), so the event loop keeps moving
bytes meanwhile.

Shares for one node travel in batches: while one ``SharePutMany`` to a node is on its way,
the shares queued for that node after it wait in that node's ``_Lane`` and go together
in the next message (up to ``BATCH_BYTES``). A busy node thus gets fewer, larger
messages, and an idle one gets each share at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import BadMessage, MotesError, NoReply, NoResponders
from ..wire import resources, subjects
from ..wire.bus import Bus
from ..wire.codec import decode, decode_all, encode, raise_for
from ..wire.messages import Err, Ok
from ..wire.store import (
    BATCH_BYTES,
    PIECE_BYTES,
    Holdings,
    Locate,
    Located,
    ShareGet,
    SharePiece,
    SharePut,
    SharePutMany,
    SharesPut,
)
from .format import ShareHeader, check_share
from .shares import DiskShares, parse_header

__all__ = ["Fetched", "Nodes", "ShareFailed", "StoreNet"]

log = logging.getLogger(__name__)
_LOCATE_BATCH = 512


class ShareFailed(Exception):
    """One share could not be moved to or from one node (the caller tries another)."""

    def __init__(self, node: str, reason: str) -> None:
        super().__init__(f"{node}: {reason}")
        self.node = node
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Fetched:
    header: ShareHeader
    header_raw: bytes
    num: int
    data: bytes


@dataclass(slots=True)
class Nodes:
    """The store services that answered, with their labels and how fast they have been."""

    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    """Smoothed seconds per share request, per node (unknown nodes count as fast)."""

    def ids(self) -> list[str]:
        return sorted(self.labels)

    def observe(self, node: str, seconds: float) -> None:
        old = self.latency.get(node)
        self.latency[node] = seconds if old is None else 0.8 * old + 0.2 * seconds

    local: str = ""
    """This machine's own node, whose shares are read from disk: first choice."""

    def speed_key(self, node: str) -> float:
        return -1.0 if node == self.local else self.latency.get(node, 0.0)


@dataclass(slots=True)
class _Queued:
    put: SharePut
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Lane:
    """Shares waiting to go to one node; whoever holds ``lock`` sends the next batch."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queue: list[_Queued] = field(default_factory=list)

    def take(self, limit: int) -> list[_Queued]:
        """The queued shares from the front, up to ``limit`` bytes (at least one)."""
        size = 0
        for i, q in enumerate(self.queue):
            size += len(q.put.data) + len(q.put.header)
            if size > limit and i:
                break
        else:
            i = len(self.queue)
        batch, self.queue[:i] = self.queue[:i], []
        return batch


class StoreNet:
    """``local``: (node id, its share store) when running on a node, e.g. inside a mote:
    shares that node holds are read from its disk, not carried over the lattice."""

    def __init__(
        self,
        bus: Bus,
        *,
        scatter_s: float,
        request_s: float = 10.0,
        local: tuple[str, DiskShares] | None = None,
    ) -> None:
        self.bus = bus
        self.scatter_s = scatter_s
        self.request_s = request_s
        self.local = local
        self.nodes = Nodes(local=local[0] if local else "")
        self.complete = True
        """Whether every known store answered the last ``locate``."""
        self.bytes_local = 0
        """Share bytes read from this node's own disk."""
        self.bytes_in = 0
        """Share bytes fetched from nodes over the lattice (a cache hit adds nothing)."""
        self.bytes_out = 0
        """Share bytes sent to nodes."""
        self._lanes: dict[str, _Lane] = {}
        self._batch_bytes = min(BATCH_BYTES, bus.max_payload // 2)

    async def expected_nodes(self) -> int:
        """Store services known to the mesh (each keeps a holdings record)."""
        return len(await (await self.bus.kv(resources.HOLDINGS)).items())

    async def locate(
        self, roots: Sequence[bytes], *, patient: bool = False
    ) -> dict[bytes, dict[int, list[str]]]:
        """Who holds which shares of ``roots``: root -> share number -> nodes.

        Every answering store service is also recorded in ``self.nodes`` (with labels).
        Answers are awaited ``scatter_s``, or, ``patient``, four times that (for a second
        look when the first found too few shares: a busy node may just answer late).
        """
        expected = await self.expected_nodes() or None
        out: dict[bytes, dict[int, list[str]]] = {r: {} for r in roots}
        batches = [roots[i : i + _LOCATE_BATCH] for i in range(0, len(roots), _LOCATE_BATCH)]
        answered: dict[str, dict[str, str]] = {}
        for batch in batches or [[]]:
            raw = await self.bus.scatter(
                subjects.STORE_LOCATE,
                encode(Locate(list(batch))),
                expected=expected,
                timeout=self.scatter_s * (4 if patient else 1),
            )
            for ans in decode_all(raw, Located):
                answered[ans.node] = ans.labels
                if len(ans.held) != len(batch):
                    continue
                for root, nums in zip(batch, ans.held, strict=True):
                    for num in nums:
                        out[root].setdefault(num, []).append(ans.node)
        self.nodes.labels = answered
        self.complete = expected is None or len(answered) >= expected
        return out

    async def holdings(self) -> list[Holdings]:
        kv = await self.bus.kv(resources.HOLDINGS)
        return decode_all([e.value or b"" for e in (await kv.items()).values()], Holdings)

    async def _ask(self, node: str, op: str, payload: bytes, timeout: float) -> bytes:
        t0 = time.monotonic()
        try:
            msg = await self.bus.request(subjects.store(node, op), payload, timeout=timeout)
        except NoResponders:
            raise ShareFailed(node, "no store service answers") from None
        except NoReply:
            self.nodes.observe(node, timeout)
            raise ShareFailed(node, f"no answer within {timeout:g} s") from None
        self.nodes.observe(node, time.monotonic() - t0)
        return bytes(msg.data)

    async def put_share(
        self, node: str, root: bytes, num: int, header: bytes, share: bytes
    ) -> None:
        """Store one share on ``node``; returns once it is durable there. A share that
        fits a batch joins the node's lane, a larger one goes piece by piece."""
        if len(share) > PIECE_BYTES:
            await self._put_pieces(node, root, num, header, share)
            return
        lane = self._lanes.setdefault(node, _Lane())
        mine = _Queued(SharePut(root, num, header, 0, len(share), share), _future())
        lane.queue.append(mine)
        try:
            while not mine.done.done():
                async with lane.lock:
                    if mine.done.done():
                        break
                    batch = lane.take(self._batch_bytes)
                    try:
                        await self._put_batch(node, batch)
                    finally:  # cut off (this caller cancelled): the others' shares go next
                        lane.queue[:0] = [q for q in batch if not q.done.done() and q is not mine]
        finally:
            if mine in lane.queue:
                lane.queue.remove(mine)
            if not mine.done.done():  # cancelled: whatever became of it, no one waits
                mine.done.cancel()
        mine.done.result()

    async def _put_batch(self, node: str, batch: list[_Queued]) -> None:
        """Send ``batch`` in one message; settle each share's future with its outcome."""
        payload = encode(SharePutMany([q.put for q in batch]))
        try:
            reply = await self._ask(node, "put", payload, self.request_s)
            try:
                errors = decode(reply, SharesPut).errors
            except BadMessage:
                raise_for(decode(reply, Err))
                raise
            if len(errors) != len(batch):
                raise BadMessage(f"{len(errors)} answers to {len(batch)} shares")
        except ShareFailed as exc:
            for q in batch:
                _settle(q.done, exc)
            return
        except MotesError as exc:
            for q in batch:
                _settle(q.done, ShareFailed(node, str(exc)))
            return
        for q, error in zip(batch, errors, strict=True):
            if not error:
                self.bytes_out += len(q.put.data)
            _settle(q.done, ShareFailed(node, error) if error else None)

    async def _put_pieces(
        self, node: str, root: bytes, num: int, header: bytes, share: bytes
    ) -> None:
        total = len(share)
        view = memoryview(share)
        offset = 0
        while True:
            piece = bytes(view[offset : offset + PIECE_BYTES])
            msg = SharePut(root, num, header, offset, total, piece)
            reply = await self._ask(node, "put", encode(msg), self.request_s)
            self.bytes_out += len(piece)
            try:
                answer = decode(reply, Ok | Err)  # type: ignore[arg-type]
                raise_for(answer)
            except MotesError as exc:
                raise ShareFailed(node, str(exc)) from None
            offset += len(piece)
            if offset >= total:
                return

    async def get_share(
        self, node: str, root: bytes, num: int, timeout: float | None = None
    ) -> Fetched:
        """Fetch one share from ``node`` and check it; ``ShareFailed`` says why not."""
        if self.local is not None and node == self.local[0]:
            return await self._read_local(root, num)
        timeout = self.request_s if timeout is None else timeout
        chunks: list[bytes] = []
        offset, total = 0, None
        header_raw = b""
        while total is None or offset < total:
            reply = await self._ask(node, "get", encode(ShareGet(root, num, offset)), timeout)
            try:
                piece = decode(reply, SharePiece)
            except BadMessage:
                try:
                    raise_for(decode(reply, Err))
                except MotesError as exc:
                    raise ShareFailed(node, str(exc)) from None
                raise ShareFailed(node, "an unreadable answer") from None
            if total is None:
                total, header_raw = piece.total, piece.header
            if not piece.data:
                raise ShareFailed(node, "the share ended early")
            chunks.append(piece.data)
            self.bytes_in += len(piece.data)
            offset += len(piece.data)
        try:
            header = parse_header(root, header_raw)
        except BadMessage as exc:
            raise ShareFailed(node, f"forged or damaged header: {exc}") from None
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not await asyncio.to_thread(check_share, header, num, data):
            raise ShareFailed(node, f"share {num} is corrupt (hash mismatch)")
        return Fetched(header, header_raw, num, data)

    async def _read_local(self, root: bytes, num: int) -> Fetched:
        node, disk = self.local  # type: ignore[misc]
        try:
            header_raw, _, data = await asyncio.to_thread(disk.read, root, num, 0, 1 << 40)
        except (KeyError, OSError) as exc:
            raise ShareFailed(node, f"not on this node's disk ({exc})") from None
        try:
            header = parse_header(root, header_raw)
        except BadMessage as exc:
            raise ShareFailed(node, f"damaged header on disk: {exc}") from None
        if not await asyncio.to_thread(check_share, header, num, data):
            raise ShareFailed(node, f"share {num} on this node's disk is corrupt")
        self.bytes_local += len(data)
        return Fetched(header, header_raw, num, data)

    async def tag(self, node: str, payload: bytes) -> None:
        reply = await self._ask(node, "tag", payload, self.request_s)
        raise_for(decode(reply, Ok | Err))  # type: ignore[arg-type]


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


def _settle(done: asyncio.Future[None], failure: Exception | None) -> None:
    if done.done():  # its caller was cancelled meanwhile
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)
