"""Request/reply over one wildcard inbox subscription, with a future per request.

nats-py's ``request`` does the same with a timer task per call; this keeps the per-call
cost to a dict entry, one ``call_later`` and one publish, which is most of a call's
client-side time.
"""

from __future__ import annotations

import asyncio
import itertools

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

__all__ = ["NoResponders", "Replies", "ReplyTimeout"]


class NoResponders(Exception):
    """Nobody subscribes to the subject (the server answered 503)."""


class ReplyTimeout(Exception):
    """No reply within the timeout."""


class Replies:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox() + "."
        self._futures: dict[str, asyncio.Future[Msg]] = {}
        self._tokens = itertools.count(1)
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self.nc.subscribe(
            self.prefix + "*", cb=self._on_reply, pending_msgs_limit=1_000_000
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
        for fut in self._futures.values():
            if not fut.done():
                fut.cancel()

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._futures.pop(msg.subject[len(self.prefix) :], None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    async def request(self, subject: str, data: bytes, timeout: float) -> Msg:
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Msg] = loop.create_future()
        self._futures[token] = fut
        timer = loop.call_later(timeout, _expire, fut)
        try:
            await self.nc.publish(subject, data, reply=self.prefix + token)
            msg = await fut
        finally:
            timer.cancel()
            self._futures.pop(token, None)
        if not msg.data and msg.headers and msg.headers.get("Status") == "503":
            raise NoResponders(subject)
        return msg


def _expire(fut: asyncio.Future[Msg]) -> None:
    if not fut.done():
        fut.set_exception(ReplyTimeout())
