"""The node agent: one per machine (or per ``motes node`` process on one box).

It announces the node (KV record + heartbeats), runs a scheduler candidate, keeps warm
workers, converges its workers on the node's assignment key (level-triggered: whatever
the key says now is what should run), restarts crashed instances with backoff, answers
mesh queries (nodes, ps) and ships worker output to the log stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.kv import KeyValue

from .. import __version__
from .._proc import die_with_parent
from ..app.bundle import extract_bundle
from ..config import Timing
from ..errors import BadMessage, MotesError
from ..identity import NodeKey
from ..scheduler.service import SchedulerService
from ..wire import subjects
from ..wire.bus import Lattice, watch_key
from ..wire.codec import decode, encode
from ..wire.messages import (
    AppRecord,
    Heartbeat,
    InstanceSpec,
    InstanceStatus,
    Load,
    NodeAssignment,
    NodeRecord,
    NodeStatus,
    Power,
)
from .inventory import detect_inventory, read_power
from .workers import WorkerProc, spawn_worker

__all__ = ["NodeAgent"]

log = logging.getLogger(__name__)
_MAX_BACKOFF_S = 10.0


@dataclass(eq=False)
class _Instance:
    spec: InstanceSpec
    state: str = "starting"
    worker: WorkerProc | None = None
    restarts: int = 0
    retry_at: float = 0.0
    detail: str = ""
    starting: bool = False


class NodeAgent:
    def __init__(
        self,
        lattice: Lattice,
        *,
        url: str,
        home: Path,
        name: str,
        labels: dict[str, str],
        timing: Timing,
    ) -> None:
        self.lattice = lattice
        self.url = url
        self.home = home
        self.name = name
        self.timing = timing
        self.key = NodeKey.provision(home / "node.key")  # node.pub: motes here learn our id
        self.id = self.key.id
        self.record = NodeRecord(
            id=self.id,
            name=name,
            public_key=self.key.public,
            host=socket.gethostname(),
            pid=os.getpid(),
            inventory=detect_inventory(),
            labels=labels,
            started_at=time.time(),
            version=__version__,
        )
        self.scheduler = SchedulerService(lattice, self.id, timing)
        self.instances: dict[str, _Instance] = {}
        self.warm: list[WorkerProc] = []
        self.loads: dict[str, InstanceStatus] = {}
        self.state = "starting"
        self.power = Power()
        self._desired: list[InstanceSpec] = []
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._bundle_locks: dict[str, asyncio.Lock] = {}
        self._filling = asyncio.Lock()
        self._spawning = asyncio.Semaphore(2)
        self._workers: set[WorkerProc] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._store: asyncio.subprocess.Process | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, started: asyncio.Event | None = None) -> None:
        self._store = await self._start_store()  # starts beside the agent's own start
        await self.lattice.ensure_log_stream()
        nodes = await self.lattice.kv(subjects.KV_NODES)
        nc = self.lattice.nc
        subs = [
            await nc.subscribe(subjects.CTL_NODES, cb=self._on_nodes),
            await nc.subscribe(subjects.CTL_PS, cb=self._on_ps),
            await nc.subscribe(subjects.instance_load(self.id), cb=self._on_load),
        ]
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await nodes.put(self.id, encode(self.record))
                tg.create_task(self._heartbeats())
                tg.create_task(self._follow_assignment())
                tg.create_task(self._prefetch_bundles())
                tg.create_task(self._converge())
                tg.create_task(self.scheduler.run())
                # Ready now: the warm pool fills in the background (a call that finds it
                # empty starts a worker itself).
                self._spawn(self._fill_warm_pool(), "warm pool")
                await self._store_ready()
                self.state = "ready"
                log.info("node %s (%s) ready", self.name, self.id)
                if started is not None:
                    started.set()
                await self._stop.wait()
                self.state = "draining"
                await self._shutdown(nodes)
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            await self._stop_store()
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except nats.errors.Error:
                    pass

    def stop(self) -> None:
        self._stop.set()

    async def _start_store(self) -> asyncio.subprocess.Process:
        """The node's store service, in its own process (see ``motes.store.service``)."""
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "motes.store.service",
            "--url",
            self.url,
            "--home",
            str(self.home),
            "--node",
            self.id,
            "--labels",
            json.dumps(self.record.labels),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent,
        )

    async def _store_ready(self) -> None:
        """Wait for the store service's "ready" line: a node is ready with its store."""
        assert self._store is not None and self._store.stdout is not None
        try:
            async with asyncio.timeout(self.timing.start_timeout_s):
                line = await self._store.stdout.readline()
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            log.error("the store service did not start (exit %s)", self._store.returncode)

    async def _stop_store(self) -> None:
        proc = self._store
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _shutdown(self, nodes: KeyValue) -> None:
        """Leave cleanly: withdraw the record (so the scheduler moves our work), stop workers."""
        try:
            await nodes.delete(self.id)
        except (nats.errors.Error, MotesError) as exc:
            log.warning("could not withdraw node record: %s", exc)
        await self._stop_store()
        async with self._filling:  # a warm-pool refill in progress finishes first
            pass
        # Every worker this agent started, whatever it was doing (warm, starting, serving,
        # retiring): none may outlive the node, and none may be left for PDEATHSIG.
        for _ in range(3):
            workers = [w for w in self._workers if w.alive]
            if not workers:
                break
            await asyncio.gather(*(w.stop(grace=5.0) for w in workers), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run a child task whose failure is logged, never fatal to the agent."""
        assert self._tg is not None
        wrapped = _logged(coro, what)
        try:
            self._tg.create_task(wrapped)
        except RuntimeError:  # the agent is shutting down: nothing new starts
            wrapped.close()
            coro.close()

    # --- announcing --------------------------------------------------------------------

    def load(self) -> Load:
        running = sum(1 for i in self.instances.values() if i.state == "ready")
        inflight = sum(s.inflight for s in self.loads.values())
        try:
            cpu = os.getloadavg()[0]
        except OSError:
            cpu = 0.0
        return Load(instances=running, inflight=inflight, cpu_load=round(cpu, 2))

    def heartbeat(self, seq: int) -> Heartbeat:
        ready = [iid for iid, i in self.instances.items() if i.state == "ready"]
        work = {
            iid: s.inflight + s.queued for iid, s in self.loads.items() if s.inflight + s.queued
        }
        return Heartbeat(
            node=self.id, seq=seq, load=self.load(), ready=ready, work=work, power=self.power
        )

    async def _heartbeats(self) -> None:
        seq = 0
        subject = subjects.heartbeat(self.id)
        while True:
            seq += 1
            if seq % 20 == 1:  # power changes slowly; /sys reads are cheap but not free
                self.power = _labelled_power(read_power(), self.record.labels)
            if self.lattice.nc.is_connected:
                await self.lattice.nc.publish(subject, encode(self.heartbeat(seq)))
            await asyncio.sleep(self.timing.heartbeat_s)

    async def _on_nodes(self, msg: Msg) -> None:
        if msg.reply:
            status = NodeStatus(
                record=self.record,
                state=self.state,
                load=self.load(),
                leader=self.scheduler.is_leader,
            )
            await self.lattice.nc.publish(msg.reply, encode(status))

    async def _on_ps(self, msg: Msg) -> None:
        if not msg.reply:
            return
        insts = list(self.instances.values())
        live = await asyncio.gather(
            *(
                i.worker.query(self.timing.scatter_s / 2)
                if i.worker is not None and i.state == "ready"
                else _none()
                for i in insts
            )
        )
        out = [self._status(i, s) for i, s in zip(insts, live, strict=False)]
        await self.lattice.nc.publish(msg.reply, encode(out))

    def _status(self, inst: _Instance, live: InstanceStatus | None) -> InstanceStatus:
        s = inst.spec
        return InstanceStatus(
            iid=s.iid,
            app=s.app,
            mote=s.mote,
            digest=s.digest,
            node=self.id,
            state=inst.state,
            pid=inst.worker.pid if inst.worker else 0,
            inflight=live.inflight if live else 0,
            served=live.served if live else 0,
            failed=live.failed if live else 0,
            restarts=inst.restarts,
            detail=inst.detail,
        )

    async def _on_load(self, msg: Msg) -> None:
        try:
            status = decode(msg.data, InstanceStatus)
        except BadMessage:
            return
        if status.iid in self.instances:
            self.loads[status.iid] = status

    # --- converging --------------------------------------------------------------------

    async def _follow_assignment(self) -> None:
        kv = await self.lattice.kv(subjects.KV_PLACE)
        async for value in watch_key(kv, self.id):
            try:
                assignment = decode(value, NodeAssignment) if value else None
            except BadMessage as exc:
                log.error("ignoring an unreadable assignment: %s", exc)
                continue
            self._desired = list(assignment.instances) if assignment else []
            self._dirty.set()

    async def _converge(self) -> None:
        """Make the running instances match the assignment; retry failures with backoff."""
        assert self._tg is not None
        while True:
            try:
                async with asyncio.timeout(0.5):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            desired = {s.iid: s for s in self._desired}
            for iid, inst in list(self.instances.items()):
                if desired.get(iid) != inst.spec:
                    del self.instances[iid]
                    self.loads.pop(iid, None)
                    if inst.worker is not None:
                        self._spawn(self._retire(inst), f"stopping {iid}")
            now = time.monotonic()
            for iid, spec in desired.items():
                inst = self.instances.setdefault(iid, _Instance(spec))
                if inst.starting or inst.state == "ready" or now < inst.retry_at:
                    continue
                inst.starting = True
                self._spawn(self._start(inst), f"starting {iid}")

    async def _retire(self, inst: _Instance) -> None:
        inst.state = "stopping"
        assert inst.worker is not None
        await inst.worker.stop(grace=10.0)

    async def _start(self, inst: _Instance) -> None:
        spec = inst.spec
        try:
            bundle_dir = await self._bundle(spec.digest)
            worker = await self._take_warm()
            inst.worker = worker
            await worker.assign(spec, str(bundle_dir), self.timing.start_timeout_s)
        except MotesError as exc:
            self._failed(inst, str(exc))
            if inst.worker is not None:
                await inst.worker.stop(grace=0)
            return
        finally:
            inst.starting = False
        if self.instances.get(spec.iid) is not inst:  # unassigned while starting
            await worker.stop(grace=1.0)
            return
        inst.state = "ready"
        inst.detail = ""
        log.info("instance %s of %s.%s ready (pid %d)", spec.iid, spec.app, spec.mote, worker.pid)
        assert self._tg is not None
        self._spawn(self._watch_exit(inst, worker), f"watching {spec.iid}")

    async def _watch_exit(self, inst: _Instance, worker: WorkerProc) -> None:
        code = await worker.proc.wait()
        if self.instances.get(inst.spec.iid) is inst and not self._stop.is_set():
            self._failed(inst, f"worker exited with code {code}")
            self._dirty.set()

    def _failed(self, inst: _Instance, why: str) -> None:
        inst.restarts += 1
        inst.state = "crashed" if inst.restarts < 5 else "crashloop"
        inst.detail = why
        inst.worker = None
        backoff = min(0.1 * 2 ** (inst.restarts - 1), _MAX_BACKOFF_S)
        inst.retry_at = time.monotonic() + backoff
        log.warning(
            "instance %s of %s.%s: %s (retry in %.1f s)",
            inst.spec.iid,
            inst.spec.app,
            inst.spec.mote,
            why,
            backoff,
        )

    async def _prefetch_bundles(self) -> None:
        """Unpack every deployed app's bundle ahead of need, so that scaling from zero
        or failing over to this node skips the fetch."""
        kv = await self.lattice.kv(subjects.KV_APPS)
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None or not entry.value or entry.operation in ("DEL", "PURGE"):
                    continue
                try:
                    await self._bundle(decode(entry.value, AppRecord).digest)
                except MotesError as exc:
                    log.warning("could not prefetch %s: %s", entry.key, exc)
        finally:
            await watcher.stop()

    async def _bundle(self, digest: str) -> Path:
        dest = self.home / "bundles" / digest.replace(":", "-")
        if dest.exists():
            return dest
        lock = self._bundle_locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if not dest.exists():
                store = await self.lattice.bundles()
                try:
                    obj = await store.get(digest)
                except nats.errors.Error as exc:
                    raise BadMessage(f"bundle {digest[:19]} is not in the lattice: {exc}") from None
                if obj.data is None:
                    raise BadMessage(f"bundle {digest[:19]} is empty in the lattice")
                dest.parent.mkdir(parents=True, exist_ok=True)
                extract_bundle(obj.data, digest, dest)
        return dest

    # --- warm pool ---------------------------------------------------------------------

    async def _new_worker(self) -> WorkerProc:
        async with self._spawning:  # interpreter starts are CPU-heavy: two at a time
            return await self._start_worker()

    async def _start_worker(self) -> WorkerProc:
        worker = await spawn_worker(self.lattice, self.url, self.id, str(self.home))
        self._workers.add(worker)
        self._spawn(self._pump(worker), f"output of {worker.wid}")
        await worker.wait_warm(self.timing.start_timeout_s)
        return worker

    async def _pump(self, worker: WorkerProc) -> None:
        try:
            await worker.pump()
        finally:
            self._workers.discard(worker)

    async def _fill_warm_pool(self) -> None:
        async with self._filling:
            self.warm = [w for w in self.warm if w.alive]
            while len(self.warm) < self.timing.warm_workers and not self._stop.is_set():
                self.warm.append(await self._new_worker())

    async def _take_warm(self) -> WorkerProc:
        self.warm = [w for w in self.warm if w.alive]
        worker = self.warm.pop(0) if self.warm else await self._new_worker()
        assert self._tg is not None
        self._spawn(self._fill_warm_pool(), "warm pool")
        return worker


def _labelled_power(power: Power, labels: dict[str, str]) -> Power:
    """``power=battery`` / ``power=mains`` labels override what /sys says."""
    if labels.get("power") == "battery":
        return msgspec.structs.replace(power, on_battery=True)
    if labels.get("power") == "mains":
        return msgspec.structs.replace(power, on_battery=False)
    return power


async def _logged(coro: Coroutine[Any, Any, None], what: str) -> None:
    try:
        await coro
    except Exception:
        log.exception("%s failed", what)


class _Stopped(Exception):
    """Ends the agent's task group after a clean shutdown."""


async def _none() -> None:
    return None
