"""Durable calls and flows from the client: submit, wait for stored results, see queues.

A durable call is one ``DurableCall`` message on the ``MOTES_CALLS`` work queue, subject
``motes.durable.{app}.{mote}``. Its ``Nats-Msg-Id`` is its result key, so the server
drops a repeat of the same call id within the duplicate window; after that, workers
find the stored result and do not run it again. The result lives in the
``motes_results`` KV bucket, where ``CallHandle.result`` watches for it: the caller may
go away and come back (``Mesh.handle``), and a worker that dies mid-call only delays it.

Flows are durable calls whose worker forwards each result to the next stage itself; the
client puts an item in at the first stage and watches for the flow's result.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable
from dataclasses import dataclass
from typing import Any

from ..app.app import check_flow
from ..errors import (
    BadMessage,
    CallTimeout,
    EncodeError,
    NoInstance,
    RequestError,
    UnknownFlow,
)
from ..ids import MoteRef
from ..wire import resources, subjects
from ..wire.bus import KV, Watch
from ..wire.codec import check_size, decode, decode_reply, encode, encode_request, raise_for
from ..wire.messages import AppRecord, DurableCall, Err, FlowDef, MoteSpec, Ok
from ._core import Core
from ._items import aiter_of, item_result

__all__ = ["CallHandle", "Durable", "Flow", "QueueStat"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStat:
    """Durable calls of one mote that have no stored result yet."""

    mote: str
    depth: int
    """Calls in the queue: waiting, or running on an instance."""
    running: int
    """Calls an instance holds right now (delivered, not yet acked)."""
    oldest_s: float
    """Age of the oldest call in the queue, in seconds."""


class CallHandle:
    """A submitted durable call or flow item: ``await handle.result()``.

    The call runs whether or not anyone waits; ``id`` names it, and
    ``mesh.handle(name, id)`` gets the handle back from anywhere.
    """

    def __init__(self, durable: Durable, name: str, call_id: str, key: str, wake: list[MoteRef]):
        self._durable = durable
        self.name = name
        self.id = call_id
        self._key = key
        self._wake = wake

    def __repr__(self) -> str:
        return f"<durable call {self.name} {self.id!r}>"

    async def done(self) -> bool:
        """Whether the result is stored (the call completed, with a value or an error)."""
        return await self._durable.stored(self._key) is not None

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the stored result; return its value or raise its typed error.

        ``timeout`` bounds the wait only (CallTimeout); the call stays queued. None waits
        as long as it takes.
        """
        kv = await self._durable.results()
        try:
            async with asyncio.timeout(timeout):
                # One read answers a finished call; only a pending one needs a watcher.
                data = await self._durable.stored(self._key) or await self._wait(kv)
        except TimeoutError:
            raise CallTimeout(self.name, timeout or 0) from None
        return _reply_value(data)

    async def _wait(self, kv: KV) -> bytes:
        async with await kv.watch(self._key) as watch:
            while True:
                entry = await watch.next(self._durable.wake_s)
                if entry is None:
                    await self._durable.wake(self._wake)
                elif entry.value:
                    return entry.value


class Flow:
    """A deployed flow: ``await flow.submit(item)`` puts an item in at the first stage."""

    def __init__(self, durable: Durable, ref: MoteRef) -> None:
        self._durable = durable
        self.app = ref.app
        self.name = ref.mote
        self._ref = ref

    def __repr__(self) -> str:
        return f"<flow {self._ref}>"

    async def stages(self) -> list[str]:
        """The flow's current wiring."""
        return (await self._durable.flow_def(self._ref)).stages

    def handle(self, item_id: str) -> CallHandle:
        """The handle of an item submitted earlier, by its id."""
        return self._durable.handle(self._ref, item_id, flow=True)

    async def submit(
        self, item: Any, *, key: str | None = None, timeout: float | None = None
    ) -> CallHandle:
        """Send ``item`` through the flow; the handle's result is the last stage's result.

        ``key`` makes the submission idempotent, as for ``Mesh.submit``; ``timeout`` is
        each stage's deadline.
        """
        return await self._durable.submit_item(self._ref, item, key, timeout)


class Durable:
    """The client's durable-call machinery; ``Mesh`` delegates to it."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.bus = core.bus
        self.call_timeout_s = core.timing.call_timeout_s
        self.wake_s = core.timing.wake_s
        """While a caller waits, how often it reminds the scheduler that a min=0 mote
        has work."""
        self._woken: dict[MoteRef, float] = {}

    async def _spec(self, ref: MoteRef) -> MoteSpec:
        return await self.core.spec(ref)

    async def _app(self, name: str) -> AppRecord | None:
        return await self.core.app(name)

    async def results(self) -> KV:
        return await self.bus.kv(resources.RESULTS)

    async def stored(self, key: str) -> bytes | None:
        entry = await (await self.results()).get(key)
        return (entry.value or None) if entry is not None else None

    # --- calls -------------------------------------------------------------------------

    async def submit(
        self,
        ref: MoteRef,
        args: list[Any],
        kwargs: dict[str, Any],
        key: str | None,
        timeout: float | None,
    ) -> CallHandle:
        await self._function_spec(ref)
        call_id = _call_id(key)
        rkey = subjects.call_result_key(ref.app, ref.mote, subjects.call_token(call_id))
        handle = CallHandle(self, str(ref), call_id, rkey, [ref])
        if key is not None and await self.stored(rkey) is not None:
            return handle  # done before: the stored result answers, nothing runs again
        call = DurableCall(call_id, args, kwargs, self._timeout_ms(timeout))
        data = encode_request(call, self.bus.max_payload, str(ref))
        await self._publish(subjects.durable(ref.app, ref.mote), data, rkey)
        await self.wake([ref])
        return handle

    def handle(self, ref: MoteRef, call_id: str, *, flow: bool = False) -> CallHandle:
        """A handle on an earlier submission, by its id."""
        token = subjects.call_token(call_id)
        if flow:
            key = subjects.flow_result_key(ref.app, ref.mote, token)
        else:
            key = subjects.call_result_key(ref.app, ref.mote, token)
        return CallHandle(self, str(ref), call_id, key, [] if flow else [ref])

    async def map(
        self,
        ref: MoteRef,
        items: Iterable[Any] | AsyncIterable[Any],
        timeout: float | None,
        return_exceptions: bool,
    ) -> AsyncIterator[Any]:
        """Submit every item as a durable call, then yield the results in input order."""
        await self._function_spec(ref)
        batch = uuid.uuid4().hex
        timeout_ms = self._timeout_ms(timeout)
        subject = subjects.durable(ref.app, ref.mote)
        limit = self.bus.max_payload
        kv = await self.results()
        # Watch before publishing: every result of this batch is stored after it starts.
        watch: Watch = await kv.watch(subjects.call_results(ref.app, ref.mote, batch))
        async with watch:
            await self.bus.ensure_stream(resources.CALLS)
            acks: list[Awaitable[int]] = []
            n = 0
            async for item in aiter_of(items):
                call_id = f"{batch}.{n}"
                data = _encode_item(DurableCall(call_id, [item], {}, timeout_ms), n, ref, limit)
                msg_id = subjects.call_result_key(ref.app, ref.mote, call_id)
                acks.append(await self.bus.publish_durable_nowait(subject, data, msg_id=msg_id))
                n += 1
            await asyncio.gather(*acks)
            if n:
                await self.wake([ref])
            got: dict[int, bytes] = {}
            nxt = 0
            while nxt < n:
                entry = await watch.next(self.wake_s)
                if entry is None:
                    await self.wake([ref])
                    continue
                if not entry.value:
                    continue
                got[int(entry.key.rsplit(".", 1)[1])] = entry.value
                while nxt in got:
                    yield item_result(_stored_reply(got.pop(nxt)), return_exceptions)
                    nxt += 1

    async def _function_spec(self, ref: MoteRef) -> MoteSpec:
        spec = await self._spec(ref)  # UnknownMote if no deployed app declares it
        if spec.kind == "actor":
            raise RequestError(f"{ref} is an actor; durable calls go to function motes")
        return spec

    def _timeout_ms(self, timeout: float | None) -> int:
        return int((self.call_timeout_s if timeout is None else timeout) * 1000)

    async def _publish(self, subject: str, data: bytes, msg_id: str) -> None:
        await self.bus.ensure_stream(resources.CALLS)
        await self.bus.publish_durable(subject, data, msg_id=msg_id)

    async def wake(self, refs: list[MoteRef]) -> None:
        """Ask the scheduler to start min=0 motes that now have queued calls.

        At most once per ``_WAKE_EVERY_S`` per mote. A mote no node can run is not an
        error here: its calls stay queued until one can (``motes queue``, ``motes why``).
        """
        now = time.monotonic()
        for ref in refs:
            last = self._woken.get(ref)
            if last is not None and now - last < self.wake_s:
                continue
            spec = await self._spec(ref)
            if spec.min > 0:
                continue
            self._woken[ref] = now
            try:
                await self.core.demand(ref)
            except NoInstance as exc:
                log.info("durable calls to %s wait: %s", ref, exc)

    # --- flows -------------------------------------------------------------------------

    async def flow_def(self, ref: MoteRef) -> FlowDef:
        kv = await self.bus.kv(resources.FLOWS)
        entry = await kv.get(subjects.flow_kv_key(ref.app, ref.mote))
        if entry is None or not entry.value:
            record = await self._app(ref.app)
            known = [f"{ref.app}.{f}" for f in record.flows] if record else None
            raise UnknownFlow(str(ref), known)
        return decode(entry.value, FlowDef)

    async def submit_item(
        self, ref: MoteRef, item: Any, key: str | None, timeout: float | None
    ) -> CallHandle:
        flow = await self.flow_def(ref)
        call_id = _call_id(key)
        token = subjects.call_token(call_id)
        stages = [MoteRef(ref.app, s) for s in flow.stages]
        rkey = subjects.flow_result_key(ref.app, flow.name, token)
        handle = CallHandle(self, str(ref), call_id, rkey, stages)
        if key is not None and await self.stored(rkey) is not None:
            return handle
        first, path = flow.stages[0], flow.stages[1:]
        call = DurableCall(
            call_id, [item], {}, self._timeout_ms(timeout), flow=flow.name, path=path
        )
        data = encode_request(call, self.bus.max_payload, f"flow {ref}")
        msg_id = subjects.stage_result_key(ref.app, flow.name, first, token)
        await self._publish(subjects.durable(ref.app, first), data, msg_id)
        await self.wake(stages)
        return handle

    async def set_flow(self, ref: MoteRef, stages: list[str]) -> int:
        """Rewire a deployed flow; items in flight take the new path from their next hop."""
        await self.flow_def(ref)  # UnknownFlow: rewiring never creates a flow by a typo
        record = await self._app(ref.app)
        if record is None:
            raise UnknownFlow(str(ref))
        kinds = {m.name: m.kind for m in record.motes}
        stages = check_flow(ref.app, ref.mote, list(stages), kinds)
        flow = FlowDef(app=ref.app, name=ref.mote, stages=stages, updated_at=time.time())
        kv = await self.bus.kv(resources.FLOWS)
        return int(await kv.put(subjects.flow_kv_key(ref.app, ref.mote), encode(flow)))

    async def flows(self) -> list[FlowDef]:
        kv = await self.bus.kv(resources.FLOWS)
        defs = [decode(e.value or b"", FlowDef) for e in (await kv.items()).values()]
        return sorted(defs, key=lambda d: (d.app, d.name))

    async def write_flows(self, record: AppRecord, previous: AppRecord | None) -> None:
        """On deploy: store each declared flow's wiring, unless it is unchanged since the
        last deploy (then a rewiring made with ``motes flow set`` stays); drop flows
        the app no longer declares."""
        before = previous.flows if previous else {}
        if not record.flows and not before:
            return
        kv = await self.bus.kv(resources.FLOWS)
        for name, stages in record.flows.items():
            key = subjects.flow_kv_key(record.name, name)
            exists = await kv.get(key) is not None
            if exists and before.get(name) == stages:
                continue
            flow = FlowDef(app=record.name, name=name, stages=stages, updated_at=time.time())
            await kv.put(key, encode(flow))
        for name in set(before) - set(record.flows):
            await kv.delete(subjects.flow_kv_key(record.name, name))

    # --- queues ------------------------------------------------------------------------

    async def queue(self) -> list[QueueStat]:
        """Per mote: calls queued or running, how many are running, the oldest one's age."""
        state = await self.bus.stream_state(subjects.STREAM_CALLS, subjects.DURABLE_ALL)
        if state is None:
            return []  # no durable call was ever made
        now = time.time()
        out: list[QueueStat] = []
        for subject, depth in sorted(state.subjects.items()):
            parsed = subjects.parse_durable(subject)
            if parsed is None or depth <= 0:
                continue
            app, mote = parsed
            first = await self.bus.stream_first(subjects.STREAM_CALLS, subject)
            if first is None:
                continue  # drained since the stream state
            oldest = max(0.0, now - first.time)
            running = await self.bus.consumer_pending(
                subjects.STREAM_CALLS, subjects.durable_consumer(app, mote)
            )
            running = running or 0  # None: no instance has ever pulled from it
            out.append(
                QueueStat(mote=f"{app}.{mote}", depth=depth, running=running, oldest_s=oldest)
            )
        return out


def _call_id(key: str | None) -> str:
    if key is None:
        return uuid.uuid4().hex
    if not isinstance(key, str) or not key:
        raise RequestError(f"a durable call's key must be a non-empty string, not {key!r}")
    if len(key) > subjects.MAX_CALL_ID:
        raise RequestError(
            f"a durable call's key is {len(key)} characters; at most {subjects.MAX_CALL_ID}"
            " (use a hash of a longer one)"
        )
    return key


def _encode_item(call: DurableCall, index: int, ref: MoteRef, limit: int) -> bytes:
    try:
        data = encode(call)
    except (TypeError, ValueError, OverflowError) as exc:
        item = call.args[0]
        raise EncodeError(f"item {index}", type(item).__name__, str(exc)) from None
    return check_size(data, limit, f"item {index} of the durable map over {ref}")


def _stored_reply(data: bytes) -> Ok | Err:
    reply = decode_reply(data)
    if not isinstance(reply, Ok | Err):
        raise BadMessage("a stored durable result is a batch reply")
    return reply


def _reply_value(data: bytes) -> Any:
    return raise_for(_stored_reply(data))
