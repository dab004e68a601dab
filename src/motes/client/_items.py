"""Helpers shared by plain and durable ``map``: iterate any iterable, unwrap item results."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from ..errors import MotesError
from ..wire.codec import raise_for
from ..wire.messages import Err, Ok

__all__ = ["aiter_of", "item_result"]


async def aiter_of(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    """Iterate a sync or async iterable alike."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def item_result(reply: Ok | Err, return_exceptions: bool) -> Any:
    """An item's value; its typed error raised, or returned with ``return_exceptions``."""
    try:
        return raise_for(reply)
    except MotesError as exc:
        if return_exceptions:
            return exc
        raise
