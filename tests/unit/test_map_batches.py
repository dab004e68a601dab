"""How ``map`` sizes its batches (``motes.client._batches``): pure logic."""

from __future__ import annotations

import pytest

from motes.client._batches import MAX_BYTES, MAX_ITEMS, TARGET_S, BatchSizer, batches
from motes.errors import EncodeError, PayloadTooLarge


def test_before_any_reply_a_batch_is_one_item() -> None:
    assert BatchSizer().items == 1


def test_the_size_follows_the_measured_item_time() -> None:
    tiny = BatchSizer()
    tiny.observe(10, 10)  # 1 us an item: as many as a batch may hold
    assert tiny.items == MAX_ITEMS
    medium = BatchSizer()
    medium.observe(4, 400)  # 100 us an item: 5 ms is 50 of them
    assert medium.items == round(TARGET_S / 100e-6)
    heavy = BatchSizer()
    heavy.observe(1, 20_000)  # 20 ms: one a batch, so every instance gets some
    assert heavy.items == 1


def test_the_estimate_is_smoothed_not_replaced() -> None:
    sizer = BatchSizer()
    sizer.observe(1, 1000)  # 1 ms
    sizer.observe(1, 100)  # then one fast item does not swing it all the way
    assert sizer.per_item_s is not None and 0.0005 < sizer.per_item_s < 0.001
    assert 5 < sizer.items < 10


def test_a_worker_that_does_not_time_gets_full_batches() -> None:
    sizer = BatchSizer()
    sizer.observe(3, 0)
    assert sizer.items == MAX_ITEMS
    sizer.observe(0, 500)  # an empty batch tells nothing
    assert sizer.items == MAX_ITEMS


async def _sizes(items: list[object], sizer: BatchSizer, limit: int = 1 << 20) -> list[int]:
    return [len(b) async for b in batches(items, "app.m", limit, sizer)]


async def test_batches_take_the_size_current_when_they_start() -> None:
    sizer = BatchSizer()
    out = []
    async for batch in batches(range(10), "app.m", 1 << 20, sizer):
        out.append(len(batch))
        if len(out) == 2:
            sizer.observe(1, round(TARGET_S / 4 * 1e6))  # now 4 items fit a batch
    assert out == [1, 1, 4, 4]


async def test_bytes_cap_a_batch_too() -> None:
    sizer = BatchSizer()
    sizer.observe(1, 1)
    big = [b"x" * (MAX_BYTES // 4)] * 7  # three fit, with their framing; four do not
    assert await _sizes(big, sizer) == [3, 3, 1]


async def test_bad_items_are_typed_errors() -> None:
    with pytest.raises(EncodeError, match="item 1"):
        await _sizes([1, object()], BatchSizer())
    with pytest.raises(PayloadTooLarge, match="item 0"):
        await _sizes([b"x" * 2000], BatchSizer(), limit=1000)
