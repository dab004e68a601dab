"""``mesh.ops``: looking at and steering the mesh: nodes, instances, the scheduler's
reasons, owner context (``here``, ``drain``) and worker output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from ..errors import BadMessage, MotesError, NoReply, NoResponders
from ..wire import resources, subjects
from ..wire.codec import decode, decode_all, encode
from ..wire.messages import (
    InstanceStatus,
    Load,
    LogBatch,
    MoteQuery,
    NodeState,
    NodeStatus,
    UsageReport,
    WhyReply,
)
from ._core import Core

__all__ = ["Ops"]


class Ops:
    def __init__(self, core: Core) -> None:
        self._core = core

    async def nodes(self) -> list[NodeStatus]:
        """Every node that has joined: live ones as they answer, silent ones as unreachable."""
        core = self._core
        records = await core.node_records()
        answers = await core.bus.scatter(
            subjects.CTL_NODES, b"", expected=len(records), timeout=core.timing.scatter_s
        )
        live = decode_all(answers, NodeStatus)
        seen = {s.record.id for s in live}
        gone = [
            NodeStatus(record=r, state=str(NodeState.UNREACHABLE), load=Load())
            for k, r in records.items()
            if k not in seen
        ]
        return sorted(live + gone, key=lambda s: s.record.name)

    async def ps(self) -> list[InstanceStatus]:
        """Every instance on every live node: mote, version, node, state, in-flight calls."""
        core = self._core
        expected = len(await core.node_records())
        answers = await core.bus.scatter(
            subjects.CTL_PS, b"", expected=expected, timeout=core.timing.scatter_s
        )
        insts = [i for a in decode_all(answers, list[InstanceStatus]) for i in a]
        return sorted(insts, key=lambda i: (i.app, i.mote, i.node, i.iid))

    async def why(self, name: str) -> WhyReply:
        """The scheduler's verdict on every node for this mote, rule by rule.

        While leadership changes hands (up to about two lease times) this waits for the
        new leader rather than failing.
        """
        core = self._core
        ref = core.ref(name)
        query = encode(MoteQuery(app=ref.app, mote=ref.mote))
        deadline = time.monotonic() + 2 * core.timing.lease_ttl_s + 1
        while True:
            try:
                msg = await core.bus.request(subjects.SCHED_WHY, query, timeout=5.0)
                break
            except (NoResponders, NoReply):
                if time.monotonic() > deadline:
                    raise MotesError(
                        "no scheduler leader answered; is the mesh up? (`motes nodes`)"
                    ) from None
                await asyncio.sleep(0.1)
        return decode(msg.data, WhyReply)

    async def here(self, node: str | None) -> str | None:
        """Tell the mesh the user is at ``node`` (name or id); None: nowhere known.

        Interactive motes move there; batch motes move away. Returns the node id.
        """
        kv = await self._core.bus.kv(resources.CTX)
        if node is None:
            await kv.delete(subjects.PRESENCE_KEY)
            return None
        nid = await self._core.node_id(node)
        await kv.put(subjects.PRESENCE_KEY, nid.encode())
        return nid

    async def drain(self, node: str, *, drained: bool = True) -> str:
        """Move every instance off ``node`` and place nothing more there (or undo that)."""
        nid = await self._core.node_id(node)
        kv = await self._core.bus.kv(resources.CTX)
        if drained:
            await kv.put(subjects.drain_key(nid), b"1")
        else:
            await kv.delete(subjects.drain_key(nid))
        return nid

    async def logs(
        self, app: str | None = None, mote: str | None = None, *, follow: bool = False
    ) -> AsyncIterator[LogBatch]:
        """Worker output from every node, oldest first; with ``follow``, keep waiting for more."""
        stream = self._core.bus.replay(
            resources.LOGS, subjects.log_filter(app, mote), follow=follow
        )
        async for msg in stream:
            try:
                yield decode(msg.data, LogBatch)
            except BadMessage:
                continue

    async def usage(self, since: float = 0.0) -> list[UsageReport]:
        """Every node's usage reports (``MOTES_USAGE``) that end after ``since`` (unix s)."""
        out = []
        async for msg in self._core.bus.replay(resources.USAGE, subjects.USAGE_ALL, follow=False):
            if msg.time and msg.time < since:
                continue
            try:
                report = decode(msg.data, UsageReport)
            except BadMessage:
                continue
            if report.end >= since:
                out.append(report)
        return out
