"""The node agent: one per machine (or per ``motes node`` process on one box).

It announces the node (KV record + heartbeats), runs a scheduler candidate, keeps warm
workers, converges its workers on the node's assignment key (level-triggered: whatever
the key says now is what should run), restarts crashed instances with backoff, keeps its
store service running, answers mesh queries (nodes, ps), runs the native programs
asked of it confined (``node.exec``: ``mesh.exec``) and ships worker output to the log
stream. The node is ready once its store service is: a node that cannot store is
not one a user should be told is up.

Every task it runs belongs to its TaskGroup, every subscription is read by one of them,
and its children come from a ``Launcher`` (processes; in tests, tasks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .. import __version__
from ..app.bundle import extract_bundle
from ..config import Config
from ..errors import (
    BadMessage,
    Forbidden,
    MotesError,
    OverBudget,
    RetryableError,
    StartupError,
    TransportError,
    Unauthorized,
)
from ..identity import KeyKind, SigningKey
from ..identity.records import open_app, seal_node
from ..meter.power import detect_model
from ..runtime.assignments import trusted_assignment
from ..sandbox import prepare
from ..sandbox._cgroup import Cgroup
from ..scheduler.service import SchedulerService
from ..trust.client import Credentials, NodeCredentials, PrincipalFiles
from ..trust.records import read_principal
from ..wire import resources, subjects
from ..wire.bus import KV, Bus, ConnState, Message, Subscription
from ..wire.codec import decode, encode
from ..wire.messages import (
    CallCost,
    Heartbeat,
    InstanceSpec,
    InstanceState,
    InstanceStatus,
    Load,
    NodeRecord,
    NodeState,
    NodeStatus,
    Power,
    PowerProfile,
)
from .budget import Budgets, Hosted, cap_memory, check_bundle, hosting
from .exec import ExecService
from .inventory import detect_inventory, read_power
from .meter import MetricsServer, UsageLedger, openmetrics, publish_usage
from .workers import Child, Connect, Launcher, ProcessLauncher, WorkerProc, new_worker_id

__all__ = ["NodeAgent"]

log = logging.getLogger(__name__)

_Handler = Callable[[Message], Awaitable[None]]


@dataclass(eq=False)
class _Instance:
    spec: InstanceSpec
    state: InstanceState = InstanceState.STARTING
    worker: WorkerProc | None = None
    restarts: int = 0
    retry_at: float = 0.0
    detail: str = ""
    starting: bool = False
    hosted: Hosted | None = None
    """Someone else's instance, under their ``run`` grant's terms (None: the owner's)."""


class NodeAgent:
    def __init__(
        self,
        bus: Bus,
        config: Config,
        *,
        launcher: Launcher | None = None,
        key: SigningKey | None = None,
        connect: Connect | None = None,
    ) -> None:
        """``connect`` opens another connection (the scheduler's, in an authenticated
        mesh, where it has a credential of its own); without it everything shares
        ``bus``."""
        self.bus = bus
        self.home = Path(config.node.home)
        self.name = config.node.name
        self.timing = config.timing
        # node.pub beside the key: motes on this node learn our id without the crypto library
        self.key = key or SigningKey.provision(self.home / "node.key", KeyKind.NODE)
        self.id = self.key.id
        self.config = config.replace(node={"id": self.id})
        self.creds: NodeCredentials | None = None
        if config.lattice.credentials:
            self.creds = NodeCredentials(
                bus, self.id, self.home / "run", dataclasses.replace(config.lattice, credentials="")
            )
        if launcher is None:
            if connect is None:
                raise ValueError("an agent that starts real children needs `connect`")
            launcher = ProcessLauncher(self.config, connect, self.creds)
        self.launcher = launcher
        self._connect = connect
        inventory = detect_inventory()
        self.record = NodeRecord(
            id=self.id,
            name=self.name,
            public_key=self.key.public,
            host=socket.gethostname(),
            pid=os.getpid(),
            inventory=inventory,
            labels=dict(config.node.labels),
            started_at=time.time(),
            version=__version__,
            machine=config.node.machine,
            role=config.node.role,
            link=config.node.link,
            power_model=_power_profile(config, inventory.cpus),
        )
        self.scheduler: SchedulerService | None = None
        self.instances: dict[str, _Instance] = {}
        self.warm: list[WorkerProc] = []
        self.loads: dict[str, InstanceStatus] = {}
        self.state = NodeState.STARTING
        self.power = Power()
        self._costs = UsageLedger(self.id)
        """What the instances used since the last heartbeat (``Heartbeat.costs``)."""
        self._desired: list[InstanceSpec] = []
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._bundle_locks: dict[str, asyncio.Lock] = {}
        self._filling = asyncio.Lock()
        self._launching = asyncio.Lock()
        """Held from a worker's launch until it is in ``_workers`` (a few ms)."""
        self._spawning = asyncio.Semaphore(2)
        self._workers: set[WorkerProc] = set()
        self._tg: asyncio.TaskGroup | None = None
        self._store: Child | None = None
        self.budgets = Budgets(self.id)
        self._owner: str | None = None
        self._cgroups: dict[str, Cgroup] = {}
        """Worker id -> the memory cgroup its run grant's budget put it in."""

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, *, started: asyncio.Event | None = None) -> None:
        """Serve until ``stop``; ``started`` is set once the node (and its store) is ready."""
        nodes = await self.bus.kv(resources.NODES)
        scheduler_bus = await self._scheduler_bus()
        if scheduler_bus is not None:
            self.scheduler = SchedulerService(
                scheduler_bus, self.id, self.timing, key=self.key, mesh_key=self._mesh_key
            )
        subs = [
            await self.bus.subscribe(subjects.CTL_NODES),
            await self.bus.subscribe(subjects.CTL_PS),
            await self.bus.subscribe(subjects.instance_load(self.id)),
            await self.bus.subscribe(subjects.exec_request(self.id, "*")),
        ]
        metrics = await self._start_metrics()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                store_up = asyncio.Event()
                tg.create_task(self._keep_store(store_up))  # starts beside our own start
                tg.create_task(self._watch_connection())
                tg.create_task(self._serve(subs[0], self._on_nodes))
                tg.create_task(self._serve(subs[1], self._on_ps))
                tg.create_task(self._serve(subs[2], self._on_load))
                tg.create_task(self._exec_service().serve(subs[3]))
                await nodes.put(self.id, seal_node(self.key, self.record))
                tg.create_task(self._heartbeats())
                tg.create_task(self._follow_assignment())
                tg.create_task(self._prefetch_bundles())
                tg.create_task(self._converge())
                if metrics is not None:  # the meter is on
                    ledger = UsageLedger(self.id)
                    tg.create_task(publish_usage(self.bus, ledger, self.loads.values))
                if self.scheduler is not None:
                    tg.create_task(self.scheduler.run())
                if self.creds is not None:
                    tg.create_task(self._keep_credentials(self.creds))
                await _first(store_up.wait(), self._stop.wait())
                if not self._stop.is_set():
                    self.state = NodeState.READY
                    log.info("node %s (%s) ready", self.name, self.id)
                    if started is not None:
                        started.set()
                    # The node is ready once its store service is; the warm pool fills
                    # after that, so its interpreter start does not compete with the
                    # node's own (a call that finds it empty starts a worker itself).
                    self._spawn(self._fill_warm_pool(), "warm pool")
                    await self._stop.wait()
                self.state = NodeState.DRAINING
                await self._shutdown(nodes)
                raise _Stopped
        except* _Stopped:
            pass
        finally:
            await self._stop_store()
            if metrics is not None:
                await metrics.close()
            for sub in subs:
                try:
                    await sub.unsubscribe()
                except RetryableError:
                    pass
            if scheduler_bus is not None and scheduler_bus is not self.bus:
                await scheduler_bus.close()

    def _exec_service(self) -> ExecService:
        """``mesh.exec`` here: the node's files hidden, as many runs at once as cores."""
        inventory = self.record.inventory
        return ExecService(
            self.bus,
            self.id,
            mesh_key=self._mesh_key,
            hidden=[str(self.home), str(self.config.home_path)],
            slots=inventory.cpus,
            memory_mb=inventory.memory_mb,
        )

    async def _start_metrics(self) -> MetricsServer | None:
        """Serve the meter as OpenMetrics text on loopback; its address goes in our record."""
        if self.config.node.meter == "off":
            return None
        server = MetricsServer(lambda: openmetrics(self.loads.values(), self.id))
        url = await server.start()
        self.record = msgspec.structs.replace(self.record, metrics=url)
        return server

    async def _watch_connection(self) -> None:
        """A connection nats-py closed for good (the server shut us out: a revoked or
        expired credential) ends the node; a lost one is retried for as long as we run."""
        async for state in self.bus.status():
            if state is ConnState.CLOSED and not self._stop.is_set():
                if self.bus.refused:
                    raise Unauthorized(f"the mesh shut node {self.name} out: {self.bus.refused}")
                raise TransportError(f"node {self.name} lost its lattice connection for good")

    @property
    def _mesh_key(self) -> bytes | None:
        key = self.config.lattice.mesh_key
        return bytes.fromhex(key) if key else None

    async def _scheduler_bus(self) -> Bus | None:
        """The scheduler candidate's connection: ours, or (in an authenticated mesh) one
        with the scheduler's own credential, if this node is allowed to schedule."""
        if self.creds is None or self._connect is None:
            return self.bus
        try:
            lattice = await self.creds.scheduler()
        except Forbidden:
            log.info("node %s may not schedule: it runs no scheduler candidate", self.name)
            return None
        return await self._connect(lattice, f"scheduler {self.name}")

    async def _keep_credentials(self, creds: NodeCredentials) -> None:
        """Renew our own session and everything minted for our processes."""
        files = PrincipalFiles(self.home, KeyKind.NODE)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(Credentials(self.bus, files).keep_fresh())
            tg.create_task(creds.keep_fresh())

    def stop(self) -> None:
        self._stop.set()

    async def _serve(self, sub: Subscription, handle: _Handler) -> None:
        async for msg in sub:
            try:
                await handle(msg)
            except MotesError as exc:
                log.warning("answering on %s failed: %s", msg.subject, exc)

    async def _keep_store(self, up: asyncio.Event) -> None:
        """Run the store service; restart it (with backoff) whenever it is not running.

        The node is ready only once it is; if it dies later, the node reports DEGRADED
        (its motes keep serving) until it is back.
        """
        failures = 0
        while not self._stop.is_set():
            try:
                self._store = await self.launcher.start_store()
                ready = await self._store.ready(self.timing.start_timeout_s)
            except (OSError, MotesError) as exc:
                log.error("the store service could not start: %s", exc)
                ready = False
            if ready:
                failures = 0
                up.set()
                if self.state is NodeState.DEGRADED:
                    self.state = NodeState.READY
                assert self._store is not None
                code = await self._store.wait()
                if self._stop.is_set():
                    return
                log.error("the store service exited with code %s; restarting it", code)
                if self.state is NodeState.READY:
                    self.state = NodeState.DEGRADED
            else:
                failures += 1
                exit_code = self._store.returncode if self._store is not None else None
                log.error(
                    "the store service did not start (exit %s); node %s is not ready",
                    exit_code,
                    self.name,
                )
                await self._stop_store()
            backoff = min(0.2 * 2 ** max(failures - 1, 0), self.timing.restart_backoff_s)
            try:
                async with asyncio.timeout(backoff):
                    await self._stop.wait()
            except TimeoutError:
                pass

    async def _stop_store(self) -> None:
        child = self._store
        if child is None or not child.alive:
            return
        child.signal(signal.SIGTERM)  # it withdraws its holdings record, then exits
        try:
            async with asyncio.timeout(10):
                await child.wait()
        except TimeoutError:
            child.signal(signal.SIGKILL)
            await child.wait()

    async def _shutdown(self, nodes: KV) -> None:
        """Leave cleanly: withdraw the record (so the scheduler moves our work), stop workers."""
        try:
            await nodes.delete(self.id)
        except MotesError as exc:
            log.warning("could not withdraw node record: %s", exc)
        await self._stop_store()
        # A warm-pool refill stops at ``_stop``. A worker it is still starting is not
        # waited for: once launched it is in ``_workers``, and is stopped with the rest.
        async with self._launching:
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
        running = sum(1 for i in self.instances.values() if i.state is InstanceState.READY)
        inflight = sum(s.inflight for s in self.loads.values())
        try:
            cpu = os.getloadavg()[0]
        except OSError:
            cpu = 0.0
        return Load(instances=running, inflight=inflight, cpu_load=round(cpu, 2))

    def heartbeat(self, seq: int) -> Heartbeat:
        ready = [iid for iid, i in self.instances.items() if i.state is InstanceState.READY]
        work = {
            iid: s.inflight + s.queued for iid, s in self.loads.items() if s.inflight + s.queued
        }
        return Heartbeat(
            node=self.id,
            seq=seq,
            load=self.load(),
            ready=ready,
            work=work,
            power=self.power,
            costs=self._take_costs(),
            spent=dict(self.budgets.spent),
        )

    def _take_costs(self) -> dict[str, CallCost]:
        """Per mote, what its calls here used since the last heartbeat (served ones)."""
        costs: dict[str, CallCost] = {}
        for row in self._costs.take(list(self.loads.values()), 0.0, 0.0).rows:
            if row.calls <= 0:
                continue
            key = f"{row.app}.{row.mote}"
            m, was = row.meter, costs.get(key, CallCost(calls=0, joules=0.0, cpu_s=0.0))
            costs[key] = CallCost(
                calls=was.calls + row.calls,
                joules=was.joules + m.joules,
                cpu_s=was.cpu_s + m.cpu_user_s + m.cpu_sys_s,
            )
        return costs

    async def _heartbeats(self) -> None:
        seq = 0
        subject = subjects.heartbeat(self.id)
        while True:
            seq += 1
            if seq % 20 == 1:  # power changes slowly; /sys reads are cheap but not free
                self.power = _labelled_power(read_power(), self.record.labels)
            if self.bus.connected:
                try:
                    await self.bus.publish(subject, encode(self.heartbeat(seq)))
                except RetryableError as exc:
                    log.debug("heartbeat: %s", exc)
            await asyncio.sleep(self.timing.heartbeat_s)

    def status(self) -> NodeStatus:
        return NodeStatus(
            record=self.record,
            state=str(self.state),
            load=self.load(),
            leader=self.scheduler is not None and self.scheduler.is_leader,
        )

    async def _on_nodes(self, msg: Message) -> None:
        if msg.reply:
            await self.bus.publish(msg.reply, encode(self.status()))

    async def _on_ps(self, msg: Message) -> None:
        if not msg.reply:
            return
        insts = list(self.instances.values())
        live = await asyncio.gather(
            *(
                i.worker.query(self.timing.scatter_s / 2)
                if i.worker is not None and i.state is InstanceState.READY
                else _none()
                for i in insts
            )
        )
        out = [self._status(i, s) for i, s in zip(insts, live, strict=False)]
        await self.bus.publish(msg.reply, encode(out))

    def _status(self, inst: _Instance, live: InstanceStatus | None) -> InstanceStatus:
        s = inst.spec
        return InstanceStatus(
            iid=s.iid,
            app=s.app,
            mote=s.mote,
            digest=s.digest,
            node=self.id,
            state=str(inst.state),
            pid=inst.worker.pid if inst.worker else 0,
            inflight=live.inflight if live else 0,
            served=live.served if live else 0,
            failed=live.failed if live else 0,
            restarts=inst.restarts,
            detail=inst.detail,
            latency=live.latency if live else {},
            meter=live.meter if live else None,
        )

    async def _on_load(self, msg: Message) -> None:
        try:
            status = decode(msg.data, InstanceStatus)
        except BadMessage:
            return
        inst = self.instances.get(status.iid)
        if inst is None:
            return
        self.loads[status.iid] = status
        if inst.hosted is not None and status.meter is not None:
            cpu = status.meter.cpu_user_s + status.meter.cpu_sys_s
            key = f"{status.iid}:{status.pid}"
            over = self.budgets.record(key, inst.hosted, cpu, time.time())
            if over is not None:
                self._stop_person(over)

    def _set_state(self, inst: _Instance, state: InstanceState, detail: str = "") -> None:
        """Change an instance's state and tell whoever follows the mesh's events."""
        inst.state = state
        inst.detail = detail
        event = encode(self._status(inst, None))
        self._spawn(self._announce(event), "an instance event")

    async def _announce(self, event: bytes) -> None:
        try:
            await self.bus.publish(subjects.instance_events(self.id), event)
        except RetryableError as exc:
            log.debug("instance event: %s", exc)

    # --- converging --------------------------------------------------------------------

    async def _follow_assignment(self) -> None:
        kv = await self.bus.kv(resources.PLACE)
        async with await kv.watch(self.id) as watch:
            async for entry in watch:
                if entry.value is None:
                    self._desired = []
                else:
                    assignment = await trusted_assignment(
                        self.bus, self.id, entry.value, self.timing.lease_ttl_s
                    )
                    if assignment is None:
                        continue
                    self._desired = list(assignment.instances)
                self._dirty.set()

    async def _converge(self) -> None:
        """Make the running instances match the assignment; retry failures with backoff."""
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
                if inst.starting or inst.state is InstanceState.READY or now < inst.retry_at:
                    continue
                inst.starting = True
                self._spawn(self._start(inst), f"starting {iid}")

    async def _retire(self, inst: _Instance) -> None:
        self._set_state(inst, InstanceState.STOPPING)
        assert inst.worker is not None
        await inst.worker.stop(grace=self.timing.stop_grace_s)

    async def _start(self, inst: _Instance) -> None:
        spec = inst.spec
        try:
            hosted = await self._hosting(spec)
            if hosted is not None:
                self.budgets.admit(hosted, self._running_of(hosted.person, inst), time.time())
            inst.hosted = hosted  # no await since admit: a start beside this one counts it
        except Forbidden as exc:
            inst.starting = False
            self._refused(inst, exc)
            return
        except MotesError as exc:
            inst.starting = False
            self._failed(inst, str(exc))
            return
        try:
            bundle_dir = await self._bundle(spec.digest)
            if hosted is not None:
                check_bundle(bundle_dir, spec, hosted)
            await prepare(bundle_dir, spec.digest, self.config.node)
            worker = await self._take_warm()
            inst.worker = worker
            if hosted is not None and hosted.terms.memory_mb is not None:
                self._cap_memory(worker, hosted.terms.memory_mb)
            grant: dict[str, str] = {}
            if self.creds is not None:
                shell, code, secret = await self.creds.instance(spec.iid, worker.wid)
                grant = {
                    "credentials": shell.credentials,
                    "inbox": shell.inbox_prefix,
                    "app_credentials": code.credentials,
                    "app_inbox": code.inbox_prefix,
                    "convergence": str(secret),
                }
            await worker.assign(spec, str(bundle_dir), self.timing.start_timeout_s, **grant)
        except Forbidden as exc:  # before a worker is taken: the bundle is not as signed
            self._refused(inst, exc)
            return
        except MotesError as exc:
            started = inst.worker
            self._failed(inst, str(exc))
            if started is not None:
                await started.stop(grace=0)
                await self._release(started)
            return
        finally:
            inst.starting = False
        if self.instances.get(spec.iid) is not inst:  # unassigned while starting
            await worker.stop(grace=1.0)
            return
        self._set_state(inst, InstanceState.READY)
        log.info("instance %s of %s.%s ready (pid %d)", spec.iid, spec.app, spec.mote, worker.pid)
        self._spawn(self._watch_exit(inst, worker), f"watching {spec.iid}")

    async def _watch_exit(self, inst: _Instance, worker: WorkerProc) -> None:
        code = await worker.child.wait()
        await self._release(worker, inst.spec.iid)
        current = self.instances.get(inst.spec.iid) is inst and inst.worker is worker
        if current and not self._stop.is_set():
            self._failed(inst, f"worker exited with code {code}")
            self._dirty.set()

    def _failed(self, inst: _Instance, why: str) -> None:
        inst.restarts += 1
        state = InstanceState.CRASHED if inst.restarts < 5 else InstanceState.CRASHLOOP
        self._set_state(inst, state, why)
        inst.worker = None
        backoff = min(0.1 * 2 ** (inst.restarts - 1), self.timing.restart_backoff_s)
        inst.retry_at = time.monotonic() + backoff
        log.warning(
            "instance %s of %s.%s: %s (retry in %.1f s)",
            inst.spec.iid,
            inst.spec.app,
            inst.spec.mote,
            why,
            backoff,
        )

    # --- run grants: whose instances, within which budgets -------------------------------

    async def _hosting(self, spec: InstanceSpec) -> Hosted | None:
        """Whose instance it is, under which terms (None: no authentication, or ours)."""
        mesh_key = self._mesh_key
        if mesh_key is None:
            return None
        if self._owner is None:  # who admitted a node never changes: read it once
            me = await read_principal(self.bus, self.id, mesh=mesh_key)
            if me is None or me.revoked_at:
                raise Forbidden(self.id, "run", spec.app, "this node is not admitted (or revoked)")
            self._owner = me.owner
        meter = self.config.node.meter
        return await hosting(
            self.bus, self.record, self._owner, spec, mesh_key=mesh_key, meter=meter
        )

    def _running_of(self, person: str, starting: _Instance) -> int:
        """``person``'s instances here, running or starting, besides ``starting``; one of
        the same mote at another version (the one it replaces) does not count."""
        spec = starting.spec
        return sum(
            1
            for i in self.instances.values()
            if i is not starting
            and i.hosted is not None
            and i.hosted.person == person
            and (i.state is InstanceState.READY or i.starting)
            and not (
                i.spec.app == spec.app and i.spec.mote == spec.mote and i.spec.digest != spec.digest
            )
        )

    def _cap_memory(self, worker: WorkerProc, memory_mb: int) -> None:
        if worker.pid in (0, os.getpid()):
            return  # a launcher that runs workers as tasks of this process: nothing to cap
        group = cap_memory(worker.pid, memory_mb)
        if group is not None:
            self._cgroups[worker.wid] = group

    async def _release(self, worker: WorkerProc, iid: str = "") -> None:
        """A worker is gone: what it used today stays counted; its cgroup goes."""
        if iid:
            self.budgets.ended(f"{iid}:{worker.pid}")
        group = self._cgroups.pop(worker.wid, None)
        if group is not None:
            await asyncio.to_thread(group.remove)

    def _refused(self, inst: _Instance, exc: Forbidden) -> None:
        """The node will not run it (its grant, a budget); asked again after a backoff."""
        self._set_state(inst, InstanceState.REFUSED, str(exc))
        inst.retry_at = time.monotonic() + self.timing.restart_backoff_s
        log.warning(
            "node %s refuses instance %s of %s.%s: %s",
            self.name,
            inst.spec.iid,
            inst.spec.app,
            inst.spec.mote,
            exc,
        )

    def _stop_person(self, over: OverBudget) -> None:
        """A person's budget here is used up: stop their instances, refuse new ones."""
        log.warning("node %s: %s: stopping their instances here", self.name, over)
        for inst in self.instances.values():
            if inst.hosted is None or inst.hosted.person != over.person:
                continue
            worker, inst.worker = inst.worker, None
            self._refused(inst, over)
            if worker is not None:
                self._spawn(worker.stop(grace=self.timing.stop_grace_s), f"stopping {worker.wid}")

    async def _prefetch_bundles(self) -> None:
        """Unpack every deployed app's bundle ahead of need, so that scaling from zero
        or failing over to this node skips the fetch."""
        kv = await self.bus.kv(resources.APPS)
        async with await kv.watch() as watch:
            async for entry in watch:
                if not entry.value:
                    continue
                try:
                    digest = open_app(entry.value)[0].digest
                    await prepare(await self._bundle(digest), digest, self.config.node)
                except MotesError as exc:
                    log.warning("could not prefetch %s: %s", entry.key, exc)

    async def _bundle(self, digest: str) -> Path:
        dest = self.home / "bundles" / digest.replace(":", "-")
        if dest.exists():
            return dest
        lock = self._bundle_locks.setdefault(digest, asyncio.Lock())
        async with lock:
            if not dest.exists():
                store = await self.bus.objects(resources.BUNDLES)
                data = await store.get(digest)
                if data is None:
                    raise BadMessage(f"bundle {digest[:19]} is not in the lattice")
                dest.parent.mkdir(parents=True, exist_ok=True)
                extract_bundle(data, digest, dest)
        return dest

    # --- warm pool ---------------------------------------------------------------------

    async def _new_worker(self) -> WorkerProc:
        async with self._spawning:  # interpreter starts are CPU-heavy: two at a time
            return await self._start_worker()

    async def _start_worker(self) -> WorkerProc:
        wid = new_worker_id(self.id)
        async with self._launching:
            if self._stop.is_set():
                raise StartupError(f"node {self.id} is stopping: no new worker")
            child = await self.launcher.start_worker(wid)
            worker = WorkerProc(wid, child, self.bus, self.id, log_flush_s=self.timing.log_flush_s)
            self._workers.add(worker)
        self._spawn(self._pump(worker), f"output of {worker.wid}")
        await worker.wait_warm(self.timing.start_timeout_s)
        return worker

    async def _pump(self, worker: WorkerProc) -> None:
        try:
            await worker.pump()
        finally:
            self._workers.discard(worker)
            if self.creds is not None:
                self.creds.forget(worker.wid)

    async def _fill_warm_pool(self) -> None:
        async with self._filling:
            self.warm = [w for w in self.warm if w.alive]
            while len(self.warm) < self.timing.warm_workers and not self._stop.is_set():
                try:
                    self.warm.append(await self._new_worker())
                except MotesError:
                    if self._stop.is_set():
                        return  # stopped while it started: the shutdown stops it
                    raise

    async def _take_warm(self) -> WorkerProc:
        self.warm = [w for w in self.warm if w.alive]
        worker = self.warm.pop(0) if self.warm else await self._new_worker()
        self._spawn(self._fill_warm_pool(), "warm pool")
        return worker


def _power_profile(config: Config, cores: int) -> PowerProfile | None:
    """The power model the node's workers estimate joules with, as the record carries it
    (none when the meter is off: its calls are then not measured either)."""
    if config.node.meter == "off":
        return None
    node = config.node
    model = detect_model(idle_w=node.power_idle_w, max_w=node.power_max_w)  # as the workers
    return PowerProfile(
        idle_w=model.idle_w, max_w=model.max_w, cores=cores, method=model.method, band=model.band
    )


def _labelled_power(power: Power, labels: dict[str, str]) -> Power:
    """``power=battery`` / ``power=mains`` labels override what /sys says."""
    if labels.get("power") == "battery":
        return msgspec.structs.replace(power, on_battery=True)
    if labels.get("power") == "mains":
        return msgspec.structs.replace(power, on_battery=False)
    return power


async def _first(*aws: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of ``aws`` finishes; the others are cancelled."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(a) for a in aws]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t not in done:
                t.cancel()


async def _logged(coro: Coroutine[Any, Any, None], what: str) -> None:
    try:
        await coro
    except Exception:
        log.exception("%s failed", what)


class _Stopped(Exception):
    """Ends the agent's task group after a clean shutdown."""


async def _none() -> None:
    return None
