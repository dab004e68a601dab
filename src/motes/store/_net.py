"""Talking to the nodes' store services: who is there, who holds what, moving shares.

Every share that arrives is checked here (header against the blob root, bytes against the
header) before anyone uses it: a node is never trusted with the truth of what it serves.
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
from ..wire.store import PIECE_BYTES, Holdings, Locate, Located, ShareGet, SharePiece, SharePut
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
        """Store one share on ``node``, piece by piece; returns once it is durable there."""
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
        if not check_share(header, num, data):
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
        if not check_share(header, num, data):
            raise ShareFailed(node, f"share {num} on this node's disk is corrupt")
        self.bytes_local += len(data)
        return Fetched(header, header_raw, num, data)

    async def tag(self, node: str, payload: bytes) -> None:
        reply = await self._ask(node, "tag", payload, self.request_s)
        raise_for(decode(reply, Ok | Err))  # type: ignore[arg-type]
