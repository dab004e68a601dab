"""How ``map`` cuts its items into batches: each about ``TARGET_S`` of the mote's work.

A batch is one message, served by one instance, its items one after another (a sync
mote) or together (an async one). Tiny items need big batches, or the per-message cost
dominates; heavy items need small ones, or a map of 300 twenty-millisecond items lands
in one batch on one instance while the others idle. So the size follows the mote's
measured time per item: every batch reply says how long the worker spent on it
(``BatchReply.wall_us``), and the next batch carries about ``TARGET_S`` worth, between 1
and ``MAX_ITEMS`` items (and at most ``MAX_BYTES``).

Until the first reply, nothing is known, so the first batches carry one item each: with
``window`` of them in flight, the first answer arrives after about one item's time and
sizes the rest. A worker too old to time its batches (``wall_us`` 0) gets full batches,
as before sizing existed.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import msgspec

from ..errors import EncodeError, PayloadTooLarge
from ._items import aiter_of

__all__ = ["MAX_BYTES", "MAX_ITEMS", "TARGET_S", "BatchSizer", "RawBatch", "batches"]

TARGET_S = 0.005
"""The mote work one batch should carry: 5 ms keeps a message's cost (~0.1 ms here)
a few percent of it, and is small against the heavy items it spreads."""
MAX_ITEMS = 512
MAX_BYTES = 256 * 1024
_SMOOTH = 0.3
"""Weight of the newest measurement in the running per-item time."""

_encoder = msgspec.msgpack.Encoder()


class RawBatch(msgspec.Struct, array_like=True, tag="b1"):
    """Encodes exactly like ``Batch``, from items already encoded one by one."""

    items: list[msgspec.Raw]
    timeout_ms: int


class BatchSizer:
    """The size of one map's next batch, from the per-item times its replies report."""

    __slots__ = ("items", "per_item_s")

    def __init__(self) -> None:
        self.per_item_s: float | None = None
        """The running estimate of one item's time on an instance (None: no reply yet)."""
        self.items = 1
        """How many items the next batch carries."""

    def observe(self, items: int, wall_us: int) -> None:
        """A batch of ``items`` took ``wall_us`` on its worker (0: the worker did not say)."""
        if items <= 0:
            return
        if wall_us <= 0:
            self.per_item_s, self.items = 0.0, MAX_ITEMS
            return
        per = wall_us / 1e6 / items
        if self.per_item_s is not None:
            per = (1 - _SMOOTH) * self.per_item_s + _SMOOTH * per
        self.per_item_s = per
        self.items = max(1, min(MAX_ITEMS, int(TARGET_S / per))) if per > 0 else MAX_ITEMS


async def batches(
    items: Iterable[Any] | AsyncIterable[Any], name: str, limit: int, sizer: BatchSizer
) -> AsyncIterator[list[msgspec.Raw]]:
    """Encode each item once and yield batches of them, as large as ``sizer`` says now."""
    budget = min(MAX_BYTES, limit // 2)
    batch: list[msgspec.Raw] = []
    size = 0
    index = 0
    async for item in aiter_of(items):
        one = encode_item(item, index, name, limit)
        index += 1
        if batch and (size + len(one) > budget or len(batch) >= sizer.items):
            yield batch
            batch, size = [], 0
        batch.append(msgspec.Raw(one))
        size += len(one)
    if batch:
        yield batch


def encode_item(item: Any, index: int, name: str, limit: int) -> bytes:
    """One map item as a call's argument list, checked against the message limit."""
    try:
        data = _encoder.encode([item])
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"item {index}", type(item).__name__, str(exc)) from None
    if len(data) > limit - 64:
        raise PayloadTooLarge(f"item {index} of the map over {name}", len(data), limit)
    return data


def encode_batch(items: list[msgspec.Raw], timeout_ms: int) -> bytes:
    return _encoder.encode(RawBatch(items, timeout_ms))
