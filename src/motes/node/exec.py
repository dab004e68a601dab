"""Serving ``mesh.exec`` on one node: native programs, run confined, for those allowed.

The agent reads ``motes.exec.{node}.*``; the subject's last token names the asker, and
only the asker may publish there (``wire.acl``: a person gets that subject for the nodes
of its ``run`` grants). On an authenticated mesh the node checks again, at every
request, that a grant in force lets that principal ``run`` here: a revoked grant stops
counting at once, even while the asker's session lasts. A refusal is ``Forbidden`` and
nothing runs.

The program runs under ``sandbox.confine.run_confined`` with the node's own files (its
home, and the motes home with the keys) hidden; where nothing can confine it the answer
is ``SandboxUnavailable``, never an unconfined run. Its output comes back in one lattice
message, so a request whose ``output_bytes`` the lattice could not carry back is refused
(``SandboxDenied``) before anything runs, and a program that writes more than it asked
for is stopped (``SandboxLimit`` naming ``output``). At most ``slots`` programs run at
once; the others wait their turn. Logs name the program, never its arguments (they may
hold secrets).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from ..errors import Forbidden, MotesError, RetryableError, SandboxDenied
from ..identity.grants import allowed
from ..sandbox.confine import run_confined
from ..trust.records import read_trust
from ..wire import subjects
from ..wire.bus import Bus, Message, Subscription
from ..wire.codec import decode, encode, encode_error
from ..wire.messages import EXEC_REPLY_OVERHEAD, ExecRequest, ExecResult, Ok

__all__ = ["ExecService"]

log = logging.getLogger(__name__)


class ExecService:
    """Runs the programs asked of one node, confined, for principals allowed to."""

    def __init__(
        self,
        bus: Bus,
        node: str,
        *,
        mesh_key: bytes | None,
        hidden: Sequence[str],
        slots: int,
        memory_mb: int,
    ) -> None:
        """``mesh_key`` None: the mesh does not authenticate (anyone on it may ask);
        ``memory_mb``: the most one program may be given (the node's memory)."""
        self.bus = bus
        self.node = node
        self.mesh_key = mesh_key
        self.hidden = list(hidden)
        self.memory_mb = memory_mb
        self._slots = asyncio.Semaphore(max(1, slots))

    async def serve(self, sub: Subscription) -> None:
        """Answer every request on ``sub``, each in its own task."""
        async with asyncio.TaskGroup() as tg:
            async for msg in sub:
                if msg.reply:
                    tg.create_task(self._answer(msg))

    async def _answer(self, msg: Message) -> None:
        try:
            data = encode(Ok(await self.run(msg.subject, msg.data)))
        except MotesError as exc:
            data = encode_error(exc)
        except Exception as exc:  # a bug or an OS failure here must not end the node
            log.exception("an exec request failed")
            data = encode_error(MotesError(f"node {self.node} failed to run it: {exc}"))
        try:
            await self.bus.publish(msg.reply, data)
        except RetryableError as exc:
            log.warning("could not answer an exec request: %s", exc)

    async def run(self, subject: str, data: bytes) -> ExecResult:
        """One request: who asks (from ``subject``), may they, then the confined run."""
        parsed = subjects.parse_exec(subject)
        if parsed is None or parsed[0] != self.node:
            raise Forbidden("?", "run programs on", self.node, f"not an exec subject: {subject}")
        principal = parsed[1]
        await self._authorize(principal)
        req = decode(data, ExecRequest)
        self._check(req)
        what = os.path.basename(req.argv[0]) if req.argv else "?"
        async with self._slots:
            done = await run_confined(
                req.argv, req.confine, what=what, stdin=req.stdin, hidden=self.hidden
            )
        log.info(
            "ran %s for %s: exit %d, %.3f s, %s", what, principal, done.returncode,
            done.wall_s, done.backend,
        )  # fmt: skip
        return done.result(self.node)

    async def _authorize(self, principal: str) -> None:
        if self.mesh_key is None:
            return
        view = await read_trust(self.bus, self.mesh_key)
        if allowed(view.grants, principal, "run", self.node) is None:
            raise Forbidden(principal, "run programs on", self.node, "no run grant for this node")

    def _check(self, req: ExecRequest) -> None:
        """What this node will not give, whatever the sandbox could enforce."""
        carry = self.bus.max_payload - EXEC_REPLY_OVERHEAD
        asked = req.confine.output_bytes
        if asked > carry:
            raise SandboxDenied(
                f"output_bytes={asked}", f"a reply on this lattice carries at most {carry} bytes"
            )
        if req.confine.memory_mb > self.memory_mb:
            raise SandboxDenied(
                f"memory_mb={req.confine.memory_mb}", f"this node has {self.memory_mb} MiB"
            )
