"""Which parts of the picture changed, told to every open page.

A topic is a name with a revision. ``mark`` bumps revisions; each page's ``Listener``
wakes at most every ``MIN_PUSH_S`` seconds, about ``BATCH_S`` after the first change, with
the topics it asked for that changed since it last looked: a burst of events becomes
one notice, and a page that cannot keep up gets fewer notices, never a backlog.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

__all__ = ["BATCH_S", "MIN_PUSH_S", "Listener", "Topics"]

BATCH_S = 0.1
MIN_PUSH_S = 0.4


class Listener:
    def __init__(self, topics: Topics, wants: set[str]) -> None:
        self._topics = topics
        self.wants = wants
        self.pending: set[str] = set(wants)
        """What changed since the last notice (everything, for the first)."""
        self.wake = asyncio.Event()
        self.wake.set()
        self._last = 0.0

    async def next(self) -> dict[str, int]:
        """The revisions of the topics that changed, once some did."""
        while True:
            await self.wake.wait()
            wait = max(BATCH_S, self._last + MIN_PUSH_S - time.monotonic())
            await asyncio.sleep(wait)
            self.wake.clear()
            if self.pending:
                changed, self.pending = self.pending, set()
                self._last = time.monotonic()
                return {t: self._topics.revs.get(t, 0) for t in sorted(changed)}

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._topics.listeners.discard(self)


class Topics:
    def __init__(self) -> None:
        self.revs: dict[str, int] = {}
        self.listeners: set[Listener] = set()

    def mark(self, *names: str) -> None:
        for name in names:
            self.revs[name] = self.revs.get(name, 0) + 1
        for listener in self.listeners:
            hit = listener.wants.intersection(names)
            if hit:
                listener.pending |= hit
                listener.wake.set()

    def listen(self, wants: set[str]) -> Listener:
        listener = Listener(self, wants)
        self.listeners.add(listener)
        return listener

    def watched(self, name: str) -> bool:
        """Whether any open page shows this topic now."""
        return any(name in listener.wants for listener in self.listeners)
