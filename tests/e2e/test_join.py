"""Nodes joining a lattice that was started elsewhere (a server, or another mesh)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import motes
from motes.node.localmesh import LocalMesh
from motes.testing import FAST, eventually, nats_server

from ..conftest import APPS


async def test_nodes_join_an_existing_server_and_a_node_joins_later(tmp_path: Path) -> None:
    async with nats_server(tmp_path / "server") as server:
        mesh = LocalMesh(
            tmp_path / "mesh", nodes=2, url=server.url, timing=FAST, write_mesh_file=False
        )
        async with mesh, motes.connect(server.url, timing=FAST) as client:
            await client.deploy(APPS / "second.py")
            assert await client.call("second.hello", "lattice") == "hello lattice"
            # Another machine runs `motes --url URL node --name laptop`.
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "motes.cli",
                "--home",
                str(tmp_path / "laptop"),
                "--url",
                server.url,
                "node",
                "--name",
                "laptop",
                "--label",
                "screen=true",
                env={**os.environ, "MOTES_HEARTBEAT_S": "0.1"},
            )
            try:

                async def joined() -> list[str] | None:
                    names = [s.record.name for s in await client.ops.nodes() if s.state == "ready"]
                    return names if "laptop" in names else None

                names = await eventually(joined, what="the laptop node joining")
                assert sorted(names) == ["laptop", "node-1", "node-2"]
                laptop = next(s for s in await client.ops.nodes() if s.record.name == "laptop")
                assert laptop.record.labels == {"screen": "true"}
            finally:
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0

            async def withdrawn() -> bool:
                return "laptop" not in [s.record.name for s in await client.ops.nodes()]

            await eventually(withdrawn, what="the laptop withdrawing on SIGTERM")
