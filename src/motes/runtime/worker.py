"""The worker process: one mote instance, talking to NATS directly (no hop via the agent).

A node agent starts workers warm (runtime imported, connected, waiting on
``motes.w.{wid}``) and later sends one a ``WorkerAssign``: the worker loads the bundle,
subscribes to the mote's subject, flushes (so the subscription is live on the server) and
only then answers ready. Malformed bytes on the mote's subject get an error reply; they
never crash the worker. A function mote's instance also serves its durable calls, pulled
from the work queue (``durable.py``).

Run as ``python -m motes.runtime.worker --url URL --wid WID --node NODE``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .._proc import run_main
from ..app.bundle import MANIFEST, find_app
from ..errors import BadApp, BadMessage, FatalError, MotesError
from ..wire import subjects
from ..wire.bus import Lattice, watch_key
from ..wire.codec import (
    decode,
    decode_request,
    encode,
    encode_error,
    encode_value_reply,
)
from ..wire.messages import (
    ActorCall,
    Batch,
    BatchReply,
    Call,
    Err,
    InstanceSpec,
    InstanceStatus,
    NodeAssignment,
    Ok,
    WorkerAssign,
    WorkerControl,
    WorkerQuery,
    WorkerStop,
)
from .actors import ActorHost
from .durable import DurableServer
from .handlers import Handler

__all__ = ["Worker", "main"]

log = logging.getLogger(__name__)
_DEFAULT_ASYNC_CONCURRENCY = 64
_STATUS_EVERY_S = 0.5


class Worker:
    """Serves one instance. ``run`` returns when the worker has been told to stop."""

    def __init__(self, lattice: Lattice, wid: str, node: str) -> None:
        self.lattice = lattice
        self.nc = lattice.nc
        self.wid = wid
        self.node = node
        self.spec: InstanceSpec | None = None
        self.state = "warm"
        self.inflight = 0
        self._peak = 0  # most calls held at once (running + queued) since the last report
        self.served = 0
        self.failed = 0
        self._subs: list[Subscription] = []
        self._stop = asyncio.Event()
        self._grace = 10.0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tg: asyncio.TaskGroup | None = None
        self._handler: Handler | None = None
        self._actors: ActorHost | None = None
        self._slots: asyncio.Semaphore | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            ctl = await self.nc.subscribe(subjects.worker(self.wid), cb=self._on_control)
            await self.nc.flush()
            tg.create_task(self._report_status())
            await self._stop.wait()
            self.state = "draining"
            # Drain, not unsubscribe: calls already delivered to us are served, not dropped.
            await asyncio.gather(*(_drain(sub) for sub in self._subs))
            try:
                async with asyncio.timeout(self._grace):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("%s: %d calls still running at stop", self.wid, self.inflight)
            await ctl.unsubscribe()
            self.state = "stopped"
            raise _Stopped
        # not reached: _Stopped ends the group

    def stop(self, grace: float = 10.0) -> None:
        self._grace = grace
        self._stop.set()

    async def _on_control(self, msg: Msg) -> None:
        try:
            # A Union is a valid msgspec type, but not a `type[T]` to mypy.
            ctl: WorkerControl = decode(msg.data, WorkerControl)  # type: ignore[arg-type]
        except BadMessage as exc:
            await self._respond(msg, encode_error(exc))
            return
        if isinstance(ctl, WorkerQuery):
            await self._respond(msg, encode(self.status()))
        elif isinstance(ctl, WorkerStop):
            await self._respond(msg, encode(Ok(None)))
            self.stop(ctl.grace_s)
        elif isinstance(ctl, WorkerAssign):
            try:
                await self._assign(ctl)
            except MotesError as exc:
                self.state = "failed"
                await self._respond(msg, encode_error(exc))
                self.stop(0)
                return
            await self._respond(msg, encode(Ok(None)))

    def status(self) -> InstanceStatus:
        spec = self.spec
        return InstanceStatus(
            iid=spec.iid if spec else "",
            app=spec.app if spec else "",
            mote=spec.mote if spec else "",
            digest=spec.digest if spec else "",
            node=self.node,
            state=self.state,
            pid=os.getpid(),
            inflight=self.inflight,
            queued=max(self._peak, self.inflight + self._queued()) - self.inflight,
            served=self.served,
            failed=self.failed,
        )

    async def _report_status(self) -> None:
        """Tell the agent our load twice a second while it changes (heartbeats, autoscaling)."""
        last: InstanceStatus | None = None
        while True:
            await asyncio.sleep(_STATUS_EVERY_S)
            if self.spec is None:
                continue
            now = self.status()
            self._peak = 0
            if now != last and not self.nc.is_closed:
                await self.nc.publish(subjects.instance_load(self.node), encode(now))
                last = now

    def _queued(self) -> int:
        return sum(sub.pending_msgs for sub in self._subs)

    # --- loading -------------------------------------------------------------------------

    async def _assign(self, assign: WorkerAssign) -> None:
        if self.spec is not None:
            raise BadApp(f"worker {self.wid} already serves {self.spec.iid}")
        spec = assign.spec
        self.spec = spec
        self.state = "loading"
        target = self._load_target(assign)
        qualname = f"{spec.app}.{spec.mote}"
        if spec.kind == "actor":
            kv = await self.lattice.kv(subjects.KV_ACTORS)
            self._actors = ActorHost(target, spec.app, spec.mote, self.node, kv)
            for shard in spec.shards:
                # A queue group: if two instances hold a shard for a moment, one gets each call.
                sub = await self.nc.subscribe(
                    subjects.actor(spec.app, spec.mote, shard),
                    queue=subjects.call_queue(spec.app, spec.mote),
                    cb=self._on_actor_call,
                )
                self._subs.append(sub)
        else:
            self._handler = Handler(target, qualname, self.node)
            limit = spec.concurrency or _DEFAULT_ASYNC_CONCURRENCY
            if self._handler.is_async and limit > 1:
                self._slots = asyncio.Semaphore(limit)  # else None: one call at a time, inline
            sub = await self.nc.subscribe(
                subjects.call(spec.app, spec.mote),
                queue=subjects.call_queue(spec.app, spec.mote),
                cb=self._on_call,
                pending_msgs_limit=1_000_000,
            )
            self._subs.append(sub)
            durable = DurableServer(
                self.lattice,
                spec,
                self._handler,
                stopping=self._stop,
                slots=self._slots,
                begin=self._begin,
                end=self._end,
                count=self._count,
            )
            assert self._tg is not None
            self._tg.create_task(durable.run())
        await self.nc.flush()
        assert self._tg is not None
        self._tg.create_task(self._fence(spec))
        self.state = "ready"
        print(f"serving {qualname} ({spec.digest[7:19]}) as {spec.iid}", flush=True)

    async def _fence(self, spec: InstanceSpec) -> None:
        """Stop serving once our node's assignment no longer lists this instance.

        The agent stops us too; this covers an agent that is hung or cut off while we are
        not: a node declared lost comes back to an assignment without us, and we go.
        """
        kv = await self.lattice.kv(subjects.KV_PLACE)
        async for value in watch_key(kv, self.node):
            try:
                listed = value is not None and any(
                    i.iid == spec.iid for i in decode(value, NodeAssignment).instances
                )
            except BadMessage:
                continue
            if not listed:
                print(f"{spec.iid} is no longer assigned here: draining", flush=True)
                self.stop()
                return

    def _load_target(self, assign: WorkerAssign) -> Any:
        spec = assign.spec
        check_requirements(Path(assign.bundle_dir))
        sys.path.insert(0, assign.bundle_dir)
        try:
            module = importlib.import_module(spec.module)
            app = find_app(module, spec.app)
            return app.target(spec.mote)
        except MotesError:
            raise
        except Exception as exc:
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            raise BadApp(
                f"loading {spec.app}.{spec.mote} failed: {type(exc).__name__}: {exc}"
            ) from None

    # --- serving -------------------------------------------------------------------------

    async def _on_call(self, msg: Msg) -> None:
        """The subscription's callback: nats-py awaits it before delivering the next message."""
        assert self._tg is not None
        self._begin()
        if self._slots is None:
            try:
                await self._guard(msg, self._serve_call)
            finally:
                self._end()
            return
        await self._slots.acquire()  # at capacity, stop reading: calls queue at the server side
        self._tg.create_task(self._serve_call_then_release(msg))

    async def _serve_call_then_release(self, msg: Msg) -> None:
        assert self._slots is not None
        try:
            await self._guard(msg, self._serve_call)
        finally:
            self._slots.release()
            self._end()

    async def _guard(self, msg: Msg, serve: Callable[[Msg], Awaitable[None]]) -> None:
        """A bug in serving one call costs that call an error reply, never the worker."""
        try:
            await serve(msg)
        except Exception as exc:
            log.exception("%s: serving a call failed", self._qualname())
            self.failed += 1
            await self._respond(msg, encode_error(FatalError(f"worker {self.wid}: {exc!r}")))

    async def _serve_call(self, msg: Msg) -> None:
        assert self._handler is not None
        handler = self._handler
        try:
            req = decode_request(msg.data)
        except BadMessage as exc:
            self.failed += 1
            await self._respond(msg, encode_error(exc))
            return
        if isinstance(req, Call):
            reply = await handler.invoke(req.args, req.kwargs, req.timeout_ms)
            self._count(reply)
            await self._respond(msg, self._encode_reply(reply))
        elif isinstance(req, Batch):
            if handler.is_async:
                results = list(
                    await asyncio.gather(
                        *(handler.invoke(a, {}, req.timeout_ms) for a in req.items)
                    )
                )
            else:
                results = [handler.invoke_sync(a, {}) for a in req.items]
            for r in results:
                self._count(r)
            await self._respond(msg, self._encode_batch(results))
        else:
            self.failed += 1
            err = BadMessage(f"{handler.qualname} is not an actor: call it without a key")
            await self._respond(msg, encode_error(err))

    async def _on_actor_call(self, msg: Msg) -> None:
        assert self._actors is not None and self._tg is not None
        self._begin()
        self._tg.create_task(self._guard(msg, self._serve_actor))

    async def _serve_actor(self, msg: Msg) -> None:
        assert self._actors is not None
        try:
            try:
                req = decode_request(msg.data)
                if not isinstance(req, ActorCall):
                    raise BadMessage(f"{self._actors.qualname} is an actor: call it by key")
            except BadMessage as exc:
                self.failed += 1
                await self._respond(msg, encode_error(exc))
                return
            reply = await self._actors.call(req)
            self._count(reply)
            await self._respond(msg, self._encode_reply(reply))
        finally:
            self._end()

    def _begin(self) -> None:
        # The load is sampled here, as each call starts, not only when the status is taken:
        # a sync mote holds the event loop while it runs, and nats-py hands it the queued
        # calls one after another without yielding, so a status taken between calls would
        # always see an empty queue however long it is.
        self.inflight += 1
        self._peak = max(self._peak, self.inflight + self._queued())
        self._idle.clear()

    def _end(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    def _count(self, reply: Ok | Err) -> None:
        self.served += 1
        if isinstance(reply, Err):
            self.failed += 1

    def _encode_reply(self, reply: Ok | Err) -> bytes:
        if isinstance(reply, Ok):
            return encode_value_reply(reply.value, self.lattice.max_payload, self._qualname())
        return encode(reply)

    def _encode_batch(self, results: list[Ok | Err]) -> bytes:
        try:
            data = encode(BatchReply(results))
        except (TypeError, ValueError, OverflowError):
            # Find the unencodable results and turn just those into errors.
            fixed: list[Ok | Err] = []
            for r in results:
                try:
                    encode(r)
                    fixed.append(r)
                except (TypeError, ValueError, OverflowError):
                    fixed.append(decode(self._encode_reply(r), Err))
            data = encode(BatchReply(fixed))
        return data

    def _qualname(self) -> str:
        return f"{self.spec.app}.{self.spec.mote}" if self.spec else self.wid

    async def _respond(self, msg: Msg, data: bytes) -> None:
        if msg.reply and not self.nc.is_closed:
            limit = self.lattice.max_payload
            if len(data) > limit:
                data = encode_error(
                    BadMessage(f"reply of {len(data)} bytes exceeds the {limit}-byte limit")
                )
            await self.nc.publish(msg.reply, data)


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def check_requirements(bundle_dir: Path) -> None:
    """Fail the load, naming what is missing, if a declared requirement is not installed."""
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    missing: list[str] = []
    for req in manifest.get("requirements", []):
        m = _REQUIREMENT.match(req)
        if m is None:
            missing.append(f"{req} (unparseable)")
            continue
        name, spec = m.group(1), m.group(2).strip()
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
            continue
        if spec and not _satisfies(version, spec):
            missing.append(f"{req} (installed: {version})")
    if missing:
        raise BadApp(f"requirements not installed on this node: {', '.join(missing)}")


def _satisfies(version: str, spec: str) -> bool:
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
    except ImportError:  # without packaging, presence is all we can check
        return True
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return False


async def _drain(sub: Subscription) -> None:
    try:
        await sub.drain()
    except nats.errors.Error as exc:  # connection gone: nothing more will arrive anyway
        log.debug("drain: %s", exc)


class _Stopped(Exception):
    """Ends the worker's task group once draining is done."""


async def _main(url: str, wid: str, node: str) -> None:
    lattice = await Lattice.connect(url, name=f"worker {wid}")
    worker = Worker(lattice, wid, node)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    except* _Stopped:
        pass
    finally:
        await lattice.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="motes-worker")
    parser.add_argument("--url", required=True)
    parser.add_argument("--wid", required=True)
    parser.add_argument("--node", required=True)
    ns = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    run_main(_main(ns.url, ns.wid, ns.node))


if __name__ == "__main__":
    main()
