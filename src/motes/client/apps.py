"""``mesh.apps``: deploying apps, rolling back, listing what is deployed.

A deploy stores the bundle by digest in the object store, writes the app record (the
scheduler's desired state) and, by default, waits until every mote has its ``min``
instances ready, or is known to be unplaceable (``motes why`` then says why).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import msgspec

from ..app import App, build_bundle, load_app_file
from ..errors import (
    BadApp,
    Forbidden,
    IntegrityError,
    MotesError,
    RequestError,
    StartupError,
    UnknownMote,
)
from ..identity.records import open_app, seal_app
from ..store.caps import parse_cap
from ..wire import resources, subjects
from ..wire.codec import decode, raise_for
from ..wire.messages import AppRecord, Err, InstanceState, MoteSpec, Ok
from ._core import Core
from .durable import Durable
from .ops import Ops

__all__ = ["Apps"]

log = logging.getLogger(__name__)


class Apps:
    def __init__(self, core: Core, durable: Durable, ops: Ops) -> None:
        self._core = core
        self._durable = durable
        self._ops = ops

    async def list(self) -> list[AppRecord]:
        """Every deployed app's current record, by name."""
        kv = await self._core.bus.kv(resources.APPS)
        records = []
        for key, entry in (await kv.items()).items():
            try:
                records.append(open_app(entry.value or b"")[0])
            except IntegrityError as exc:
                log.warning("ignoring app record %s: %s", key, exc)
        return sorted(records, key=lambda r: r.name)

    async def deployers(self) -> dict[str, str]:
        """Each deployed app's name and the id of the person who signed its current record."""
        kv = await self._core.bus.kv(resources.APPS)
        out = {}
        for key, entry in (await kv.items()).items():
            try:
                record, signer = open_app(entry.value or b"")
            except IntegrityError as exc:
                log.warning("ignoring app record %s: %s", key, exc)
                continue
            out[record.name] = signer
        return out

    async def deploy(
        self, app: App | str | os.PathLike[str], *, wait: bool = True, timeout: float | None = None
    ) -> str:
        """Bundle and deploy an app (an ``App`` or a path to its file); return its digest.

        With ``wait`` (the default) returns once every mote has its ``min`` instances ready.
        """
        core = self._core
        if not isinstance(app, App):
            app = load_app_file(app)
        bundle = build_bundle(app)
        try:
            store = await core.bus.objects(resources.BUNDLES)
            if not await store.exists(bundle.digest):
                await store.put(bundle.digest, bundle.data)
        except Forbidden as exc:
            # Uploading is the first step a deploy grant allows: say what was refused.
            raise Forbidden(exc.principal, "deploy", app.name, "no deploy grant") from None
        previous = await core.app(app.name)
        record = AppRecord(
            name=app.name,
            digest=bundle.digest,
            module=bundle.module,
            motes=[_reads_as_indexes(spec) for spec in app.specs()],
            requirements=app.requirements,
            flows=app.flows,
            deployed_at=time.time(),
            previous=previous.digest
            if previous and previous.digest != bundle.digest
            else (previous.previous if previous else None),
        )
        await self._publish(record)
        await self._durable.write_flows(record, previous)
        core.remember(record)
        if wait:
            await self.wait_placed(record, timeout)
        return bundle.digest

    async def rollback(self, app: str, *, wait: bool = True, timeout: float | None = None) -> str:
        """Deploy the app's previous version again (the same surge as an upgrade)."""
        kv = await self._core.bus.kv(resources.APPS)
        records = [open_app(e.value)[0] for e in await kv.history(app) if e.value]
        if not records:
            raise UnknownMote(f"{app}.*")
        current = records[-1]
        earlier = next((r for r in reversed(records) if r.digest == current.previous), None)
        if current.previous is None or earlier is None:
            raise RequestError(f"app {app} has no earlier version to roll back to")
        record = msgspec.structs.replace(earlier, deployed_at=time.time(), previous=current.digest)
        await self._publish(record)
        self._core.remember(record)
        if wait:
            await self.wait_placed(record, timeout)
        return record.digest

    async def _publish(self, record: AppRecord) -> None:
        """Sign the record as ours; in an authenticated mesh the authority checks our
        ``deploy`` grant and writes it (and the audit log says so)."""
        core = self._core
        sealed = seal_app(core.key, record)
        if core.authenticated:
            reply = await core.bus.request(
                subjects.auth("deploy", core.principal), sealed, timeout=10.0
            )
            raise_for(decode(reply.data, Ok | Err))  # type: ignore[arg-type]
        else:
            kv = await core.bus.kv(resources.APPS)
            await kv.put(record.name, sealed)

    async def wait_placed(self, record: AppRecord, timeout: float | None = None) -> None:
        """Until every mote has ``min`` ready instances of this version.

        A mote that no node can run (every node vetoes it: say it needs a gpu and there is
        none) is not waited for: it stays pending, and ``motes why`` says why.
        """
        timeout = self._core.timing.start_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        unplaceable: set[str] = set()
        while True:
            insts = [
                i
                for i in await self._ops.ps()
                if i.app == record.name and i.digest == record.digest
            ]
            broken = [i for i in insts if i.restarts >= 2 and i.detail]
            if broken:
                raise StartupError(
                    f"{record.name}.{broken[0].mote} cannot start: {broken[0].detail}"
                )
            short = [
                m.name
                for m in record.motes
                if m.name not in unplaceable
                and sum(1 for i in insts if i.mote == m.name and i.state == InstanceState.READY)
                < m.min
            ]
            if not short:
                return
            for name in short:
                if not [i for i in insts if i.mote == name] and await self._unplaceable(
                    f"{record.name}.{name}"
                ):
                    unplaceable.add(name)
                    log.info("%s.%s is pending: no node can run it", record.name, name)
            if time.monotonic() > deadline:
                raise StartupError(
                    f"{record.name}: {', '.join(short)} not running after {timeout:g} s; "
                    f"see `motes why {record.name}.{short[0]}`"
                )
            await asyncio.sleep(0.05)

    async def _unplaceable(self, name: str) -> bool:
        try:
            why = await self._ops.why(name)
        except MotesError:
            return False  # no leader yet: keep waiting
        eligible = any(all(v.ok for v in n.verdicts) for n in why.nodes)
        return bool(why.nodes) and why.placed < why.desired and not eligible


def _reads_as_indexes(spec: MoteSpec) -> MoteSpec:
    """A mote's declared reads as storage indexes: what the scheduler may know of them
    (a read capability in the app record would hand its key to anyone who reads the KV)."""
    if not spec.reads:
        return spec
    indexes = []
    for cap in spec.reads:
        try:
            indexes.append(parse_cap(cap).si_hex)
        except MotesError as exc:
            raise BadApp(f"mote {spec.name}: reads: {exc}") from None
    return msgspec.structs.replace(spec, reads=indexes)
