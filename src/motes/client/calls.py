"""``mesh.calls``: calling motes (one call, a ``map``, an actor's method), durable calls
and flows.

A call is one request to the mote's subject; the worker that takes it (one of a queue
group) replies directly, so a call crosses the lattice exactly twice. ``map`` encodes
each item once and sends batches, several in flight, spread over the mote's instances.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from .._aio import outcome, owned_tasks
from ..errors import BadMessage, MotesError, RequestError
from ..ids import MoteRef
from ..runtime.actors import shard_of
from ..wire import subjects
from ..wire.codec import batch_results, decode_reply, encode_request, raise_for
from ..wire.messages import (
    TRACE_HEADER,
    TRACE_INSTANCE,
    TRACE_NODE,
    TRACE_WALL_US,
    ActorCall,
    BatchReply,
    Call,
    Err,
    FlowDef,
    Ok,
)
from ._batches import BatchSizer, batches, encode_batch
from ._core import Core
from ._items import item_result
from .durable import CallHandle, Durable, Flow, QueueStat

__all__ = ["ActorRef", "Calls", "Served"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """A call's outcome and who served it (``Calls.call_traced``)."""

    value: Any = None
    error: MotesError | None = None
    """The call's typed error, if the mote raised or refused it (``value`` is None)."""
    node: str = ""
    """The id of the node whose worker served it."""
    instance: str = ""
    wall_s: float = 0.0
    """Time the worker spent on it."""
    rtt_s: float = 0.0
    """Time the caller waited for it, the lattice's two crossings included."""
    bytes_in: int = 0
    bytes_out: int = 0


_TRACE = {TRACE_HEADER: "1"}


def _micros(text: str) -> int:
    try:
        return max(0, int(text))
    except ValueError:
        return 0  # a worker that does not trace (older) or a garbled header


class Calls:
    def __init__(self, core: Core) -> None:
        self._core = core
        self._durable = Durable(core)

    async def call(
        self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Any:
        """Call ``app.mote`` with arguments; return its result or raise its typed error."""
        core = self._core
        ref = core.ref(name)
        timeout = core.timeout(timeout)
        data = encode_request(
            Call(list(args), kwargs, int(timeout * 1000)), core.bus.max_payload, name
        )
        reply = decode_reply(
            await core.request(ref, subjects.call(ref.app, ref.mote), data, timeout)
        )
        if isinstance(reply, Ok | Err):
            return raise_for(reply)
        raise BadMessage(f"{name} answered a single call with a batch")

    async def call_traced(
        self, name: str, /, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Served:
        """``call``, also saying which node and instance served it and what it cost.

        An error the mote raised (or a bad argument) comes back in ``Served.error``
        with who served it; an error on the way (no instance, a timeout) is raised."""
        core = self._core
        ref = core.ref(name)
        timeout = core.timeout(timeout)
        data = encode_request(
            Call(list(args), kwargs, int(timeout * 1000)), core.bus.max_payload, name
        )
        started = time.perf_counter()
        msg = await core.request_msg(
            ref, subjects.call(ref.app, ref.mote), data, timeout, headers=_TRACE
        )
        rtt = time.perf_counter() - started
        reply = decode_reply(bytes(msg.data))
        if not isinstance(reply, Ok | Err):
            raise BadMessage(f"{name} answered a single call with a batch")
        headers = msg.headers or {}
        value: Any = None
        error: MotesError | None = None
        try:
            value = raise_for(reply)
        except MotesError as exc:
            error = exc
        return Served(
            value=value,
            error=error,
            node=headers.get(TRACE_NODE, ""),
            instance=headers.get(TRACE_INSTANCE, ""),
            wall_s=_micros(headers.get(TRACE_WALL_US, "")) / 1e6,
            rtt_s=rtt,
            bytes_in=len(data),
            bytes_out=len(msg.data),
        )

    async def map(
        self,
        name: str,
        items: Iterable[Any] | AsyncIterable[Any],
        /,
        *,
        timeout: float | None = None,
        window: int = 16,
        return_exceptions: bool = False,
        durable: bool = False,
    ) -> AsyncIterator[Any]:
        """Call ``app.mote`` once per item, in parallel; yield results in input order.

        Items travel in batches, each sized to about 5 ms of the mote's measured work
        (from 1 to 512 items, at most 256 KiB; see ``_batches``), and up to ``window``
        batches are in flight at once, spread over the mote's instances.
        An item's error is raised when its turn comes, unless ``return_exceptions``.
        With ``durable``, every item is a durable call (see ``submit``): all are queued
        first, then results are yielded in input order as they are stored.
        """
        ref = self._core.ref(name)
        if durable:
            async for r in self._durable.map(ref, items, timeout, return_exceptions):
                yield r
            return
        timeout = self._core.timeout(timeout)
        limit = self._core.bus.max_payload
        sizer = BatchSizer()
        pending: deque[asyncio.Task[list[Ok | Err] | Exception]] = deque()

        async def results() -> list[Ok | Err]:
            got = await pending.popleft()
            if isinstance(got, Exception):  # the whole batch failed (a timeout, no instance)
                raise got
            return got

        async with owned_tasks() as tasks:
            try:
                async for batch in batches(items, name, limit, sizer):
                    send = outcome(self._send_batch(ref, batch, timeout, sizer))
                    pending.append(tasks.create_task(send))
                    while len(pending) >= window:
                        for r in await results():
                            yield item_result(r, return_exceptions)
                while pending:
                    for r in await results():
                        yield item_result(r, return_exceptions)
            finally:
                for task in pending:
                    task.cancel()

    async def _send_batch(
        self, ref: MoteRef, items: list[msgspec.Raw], timeout: float, sizer: BatchSizer
    ) -> list[Ok | Err]:
        data = encode_batch(items, int(timeout * 1000))
        msg = await self._core.request(ref, subjects.call(ref.app, ref.mote), data, timeout)
        reply = decode_reply(msg)
        if isinstance(reply, BatchReply):
            sizer.observe(len(items), reply.wall_us)
        return batch_results(reply, len(items))

    # --- actors ----------------------------------------------------------------------

    def actor(self, name: str, key: str) -> ActorRef:
        """A handle on the activation of actor ``app.Actor`` for ``key``."""
        if not isinstance(key, str) or not key:
            raise RequestError(f"actor key must be a non-empty string, not {key!r}")
        return ActorRef(self, self._core.ref(name), key)

    async def call_actor(
        self,
        ref: MoteRef,
        key: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Any:
        core = self._core
        spec = await core.spec(ref)
        if spec.kind != "actor":
            raise RequestError(f"{ref} is a function mote: use mesh.call({str(ref)!r}, ...)")
        timeout = core.timeout(timeout)
        subject = subjects.actor(ref.app, ref.mote, shard_of(key, spec.shards))
        name = f"{ref}.{method}"
        data = encode_request(
            ActorCall(key, method, list(args), kwargs, int(timeout * 1000)),
            core.bus.max_payload,
            name,
        )
        reply = decode_reply(await core.request(ref, subject, data, timeout))
        if isinstance(reply, Ok | Err):
            return raise_for(reply)
        raise BadMessage(f"{name} answered with a batch")

    # --- durable calls and flows ------------------------------------------------------

    async def submit(
        self,
        name: str,
        /,
        *args: Any,
        key: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> CallHandle:
        """Queue a durable call to ``app.mote``; ``await handle.result()`` gives its result.

        The call survives crashes: it is redelivered until a result is stored, and runs
        at most once per ``key`` as far as results go (the same key submitted again gets
        the first call's result). ``timeout`` is the call's deadline once it runs.
        """
        ref = self._core.ref(name)
        return await self._durable.submit(ref, list(args), kwargs, key, timeout)

    def handle(self, name: str, call_id: str) -> CallHandle:
        """The handle of a durable call submitted earlier (here or elsewhere), by its id."""
        return self._durable.handle(self._core.ref(name), call_id)

    def flow(self, name: str) -> Flow:
        """The flow ``app.flow``: ``await mesh.calls.flow("app.ingest").submit(item)``."""
        return Flow(self._durable, MoteRef.parse(name))

    async def set_flow(self, name: str, stages: list[str]) -> int:
        """Rewire flow ``app.flow`` to ``stages`` at once, no redeploy; returns its revision.

        An item in flight moves on by the new wiring after the stage it is in; if that
        stage is no longer in the flow, it finishes the path it was on.
        """
        return await self._durable.set_flow(MoteRef.parse(name), stages)

    async def flows(self) -> list[FlowDef]:
        """Every flow's current wiring."""
        return await self._durable.flows()

    async def queue(self) -> list[QueueStat]:
        """Durable calls waiting or running, per mote, with the oldest one's age."""
        return await self._durable.queue()

    @property
    def durable(self) -> Durable:
        return self._durable


class ActorRef:
    """``await ref.method(*args)`` calls ``method`` on the actor activation for one key."""

    def __init__(self, calls: Calls, ref: MoteRef, key: str) -> None:
        self._calls = calls
        self._ref = ref
        self._key = key

    def __repr__(self) -> str:
        return f"<actor {self._ref}[{self._key!r}]>"

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        async def invoke(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            return await self._calls.call_actor(self._ref, self._key, method, args, kwargs, timeout)

        invoke.__name__ = method
        return invoke
