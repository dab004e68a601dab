"""Structured concurrency where the work is done inside a caller's block.

``owned_tasks`` is a TaskGroup for helpers that start tasks while a caller's code runs
between them (a streaming writer, a reader that yields chunks, a map that yields
results): the caller's own exception comes out as itself, not wrapped in an exception
group, and ending the block (or closing the generator) cancels what is still running.
Tasks started in it report failure through their results (``outcome``), so that the
block decides what a failed one means.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

__all__ = ["outcome", "owned_tasks"]

T = TypeVar("T")


@asynccontextmanager
async def owned_tasks() -> AsyncIterator[asyncio.TaskGroup]:
    try:
        async with asyncio.TaskGroup() as tg:
            yield tg
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


async def outcome(aw: Awaitable[T]) -> T | Exception:
    """``aw``'s result, or the exception it raised (returned, not raised)."""
    try:
        return await aw
    except Exception as exc:
        return exc
