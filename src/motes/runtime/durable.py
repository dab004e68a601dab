"""Durable calls inside a worker: take them from the work queue, store each result, then ack.

Every instance of a function mote pulls from one JetStream consumer shared by all of
them (``d~{app}~{mote}`` on stream ``MOTES_CALLS``). For each message:

1. a *redelivered* message (``deliveries`` > 1) whose call id already has a stored
   result is acked and skipped (effectively once). A first delivery is not looked up:
   the stream drops a repeated publish of a call id within its duplicate window, and the
   client looks for a keyed call's result before submitting it, so a first delivery with
   a result is a rare late repeat, which step 2 answers with the first result anyway;
2. otherwise the mote runs (``in_progress`` keeps the message ours while it does), and
   its ``Ok``/``Err`` is stored with a KV *create*: if another instance stored one first,
   that first result stands (and is the one forwarded);
3. a flow item is then forwarded to its next stage (see ``next_stage``), or its result
   stored as the flow's result if this was the last stage;
4. only then is the message acked. A crash anywhere before the ack means redelivery,
   and step 1 makes the repeat harmless.

A mote that raises has *completed*: its ``Err`` is the stored result. Bytes that are not
a ``DurableCall`` are terminated (never redelivered) and logged.

Each message is served by its own task, so the results of one fetch are stored (and
acked) together, pipelined on the connection. An async mote runs as many calls at once
as its slots allow. A sync mote runs one at a time, but takes as many messages per
fetch as it runs in about ``_BATCH_BUDGET_S`` (measured), and runs all those waiting in
one hop to its thread (``_Serial``): the round trips are paid per batch, not per call.
``backlog`` (the consumer's undelivered messages) is the instance's queue as the
autoscaler sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ..config import Timing
from ..errors import (
    BadMessage,
    Conflict,
    FatalError,
    PayloadTooLarge,
    RequestError,
    RetryableError,
)
from ..ids import check_name
from ..meter import CallMeter, Started
from ..sandbox import Sandbox
from ..wire import resources, subjects
from ..wire.bus import KV, Bus, JetMsg, PullConsumer
from ..wire.codec import decode, decode_reply, encode, encode_error, encode_value_reply
from ..wire.messages import DurableCall, Err, FlowDef, InstanceSpec, Ok

__all__ = ["DurableServer", "next_stage"]

log = logging.getLogger(__name__)

_RETRY_S = 0.1
_MAX_BATCH = 32
_BATCH_BUDGET_S = 0.01
"""A sync mote takes as many calls per fetch as it runs in about this long."""
_MAX_ACK_PENDING = 4096


def next_stage(
    current: list[str] | None, stage: str, path: list[str], done: list[str]
) -> tuple[str | None, list[str]]:
    """Where a flow item goes after ``stage``, and the path it carries from there.

    The *current* definition decides: the stage after ``stage`` in it. If ``stage`` is no
    longer in it (rewired away) or the flow is gone, the item follows ``path``: the rest
    of the definition it last moved under. Stages the item already ran are skipped, so
    a rewiring can never send an item round in a circle. ``(None, [])`` means: finished.
    """
    if current is not None and stage in current:
        rest = current[current.index(stage) + 1 :]
    else:
        rest = path
    seen = {*done, stage}
    rest = [s for s in rest if s not in seen]
    if not rest:
        return None, []
    return rest[0], rest[1:]


class DurableServer:
    """Serves one function mote instance's durable calls until ``stopping`` is set.

    ``slots`` (async motes) is the instance's concurrency limit, shared with its plain
    calls. Without it (sync motes, and async ones of concurrency 1) calls run one at a
    time; a sync mote's are batched through ``_Serial``. Every call goes through the
    instance's ``meter``, so draining waits for calls in hand.
    """

    def __init__(
        self,
        bus: Bus,
        spec: InstanceSpec,
        host: Sandbox,
        *,
        meter: CallMeter,
        timing: Timing,
        stopping: asyncio.Event,
        slots: asyncio.Semaphore | None,
    ) -> None:
        self.bus = bus
        self.spec = spec
        self.host = host
        self.meter = meter
        self.timing = timing
        self.app = spec.app
        self.mote = spec.mote
        self.qualname = f"{spec.app}.{spec.mote}"
        self.stopping = stopping
        # A sync mote holds up to a batch of messages; _Serial runs them one at a time.
        self._serial = _Serial(host) if slots is None and not host.is_async else None
        if slots is None:
            slots = asyncio.Semaphore(_MAX_BATCH if self._serial else 1)
        self.slots = slots
        self.backlog = 0
        """Messages of this mote's consumer not yet delivered, at the last fetch."""
        self._results: KV | None = None
        self._flows: KV | None = None

    # --- the fetch loop --------------------------------------------------------------

    async def run(self) -> None:
        """Pull and serve until stopped. Lattice trouble pauses fetching (and is retried);
        it never cancels the calls in hand, and never ends the worker."""
        sub: PullConsumer | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                delay = _RETRY_S
                while not self.stopping.is_set():
                    msgs: list[JetMsg] = []
                    try:
                        if sub is None:
                            sub = await self._subscribe()
                        taken = await self._take_slots()
                        try:
                            msgs = await sub.fetch(taken, timeout=self.timing.fetch_wait_s)
                        finally:
                            for _ in range(taken - len(msgs)):
                                self.slots.release()
                        self.backlog = msgs[-1].pending if msgs else 0
                        delay = _RETRY_S
                    except (RetryableError, OSError) as exc:
                        log.warning("%s: durable calls paused: %s; retrying", self.qualname, exc)
                        if sub is not None:
                            await sub.close()
                        sub = None
                        await self._pause(delay)
                        delay = min(delay * 2, 5.0)
                    for msg in msgs:
                        # Begun before the task starts: a drain now waits for it.
                        started = self.meter.begin(bytes_in=len(msg.data))
                        tg.create_task(self._one(msg, started))
        finally:
            # Also when cancelled: a pull subscription left behind stalls the connection's
            # drain at exit (late status messages nobody reads).
            if sub is not None:
                await sub.close()

    async def _subscribe(self) -> PullConsumer:
        self._results = await self.bus.kv(resources.RESULTS)
        self._flows = await self.bus.kv(resources.FLOWS)
        return await self.bus.pull(
            resources.CALLS,
            durable=subjects.durable_consumer(self.app, self.mote),
            subject=subjects.durable(self.app, self.mote),
            ack_wait=self.timing.ack_wait_s,
            max_ack_pending=_MAX_ACK_PENDING,
        )

    async def _pause(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self.stopping.wait()
        except TimeoutError:
            pass

    async def _take_slots(self) -> int:
        """Wait for one free slot, then take up to a batch of any others free right now
        (for a sync mote, as many as it runs in about ``_BATCH_BUDGET_S``)."""
        await self.slots.acquire()
        taken = 1
        limit = self._serial.fit() if self._serial is not None else _MAX_BATCH
        while taken < limit and not self.slots.locked():
            await self.slots.acquire()
            taken += 1
        return taken

    # --- one message -----------------------------------------------------------------

    async def _one(self, msg: JetMsg, started: Started) -> None:
        slot = _Slot(self.slots)
        reply: list[Ok | Err] = []
        try:
            async with _settled(msg, self.qualname):
                await self._handle(msg, slot, reply)
        finally:
            slot.release()
            self.meter.end(started, reply[0] if reply else None, fuel=self.host.take_fuel())

    async def _handle(self, msg: JetMsg, slot: _Slot, ran: list[Ok | Err]) -> None:
        assert self._results is not None
        try:
            call = _checked(decode(msg.data, DurableCall))
        except (BadMessage, RequestError) as exc:
            log.error("%s: dropping a malformed durable call: %s", self.qualname, exc)
            self.meter.failed()
            await msg.term()
            return
        token = subjects.call_token(call.call_id)
        if call.flow:
            key = subjects.stage_result_key(self.app, call.flow, self.mote, token)
        else:
            key = subjects.call_result_key(self.app, self.mote, token)
        stored = await self._stored(key) if msg.deliveries > 1 else None
        if stored is None:
            reply = await self._run(msg, call)
            # The slot bounds running calls; storing and acking overlap the next one.
            slot.release()
            ran.append(reply)
            stored = await self._store(key, self._encode(reply))
        if call.flow:
            await self._forward(call, token, stored)
        await msg.ack()

    async def _run(self, msg: JetMsg, call: DurableCall) -> Ok | Err:
        """Invoke the mote, telling JetStream it is still in progress while it runs."""
        if self._serial is not None:
            work = self._serial.invoke(call)
        else:
            work = self.host.invoke(call.args, call.kwargs, call.timeout_ms, offload=True)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(work)
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.timing.ack_wait_s / 2)
                if done:
                    break
                try:
                    await msg.in_progress()
                except RetryableError as exc:  # the call goes on; at worst it is redelivered
                    log.debug("%s: in progress: %s", self.qualname, exc)
        return task.result()

    def _encode(self, reply: Ok | Err) -> bytes:
        if isinstance(reply, Ok):
            return encode_value_reply(reply.value, self.bus.max_payload, self.qualname)
        return encode(reply)

    async def _stored(self, key: str) -> bytes | None:
        assert self._results is not None
        entry = await self._results.get(key)
        return (entry.value or None) if entry is not None else None

    async def _store(self, key: str, data: bytes) -> bytes:
        """Store a result unless one is there already; return the one that stands."""
        assert self._results is not None
        try:
            await self._results.create(key, data)
            return data
        except Conflict:
            first = await self._stored(key)
            return first if first is not None else data

    # --- flows -----------------------------------------------------------------------

    async def _forward(self, call: DurableCall, token: str, stored: bytes) -> None:
        """Send a flow item on to its next stage, or store it as the flow's result."""
        reply = decode_reply(stored)
        if not isinstance(reply, Ok | Err):
            raise BadMessage(f"stored result of {call.call_id!r} is a batch reply")
        nxt: str | None = None
        path: list[str] = []
        if isinstance(reply, Ok):
            current = await self._flow_def(call.flow)
            nxt, path = next_stage(current, self.mote, call.path, call.done)
        if nxt is None or isinstance(reply, Err):  # the last stage, or a failed one
            await self._store(subjects.flow_result_key(self.app, call.flow, token), stored)
            return
        onward = DurableCall(
            call.call_id,
            [reply.value],
            {},
            call.timeout_ms,
            flow=call.flow,
            path=path,
            done=[*call.done, self.mote],
        )
        data = encode(onward)
        if len(data) > self.bus.max_payload:
            err = PayloadTooLarge(
                f"the result of {self.qualname} for flow {call.flow}",
                len(data),
                self.bus.max_payload,
            )
            await self._store(
                subjects.flow_result_key(self.app, call.flow, token), encode_error(err)
            )
            return
        # The message id makes a repeat of this forward (after a crash before our ack) a
        # no-op on the stream: the next stage sees the item once.
        await self.bus.publish_durable(
            subjects.durable(self.app, nxt),
            data,
            msg_id=subjects.stage_result_key(self.app, call.flow, nxt, token),
        )

    async def _flow_def(self, flow: str) -> list[str] | None:
        """The flow's current stages, read for every item: a rewiring applies at once."""
        assert self._flows is not None
        entry = await self._flows.get(subjects.flow_kv_key(self.app, flow))
        if entry is None or not entry.value:
            return None
        try:
            return decode(entry.value, FlowDef).stages
        except BadMessage as exc:
            log.error("%s: unreadable definition of flow %s: %s", self.qualname, flow, exc)
            return None


def _checked(call: DurableCall) -> DurableCall:
    """A call whose names can become subjects and keys; RequestError otherwise."""
    if not call.call_id or len(call.call_id) > subjects.MAX_CALL_ID:
        raise BadMessage(f"call id of {len(call.call_id)} characters")
    for name in ([call.flow] if call.flow else []) + call.path + call.done:
        check_name("flow or stage", name)
    return call


class _Serial:
    """A sync mote's durable calls, run one after another off the event loop: all those
    waiting when the mote comes free go to its thread in one hop (``invoke_batch``)."""

    def __init__(self, host: Sandbox) -> None:
        self._host = host
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[DurableCall, asyncio.Future[Ok | Err]]] = []
        self._per_call_s: float | None = None
        """Measured run time per call (a moving average); None before the first."""

    def fit(self) -> int:
        """Calls to take at once: as many as run in about ``_BATCH_BUDGET_S``; one until
        a call has been timed, so a slow mote never holds calls others could run."""
        if self._per_call_s is None:
            return 1
        return max(1, min(_MAX_BATCH, int(_BATCH_BUDGET_S / max(self._per_call_s, 1e-6))))

    async def invoke(self, call: DurableCall) -> Ok | Err:
        fut: asyncio.Future[Ok | Err] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, fut))
        try:
            async with self._lock:
                if not fut.done():  # else an earlier holder ran it with its batch
                    await self._run_waiting()
        except asyncio.CancelledError:
            if not fut.cancel() and not fut.cancelled():
                fut.exception()  # settled by our own batch; nobody waits for it now
            raise
        return fut.result()

    async def _run_waiting(self) -> None:
        batch, self._waiting = self._waiting, []
        calls = [c for c, _ in batch]
        replies: list[Ok | Err] = []
        failure: Exception = FatalError("the batch this call ran in did not finish")
        started = time.perf_counter()
        try:
            replies = await self._host.invoke_batch(
                [c.args for c in calls],
                max(c.timeout_ms for c in calls),
                kwargs=[c.kwargs for c in calls],
                offload=True,
            )
        except Exception as exc:  # a bug (ours or the host's): every message goes back
            failure = exc
        finally:
            # Every waiter gets its reply; if the batch did not finish, an error that
            # makes its message go back to the queue (see ``_settled``).
            for i, (_, fut) in enumerate(batch):
                if fut.done():
                    continue
                if i < len(replies):
                    fut.set_result(replies[i])
                else:
                    fut.set_exception(failure)
        took = (time.perf_counter() - started) / len(batch)
        last = self._per_call_s
        self._per_call_s = took if last is None else 0.7 * last + 0.3 * took


class _Slot:
    """One unit of an instance's concurrency, released exactly once."""

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self._sem = sem
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._sem.release()


@asynccontextmanager
async def _settled(msg: JetMsg, qualname: str) -> AsyncIterator[None]:
    """Nak the message if serving it fails, so it is redelivered instead of lost.

    A bug or a lattice error costs one redelivery (after a second), never the worker.
    Cancellation (the worker stopped past its grace) naks at once and propagates.
    """
    try:
        yield
    except asyncio.CancelledError:
        await _nak(msg, 0)
        raise
    except Exception:
        log.exception("%s: serving a durable call failed; it will be redelivered", qualname)
        await _nak(msg, 1.0)


async def _nak(msg: JetMsg, delay: float) -> None:
    try:
        await msg.nak(delay)
    except RetryableError as exc:
        log.debug("nak: %s (the ack wait redelivers it)", exc)
