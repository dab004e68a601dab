"""Helpers for tests (ours and users'): a real nats-server on port 0, a real local mesh.

>>> async with local_mesh(tmp_path, nodes=3) as mesh:
...     async with mesh.client() as client:
...         await client.deploy("app.py")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..config import Timing
from ..lattice import NatsServer, ServerConfig
from ..node.localmesh import LocalMesh

__all__ = ["FAST", "eventually", "local_mesh", "nats_server", "wire_spy"]

T = TypeVar("T")

FAST = Timing(
    heartbeat_s=0.1,
    failure_timeout_s=1.0,
    lease_ttl_s=1.0,
    scatter_s=0.5,
    instance_wait_s=3.0,
    repair_s=0.5,
)
"""Timing for tests: failures noticed, and leaders replaced, within about a second."""


@asynccontextmanager
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    """A nats-server with JetStream (sync always) in ``tmp_path``, on a free port."""
    server = await NatsServer.start(ServerConfig(store_dir=tmp_path / "js"), workdir=tmp_path)
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def local_mesh(
    tmp_path: Path,
    *,
    nodes: int = 3,
    labels: dict[str, dict[str, str]] | None = None,
    timing: Timing = FAST,
    auth: bool = True,
    meter: str = "on",
    power: dict[str, tuple[float, float]] | None = None,
    wasm_cache: Path | None = None,
) -> AsyncIterator[LocalMesh]:
    """An embedded lattice and ``nodes`` node processes; everything stops on exit.
    ``power``: node name -> (idle, full-load) watts per core of its power model."""
    mesh = LocalMesh(
        tmp_path / "mesh",
        nodes=nodes,
        labels=labels,
        timing=timing,
        write_mesh_file=False,
        auth=auth,
        meter=meter,
        power=power,
        wasm_cache=wasm_cache,
    )
    await mesh.start()
    try:
        yield mesh
    finally:
        await mesh.stop()


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 15.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


def wire_spy(mesh: LocalMesh) -> dict[str, Any]:
    """``nats.connect`` keywords for a plain nats-py client that may subscribe to every
    subject of ``mesh``, replies included (no principal may): for tests that watch what
    crosses the wire. Minted with the mesh's own keys, so only its owner can make one."""
    import base64

    from ..identity import KeyKind, SigningKey
    from ..identity.jwt import Permissions

    if mesh.trust is None:
        return {}
    key = SigningKey.generate(KeyKind.PERSON)
    jwt = mesh.trust.keys.user_jwt(
        key.public, name="wire spy", permissions=Permissions(sub_allow=(">",)), ttl_s=3600
    )
    return {
        "user_jwt_cb": lambda: jwt.encode(),
        "signature_cb": lambda nonce: base64.b64encode(key.sign(nonce.encode())),
    }
