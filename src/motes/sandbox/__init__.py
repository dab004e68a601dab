"""Hosts of user code, behind one protocol.

The worker process is a trusted shell (subscriptions, the durable consumer, actor
persistence, reply encoding, metering) around a ``Sandbox``: the one thing that runs a
mote's own code. A host loads one mote, invokes it with a deadline, and, for actors,
keeps activations whose state it can hand out and take back as bytes. Everything a
host returns is an ``Ok`` or an ``Err``; it never raises for what user code did.

Hosts: ``InProcessHost`` (``sandbox.inprocess``: the mote's module imported into the
worker itself; for one's own code on one's own nodes), ``WasmHost`` (``sandbox.wasm``:
the mote compiled to a WebAssembly component, run under wasmtime with fuel, a deadline, a
memory limit and only the directories it declares) and ``CommandHost``
(``sandbox.command``: a command mote, whose function names a native program that
``sandbox.confine`` runs confined: bubblewrap, else Landlock, else a typed refusal).
Whether a mote is a wasm one is written in its bundle (``sandbox="wasm"`` on the
decorator), so the worker never imports a wasm mote's module natively.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ..config import NodeConfig
from ..wire.messages import Err, InstanceSpec, Ok

__all__ = ["Sandbox", "host_for", "prepare", "wasm_cache"]


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

    def take_fuel(self) -> int:
        """WebAssembly fuel used since last asked (0 for native code): the meter's."""
        ...

    async def close(self) -> None: ...


def host_for(
    spec: InstanceSpec, bundle_dir: Path, node: NodeConfig, hidden: Sequence[str] = ()
) -> Sandbox:
    """The host that runs ``spec`` (unpacked in ``bundle_dir``) on ``node``: its bundle
    says whether the mote is a wasm one. ``hidden``: the node's own files, which no
    confined program may see."""
    if spec.kind == "command":
        from .command import CommandHost

        return CommandHost(node.id, hidden)
    from .wasm import WasmHost, wasm_mote

    mote = wasm_mote(bundle_dir, spec.mote)
    if mote is not None:
        appdata = Path(node.home or ".") / "appdata"
        return WasmHost(node.id, mote, cache=wasm_cache(node), appdata=appdata)
    from .inprocess import InProcessHost

    return InProcessHost(node.id)


def wasm_cache(node: NodeConfig) -> Path:
    """Where ``node`` keeps compiled WebAssembly motes."""
    return Path(node.wasm_cache) if node.wasm_cache else Path(node.home or ".") / "wasm"


async def prepare(bundle_dir: Path, digest: str, node: NodeConfig) -> None:
    """Compile the bundle's wasm motes, if it has any and they are not cached yet: the
    node agent does it before it hands an instance to a worker (whose start has a short
    deadline) and when a new app version appears. ``BadApp`` if they cannot be built."""
    from ._wasmbuild import ensure_built
    from .wasm import has_wasm

    if has_wasm(bundle_dir):
        await ensure_built(bundle_dir, digest, wasm_cache(node))
