"""Hosts of user code, behind one protocol.

The worker process is a trusted shell (subscriptions, the durable consumer, actor
persistence, reply encoding, metering) around a ``Sandbox``: the one thing that runs a
mote's own code. A host loads one mote, invokes it with a deadline, and, for actors,
keeps activations whose state it can hand out and take back as bytes. Everything a
host returns is an ``Ok`` or an ``Err``; it never raises for what user code did.

Hosts: ``InProcessHost`` (``sandbox.inprocess``: the mote's module imported into the
worker itself; for one's own code on one's own nodes) and ``CommandHost``
(``sandbox.command``: a command mote, whose function names a native program that
``sandbox.confine`` runs confined: bubblewrap, else Landlock, else a typed refusal).
A WebAssembly host will implement the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..wire.messages import Err, InstanceSpec, Ok

__all__ = ["Sandbox", "host_for"]


class Sandbox(Protocol):
    """One mote's user code, loaded."""

    @property
    def is_async(self) -> bool:
        """Whether the mote serves many calls at once (async) or one at a time."""
        ...

    async def load(self, bundle_dir: Path, spec: InstanceSpec) -> None:
        """Load the mote; ``BadApp`` (naming what failed) if it cannot be."""
        ...

    async def invoke(
        self, args: list[Any], kwargs: dict[str, Any], timeout_ms: int, *, offload: bool = False
    ) -> Ok | Err:
        """One call of a function mote. ``offload``: do not hold the caller's event loop
        while sync code runs (durable calls keep telling the queue they are alive)."""
        ...

    async def invoke_batch(
        self,
        items: list[list[Any]],
        timeout_ms: int,
        *,
        kwargs: list[dict[str, Any]] | None = None,
        offload: bool = False,
    ) -> list[Ok | Err]:
        """Several calls (a ``map`` batch, or a sync mote's durable calls), results in
        order. ``kwargs[i]``: item i's keyword arguments (None: no keywords for any).
        ``offload``: sync code runs off the event loop, the whole batch in one hop."""
        ...

    async def activate(self, key: str, state: bytes | None) -> None:
        """Make the activation for ``key``: from saved ``state``, or new (``None``)."""
        ...

    async def call_actor(
        self, key: str, method: str, args: list[Any], kwargs: dict[str, Any], timeout_ms: int
    ) -> Ok | Err:
        """Call ``method`` on ``key``'s activation (``activate`` it first)."""
        ...

    def state(self, key: str) -> bytes:
        """The activation's state as bytes to persist; ``EncodeError`` if it cannot be."""
        ...

    def deactivate(self, key: str) -> None:
        """Forget the activation (its state is already persisted)."""
        ...

    async def close(self) -> None: ...


def host_for(spec: InstanceSpec, node: str, hidden: Sequence[str] = ()) -> Sandbox:
    """The host that runs ``spec`` on this node; ``hidden``: the node's own files, which
    no confined program may see."""
    if spec.kind == "command":
        from .command import CommandHost

        return CommandHost(node, hidden)
    from .inprocess import InProcessHost

    return InProcessHost(node)
