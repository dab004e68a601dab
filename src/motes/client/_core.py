"""What every facet of a ``Mesh`` shares: the bus, the settings, and what is known of apps.

``request`` is the call path's one rule for "nobody listens": find out why (an unknown
mote is ``UnknownMote``), tell the scheduler a caller waits (so ``min=0`` motes start),
hold the call while an instance starts, and fail with ``NoInstance`` (naming the rules
that vetoed each node) rather than hang.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..config import Config
from ..errors import (
    CallTimeout,
    IntegrityError,
    NoInstance,
    NoReply,
    NoResponders,
    RequestError,
    UnknownMote,
)
from ..identity import SigningKey
from ..identity.records import open_app, open_node
from ..ids import MoteRef
from ..wire import resources, subjects
from ..wire.bus import Bus, Message
from ..wire.codec import decode, encode
from ..wire.messages import AppRecord, MoteQuery, MoteSpec, NodeRecord, WhyReply

__all__ = ["Core"]

log = logging.getLogger(__name__)


class Core:
    def __init__(self, bus: Bus, config: Config, key: SigningKey) -> None:
        self.bus = bus
        self.config = config
        self.key = key
        """Who this connection acts as: it signs what this client deploys."""
        self.principal = key.id
        self.authenticated = bool(config.lattice.mesh_key)
        self.timing = config.timing
        self._refs: dict[str, MoteRef] = {}
        self._specs: dict[tuple[str, str], MoteSpec] = {}

    def ref(self, name: str) -> MoteRef:
        ref = self._refs.get(name)
        if ref is None:
            ref = self._refs[name] = MoteRef.parse(name)
        return ref

    def timeout(self, timeout: float | None) -> float:
        return self.timing.call_timeout_s if timeout is None else timeout

    # --- apps ------------------------------------------------------------------------

    async def app(self, name: str) -> AppRecord | None:
        entry = await (await self.bus.kv(resources.APPS)).get(name)
        return open_app(entry.value)[0] if entry is not None and entry.value else None

    async def spec(self, ref: MoteRef, *, refresh: bool = False) -> MoteSpec:
        """The mote's declared spec; ``UnknownMote`` if no deployed app declares it."""
        key = (ref.app, ref.mote)
        if refresh or key not in self._specs:
            record = await self.app(ref.app)
            known = [f"{ref.app}.{m.name}" for m in record.motes] if record else None
            spec = next((m for m in record.motes if m.name == ref.mote), None) if record else None
            if spec is None:
                raise UnknownMote(str(ref), known)
            self._specs[key] = spec
        return self._specs[key]

    def remember(self, record: AppRecord) -> None:
        for spec in record.motes:
            self._specs[(record.name, spec.name)] = spec

    # --- nodes -----------------------------------------------------------------------

    async def node_records(self) -> dict[str, NodeRecord]:
        kv = await self.bus.kv(resources.NODES)
        out: dict[str, NodeRecord] = {}
        for k, e in (await kv.items()).items():
            try:
                out[k] = open_node(e.value or b"")
            except IntegrityError as exc:
                log.warning("ignoring node record %s: %s", k, exc)
        return out

    async def node_id(self, name_or_id: str) -> str:
        records = await self.node_records()
        for nid, rec in records.items():
            if name_or_id in (nid, rec.name):
                return nid
        known = ", ".join(sorted(r.name for r in records.values()))
        raise RequestError(f"no node named {name_or_id!r} in this mesh (nodes: {known})")

    # --- the call path ---------------------------------------------------------------

    async def request(self, ref: MoteRef, subject: str, data: bytes, timeout: float) -> bytes:
        """Send; on no responders, find out why, hold while an instance starts, retry."""
        return bytes((await self.request_msg(ref, subject, data, timeout)).data)

    async def request_msg(
        self,
        ref: MoteRef,
        subject: str,
        data: bytes,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> Message:
        """``request``, returning the whole reply (its headers too)."""
        deadline = time.monotonic() + timeout
        held = False
        hold_until = deadline
        delay = 0.01
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CallTimeout(str(ref), timeout)
            try:
                return await self.bus.request(subject, data, timeout=remaining, headers=headers)
            except NoReply:
                raise CallTimeout(str(ref), timeout) from None
            except NoResponders:
                pass
            if not held:
                await self.spec(ref, refresh=True)  # raises UnknownMote if not deployed
                await self.demand(ref)
                held = True
                hold_until = min(deadline, time.monotonic() + self.timing.instance_wait_s)
            if time.monotonic() >= hold_until:
                raise NoInstance(
                    str(ref),
                    f"none started within {self.timing.instance_wait_s:g} s; see `motes why {ref}`",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)  # an instance is starting: look again soon

    async def demand(self, ref: MoteRef) -> None:
        """Tell the scheduler a caller waits for this mote (starts one even with min=0).

        If the scheduler answers that no node can take it, fail now with its reasons.
        """
        query = encode(MoteQuery(app=ref.app, mote=ref.mote))
        try:
            msg = await self.bus.request(subjects.SCHED_DEMAND, query, timeout=3.0)
        except (NoResponders, NoReply):
            return  # no leader right now; the held call still waits for one
        why = decode(msg.data, WhyReply)
        if why.placed == 0 and why.desired > 0 and why.nodes:
            raise NoInstance(str(ref), "no node can run it: " + "; ".join(why.vetoes()))
