"""The command host: a command mote's function says what to run; this runs it confined.

The function itself is loaded and invoked by the in-process host (it is the app's own
code, placed like any function mote's); what it returns, an argv or an ``app.Command``,
is then run with ``confine.run_confined`` as the ``@app.command`` decorator declared:
bubblewrap, else Landlock, else ``SandboxUnavailable``, never unconfined. The node's own
files (``hidden``) are never shown, the program's deadline is the declared timeout or
what is left of the call's, whichever ends first, and a call's result is the program's
``ExecResult``. Calls run at once up to the instance's concurrency, each its own process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from ..app.app import Command
from ..errors import BadApp, MotesError, SandboxDenied
from ..wire.codec import error_reply
from ..wire.messages import Confinement, Err, InstanceSpec, Ok
from .confine import run_confined
from .inprocess import InProcessHost

__all__ = ["CommandHost"]


class CommandHost:
    """One command mote: its function in-process, its programs confined."""

    def __init__(self, node: str, hidden: Sequence[str]) -> None:
        self.node = node
        self.hidden = list(hidden)
        self.inner = InProcessHost(node)
        self.confine = Confinement()
        self.qualname = ""

    @property
    def is_async(self) -> bool:
        return True  # the program runs in its own process: calls need not wait in line

    async def load(self, bundle_dir: Path, spec: InstanceSpec) -> None:
        await self.inner.load(bundle_dir, spec)
        declared = self.inner.declared
        if declared is None or declared.confine is None:
            raise BadApp(f"{spec.app}.{spec.mote} is not declared with @app.command")
        self.confine = declared.confine
        self.qualname = f"{spec.app}.{spec.mote}"

    async def invoke(
        self, args: list[Any], kwargs: dict[str, Any], timeout_ms: int, *, offload: bool = False
    ) -> Ok | Err:
        started = time.monotonic()
        said = await self.inner.invoke(args, kwargs, timeout_ms, offload=offload)
        if isinstance(said, Err):
            return said
        try:
            argv, files, stdin = _command(said.value, self.qualname)
            confine = msgspec.structs.replace(
                self.confine,
                files={**self.confine.files, **files},
                timeout_s=self._deadline(timeout_ms, started),
            )
            done = await run_confined(
                argv, confine, what=self.qualname, stdin=stdin, hidden=self.hidden
            )
        except MotesError as exc:
            return error_reply(exc)
        return Ok(done.result(self.node))

    def _deadline(self, timeout_ms: int, started: float) -> float:
        """The declared timeout, or what is left of the call's if that ends first."""
        if timeout_ms <= 0:
            return self.confine.timeout_s
        left = timeout_ms / 1000 - (time.monotonic() - started)
        return max(min(self.confine.timeout_s, left), 0.001)

    async def invoke_batch(
        self,
        items: list[list[Any]],
        timeout_ms: int,
        *,
        kwargs: list[dict[str, Any]] | None = None,
        offload: bool = False,
    ) -> list[Ok | Err]:
        kws = kwargs if kwargs is not None else [{}] * len(items)
        calls = (self.invoke(a, k, timeout_ms) for a, k in zip(items, kws, strict=True))
        return list(await asyncio.gather(*calls))

    def take_fuel(self) -> int:
        return 0  # a native program burns no wasm fuel (its CPU is in its ExecResult)

    async def activate(self, key: str, state: bytes | None) -> None:
        raise BadApp(f"{self.qualname} is a command mote, not an actor")

    async def call_actor(
        self, key: str, method: str, args: list[Any], kwargs: dict[str, Any], timeout_ms: int
    ) -> Ok | Err:
        raise BadApp(f"{self.qualname} is a command mote, not an actor")

    def state(self, key: str) -> bytes:
        raise BadApp(f"{self.qualname} is a command mote, not an actor")

    def deactivate(self, key: str) -> None:
        pass

    async def close(self) -> None:
        await self.inner.close()


def _command(value: Any, qualname: str) -> tuple[list[str], dict[str, str], bytes]:
    """(argv, extra files, stdin) from what a command mote's function returned."""
    if isinstance(value, Command):
        argv, files, stdin = value.argv, value.files, value.stdin
    else:
        argv, files, stdin = value, {}, b""
    if isinstance(argv, str) or not isinstance(argv, list | tuple) or not argv:
        raise SandboxDenied(
            f"what {qualname} returned ({type(value).__name__})",
            "a command mote returns a non-empty list of strings, or a motes.Command",
        )
    return list(argv), dict(files), bytes(stdin)
