"""The worker process: the trusted shell around one mote instance's ``Sandbox``.

A node agent starts workers warm (runtime imported, connected, waiting on
``motes.w.{wid}``) and later sends one a ``WorkerAssign``. The shell then gives the
instance's user code its own configuration (``MOTES_CONFIG``: what a mote's own
``motes.connect()`` reads, scoped to the app, never the node's), has the host load the
bundle, subscribes to the mote's subject, flushes (so the subscription is live on the
server) and only then answers ready.

The shell owns everything that talks to the lattice: subscriptions (each read by a task
of the worker's TaskGroup), the durable consumer (``durable.py``), actor persistence
(``actors.py``), reply encoding and size checks, and the ``CallMeter`` every call path
goes through. Malformed bytes on the mote's subject get an error reply; they never crash
the worker.

Run as ``python -m motes.runtime.worker --config FILE --wid WID``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from .._proc import process_main
from ..config import Config, LatticeConfig, NodeConfig, load_config, write_config
from ..errors import BadApp, BadMessage, FatalError, MotesError, RetryableError
from ..meter import CallMeter, Started, peak_rss
from ..meter.power import PowerModel, detect_model
from ..sandbox import Sandbox, host_for
from ..wire import resources, subjects
from ..wire.bus import Bus, Message, Subscription
from ..wire.codec import decode, decode_request, encode, encode_error, encode_value_reply
from ..wire.messages import (
    TRACE_HEADER,
    TRACE_INSTANCE,
    TRACE_NODE,
    TRACE_WALL_US,
    ActorCall,
    Batch,
    BatchReply,
    Call,
    Err,
    InstanceSpec,
    InstanceStatus,
    MeterTotals,
    Ok,
    WorkerAssign,
    WorkerControl,
    WorkerQuery,
    WorkerStop,
)
from .actors import Actors
from .assignments import trusted_assignment
from .durable import DurableServer

__all__ = ["Worker", "WorkerState", "main"]

log = logging.getLogger(__name__)
_DEFAULT_ASYNC_CONCURRENCY = 64

_Serve = Callable[[Message], Awaitable[tuple[Ok | Err | None, int]]]
"""Serves one message: (the reply counted as served, or None; bytes sent back)."""


class WorkerState(enum.StrEnum):
    WARM = "warm"
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


class Worker:
    """Serves one instance. ``run`` returns when the worker has been told to stop."""

    def __init__(
        self,
        bus: Bus,
        config: Config,
        wid: str,
        *,
        hosts: Callable[[InstanceSpec, Path, NodeConfig, Sequence[str]], Sandbox] = host_for,
        mote_config: bool = True,
        stopping: asyncio.Event | None = None,
        connect: Callable[[LatticeConfig, str], Awaitable[Bus]] | None = None,
    ) -> None:
        """``hosts`` picks the Sandbox for an instance; ``mote_config``: give user code
        its own ``MOTES_CONFIG`` (off where user code shares a process with others, as in
        tests); ``stopping``: set it to drain (the process's signal handler does);
        ``connect``: opens the instance's own connection when its assignment brings a
        credential (an authenticated mesh): the warm connection only answers the agent."""
        self.bus = bus
        self.serving = bus
        """The connection the instance serves on (its own credential's, once assigned)."""
        self._connect = connect
        self.config = config
        self.timing = config.timing
        self.wid = wid
        self.node = config.node.id
        self.spec: InstanceSpec | None = None
        self.state = WorkerState.WARM
        self.meter = CallMeter(cpu=config.node.meter != "off")
        self.power: PowerModel = detect_model(
            idle_w=config.node.power_idle_w, max_w=config.node.power_max_w
        )
        self._hosts = hosts
        self._mote_config = mote_config
        self._subs: list[Subscription] = []
        self._stop = stopping or asyncio.Event()
        self._grace = config.timing.stop_grace_s
        self._tg: asyncio.TaskGroup | None = None
        self._host: Sandbox | None = None
        self._actors: Actors | None = None
        self._durable: DurableServer | None = None
        self._slots: asyncio.Semaphore | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, started: asyncio.Event | None = None) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                ctl = await self.bus.subscribe(subjects.worker(self.node, self.wid))
                tg.create_task(self._control(ctl))
                await self.bus.flush()
                tg.create_task(self._report_status())
                if started is not None:
                    started.set()
                await self._stop.wait()
                self.state = WorkerState.DRAINING
                # Drain, not unsubscribe: calls already delivered to us are served.
                await asyncio.gather(*(_drain(sub) for sub in self._subs))
                if not await self.meter.idle(self._grace):
                    log.warning("%s: %d calls still running at stop", self.wid, self.meter.inflight)
                await ctl.unsubscribe()
                self.state = WorkerState.STOPPED
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            if self._host is not None:
                await self._host.close()
            if self.serving is not self.bus:
                await self.serving.close()

    def stop(self, grace: float | None = None) -> None:
        if grace is not None:
            self._grace = grace
        self._stop.set()

    async def _control(self, sub: Subscription) -> None:
        async for msg in sub:
            await self._on_control(msg)

    async def _on_control(self, msg: Message) -> None:
        try:
            # A Union is a valid msgspec type, but not a `type[T]` to mypy.
            ctl: WorkerControl = decode(msg.data, WorkerControl)  # type: ignore[arg-type]
        except BadMessage as exc:
            await self._respond(msg, encode_error(exc))
            return
        if isinstance(ctl, WorkerQuery):
            await self._respond(msg, encode(self.status()), self.bus)
        elif isinstance(ctl, WorkerStop):
            await self._respond(msg, encode(Ok(None)), self.bus)
            self.stop(ctl.grace_s)
        elif isinstance(ctl, WorkerAssign):
            try:
                await self._assign(ctl)
            except MotesError as exc:
                self.state = WorkerState.FAILED
                await self._respond(msg, encode_error(exc), self.bus)
                self.stop(0)
                return
            await self._respond(msg, encode(Ok(None)), self.bus)

    def status(self) -> InstanceStatus:
        spec = self.spec
        queued = sum(sub.pending for sub in self._subs)
        if self._durable is not None:
            # Durable calls waiting in the stream are this mote's queue too. Every instance
            # sees the whole (shared) backlog, so the sum over instances overstates it; the
            # autoscaler's cap on each step (at most doubling) keeps that harmless.
            queued += self._durable.backlog
        usage = self.meter.usage
        return InstanceStatus(
            iid=spec.iid if spec else "",
            app=spec.app if spec else "",
            mote=spec.mote if spec else "",
            digest=spec.digest if spec else "",
            node=self.node,
            state=str(self.state),
            pid=os.getpid(),
            inflight=self.meter.inflight,
            queued=self.meter.take_peak(queued) - self.meter.inflight,
            served=usage.served,
            failed=usage.failed,
            latency=self.meter.latency(),
            meter=self.totals(),
        )

    def totals(self) -> MeterTotals | None:
        """What this instance's calls have used, with their estimated joules."""
        if not self.meter.cpu:
            return None
        usage = self.meter.usage
        energy = self.power.energy(usage.cpu_s)
        return MeterTotals(
            wall_s=usage.wall_s,
            cpu_user_s=usage.cpu_user_s,
            cpu_sys_s=usage.cpu_sys_s,
            peak_rss=peak_rss(),
            bytes_in=usage.bytes_in,
            bytes_out=usage.bytes_out,
            fuel=usage.fuel,
            joules=energy.joules,
            method=energy.method,
            band=energy.band,
        )

    async def _report_status(self) -> None:
        """Tell the agent our load while it changes (its heartbeats, the autoscaler)."""
        last: InstanceStatus | None = None
        while True:
            await asyncio.sleep(self.timing.status_s)
            if self.spec is None:
                continue
            now = self.status()
            if now != last and not self.bus.closed:
                try:
                    await self.bus.publish(subjects.instance_load(self.node), encode(now))
                except RetryableError as exc:
                    log.debug("status: %s", exc)
                last = now

    # --- loading -------------------------------------------------------------------------

    async def _assign(self, assign: WorkerAssign) -> None:
        if self.spec is not None:
            raise BadApp(f"worker {self.wid} already serves {self.spec.iid}")
        spec = assign.spec
        self.spec = spec
        self.state = WorkerState.LOADING
        if assign.credentials and self._connect is not None:
            own = dataclasses.replace(
                self.config.lattice, credentials=assign.credentials, inbox_prefix=assign.inbox
            )
            self.serving = await self._connect(own, f"instance {spec.iid}")
        if self._mote_config:
            self._give_mote_its_config(assign)
        hidden = [p for p in (self.config.node.home, str(self.config.home_path)) if p]
        bundle_dir = Path(assign.bundle_dir)
        node = dataclasses.replace(self.config.node, id=self.node)
        host = self._host = self._hosts(spec, bundle_dir, node, hidden)
        await host.load(bundle_dir, spec)
        assert self._tg is not None
        bus = self.serving
        if spec.kind == "actor":
            self._actors = Actors(host, spec.app, spec.mote, await bus.kv(resources.ACTORS))
            for shard in spec.shards:
                # A queue group: if two instances hold a shard for a moment, one gets each call.
                sub = await bus.subscribe(
                    subjects.actor(spec.app, spec.mote, shard),
                    queue=subjects.call_queue(spec.app, spec.mote),
                )
                self._subs.append(sub)
                self._tg.create_task(self._serve_actor_calls(sub))
        else:
            limit = spec.concurrency or _DEFAULT_ASYNC_CONCURRENCY
            if host.is_async and limit > 1:
                self._slots = asyncio.Semaphore(limit)  # else None: one call at a time, inline
            sub = await bus.subscribe(
                subjects.call(spec.app, spec.mote),
                queue=subjects.call_queue(spec.app, spec.mote),
                pending=1_000_000,
            )
            self._subs.append(sub)
            self._tg.create_task(self._serve_calls(sub))
            durable = self._durable = DurableServer(
                bus,
                spec,
                host,
                meter=self.meter,
                timing=self.timing,
                stopping=self._stop,
                slots=self._slots,
            )
            self._tg.create_task(durable.run())
        await bus.flush()
        self._tg.create_task(self._fence(spec))
        self.state = WorkerState.READY
        print(f"serving {spec.app}.{spec.mote} ({spec.digest[7:19]}) as {spec.iid}", flush=True)

    def _give_mote_its_config(self, assign: WorkerAssign) -> None:
        """What user code's own ``motes.connect()`` reads: this lattice as the app (the
        credential its deployer's grants allow, never the node's), this node's cache
        and shares (read-only), and the app's convergence secret for what it stores."""
        node = self.config.node
        lattice = self.config.lattice
        store = self.config.store
        if assign.app_credentials:
            lattice = dataclasses.replace(
                lattice,
                credentials=assign.app_credentials,
                identity="",
                inbox_prefix=assign.app_inbox,
            )
            store = dataclasses.replace(store, convergence=assign.convergence)
        mote = Config(
            home=node.home,
            lattice=lattice,
            timing=self.config.timing,
            node=dataclasses.replace(node, labels={}),
            store=store,
        )
        path = Path(node.home or ".") / "run" / f"{self.wid}.mote.json"
        os.environ["MOTES_CONFIG"] = str(write_config(mote, path))

    async def _fence(self, spec: InstanceSpec) -> None:
        """Stop serving once our node's assignment no longer lists this instance.

        The agent stops us too; this covers an agent that is hung or cut off while we are
        not: a node declared lost comes back to an assignment without us, and we go.
        """
        kv = await self.serving.kv(resources.PLACE)
        async with await kv.watch(self.node) as watch:
            async for entry in watch:
                if entry.value is None:
                    listed = False
                else:
                    assignment = await trusted_assignment(
                        self.serving, self.node, entry.value, self.timing.lease_ttl_s
                    )
                    if assignment is None:
                        continue
                    listed = any(i.iid == spec.iid for i in assignment.instances)
                if not listed:
                    print(f"{spec.iid} is no longer assigned here: draining", flush=True)
                    self.stop()
                    return

    # --- serving -------------------------------------------------------------------------

    async def _serve_calls(self, sub: Subscription) -> None:
        assert self._tg is not None
        meter = self.meter
        async for msg in sub:
            started = meter.begin(sub.pending, len(msg.data))
            if self._slots is None:
                await self._guard(msg, started, self._serve_call)
                continue
            await self._slots.acquire()  # at capacity, stop reading: calls queue at the server
            self._tg.create_task(self._serve_call_then_release(msg, started))

    async def _serve_call_then_release(self, msg: Message, started: Started) -> None:
        assert self._slots is not None
        try:
            await self._guard(msg, started, self._serve_call)
        finally:
            self._slots.release()

    async def _guard(self, msg: Message, started: Started, serve: _Serve) -> None:
        """A bug in serving one call costs that call an error reply, never the worker."""
        reply: Ok | Err | None = None
        out = 0
        try:
            reply, out = await serve(msg)
        except Exception as exc:
            log.exception("%s: serving a call failed", self._qualname())
            self.meter.failed()
            out = await self._respond(msg, encode_error(FatalError(f"worker {self.wid}: {exc!r}")))
        finally:
            fuel = self._host.take_fuel() if self._host is not None else 0
            self.meter.end(started, reply, out, fuel=fuel)

    async def _serve_call(self, msg: Message) -> tuple[Ok | Err | None, int]:
        host = self._host
        assert host is not None
        try:
            req = decode_request(msg.data)
        except BadMessage as exc:
            self.meter.failed()
            return None, await self._respond(msg, encode_error(exc))
        if isinstance(req, Call):
            if msg.headers is not None and TRACE_HEADER in msg.headers:
                return await self._serve_traced(msg, req)
            reply = await host.invoke(req.args, req.kwargs, req.timeout_ms)
            return reply, await self._respond(msg, self._encode_reply(reply))
        if isinstance(req, Batch):
            began = time.perf_counter()
            results = await host.invoke_batch(req.items, req.timeout_ms)
            wall_us = round((time.perf_counter() - began) * 1e6)
            for r in results:
                self.meter.count(r)
            return None, await self._respond(msg, self._encode_batch(results, wall_us))
        self.meter.failed()
        err = BadMessage(f"{self._qualname()} is not an actor: call it without a key")
        return None, await self._respond(msg, encode_error(err))

    async def _serve_traced(self, msg: Message, req: Call) -> tuple[Ok | Err | None, int]:
        """A call whose caller asked who served it (a computed cell): the reply's
        headers say which node and instance, and how long it took here."""
        assert self._host is not None and self.spec is not None
        started = time.perf_counter()
        reply = await self._host.invoke(req.args, req.kwargs, req.timeout_ms)
        data = self._encode_reply(reply)
        headers = {
            TRACE_NODE: self.node,
            TRACE_INSTANCE: self.spec.iid,
            TRACE_WALL_US: str(round((time.perf_counter() - started) * 1e6)),
        }
        return reply, await self._respond(msg, data, headers=headers)

    async def _serve_actor_calls(self, sub: Subscription) -> None:
        assert self._tg is not None
        async for msg in sub:
            started = self.meter.begin(sub.pending, len(msg.data))
            self._tg.create_task(self._guard(msg, started, self._serve_actor))

    async def _serve_actor(self, msg: Message) -> tuple[Ok | Err | None, int]:
        assert self._actors is not None
        try:
            req = decode_request(msg.data)
            if not isinstance(req, ActorCall):
                raise BadMessage(f"{self._actors.qualname} is an actor: call it by key")
        except BadMessage as exc:
            self.meter.failed()
            return None, await self._respond(msg, encode_error(exc))
        reply = await self._actors.call(req)
        return reply, await self._respond(msg, self._encode_reply(reply))

    def _encode_reply(self, reply: Ok | Err) -> bytes:
        if isinstance(reply, Ok):
            return encode_value_reply(reply.value, self.serving.max_payload, self._qualname())
        return encode(reply)

    def _encode_batch(self, results: list[Ok | Err], wall_us: int) -> bytes:
        try:
            data = encode(BatchReply(results, wall_us))
        except (TypeError, ValueError, OverflowError):
            # Find the unencodable results and turn just those into errors.
            fixed: list[Ok | Err] = []
            for r in results:
                try:
                    encode(r)
                    fixed.append(r)
                except (TypeError, ValueError, OverflowError):
                    fixed.append(decode(self._encode_reply(r), Err))
            data = encode(BatchReply(fixed, wall_us))
        return data

    def _qualname(self) -> str:
        return f"{self.spec.app}.{self.spec.mote}" if self.spec else self.wid

    async def _respond(
        self,
        msg: Message,
        data: bytes,
        bus: Bus | None = None,
        headers: dict[str, str] | None = None,
    ) -> int:
        """Reply (if the caller asked for one) on the connection it came by (the serving
        one, unless said); returns the bytes sent."""
        bus = bus or self.serving
        if not msg.reply or bus.closed:
            return 0
        limit = bus.max_payload
        if len(data) > limit:
            data = encode_error(
                BadMessage(f"reply of {len(data)} bytes exceeds the {limit}-byte limit")
            )
        try:
            await bus.publish(msg.reply, data, headers=headers)
        except RetryableError as exc:
            log.debug("reply to %s: %s", msg.subject, exc)
            return 0
        return len(data)


async def _drain(sub: Subscription) -> None:
    try:
        await sub.drain()
    except RetryableError as exc:  # connection gone: nothing more will arrive anyway
        log.debug("drain: %s", exc)


class _Stopped(Exception):
    """Ends the worker's task group once draining is done."""


async def _main(config: Config, wid: str, draining: asyncio.Event) -> None:
    from ..wire._nats import NatsBus

    bus = await NatsBus.connect(config.lattice, name=f"worker {wid}")

    async def connect(lattice: LatticeConfig, name: str) -> Bus:
        return await NatsBus.connect(lattice, name=name)

    try:
        await Worker(bus, config, wid, stopping=draining, connect=connect).run()
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="motes-worker")
    parser.add_argument("--config", required=True, help="the worker's settings (a 0600 file)")
    parser.add_argument("--wid", required=True)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    config = load_config(env={"MOTES_CONFIG": ns.config})
    process_main(lambda draining: _main(config, ns.wid, draining))


if __name__ == "__main__":
    main()
