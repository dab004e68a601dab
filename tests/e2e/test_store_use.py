"""Stored data in use: a mote reads a blob passed to it by capability, and a mote that
declares what it reads is placed where that data is (``motes why`` says so)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from motes.client import Mesh
from motes.errors import BadApp
from motes.store import Policy
from motes.testing import FAST, eventually, local_mesh


def reader_app(path: Path, cap: str) -> Path:
    path.write_text(
        f"""
import hashlib

import motes

app = motes.App("reader")


@app.mote(reads=[{cap!r}])
async def digest(cap: str) -> dict:
    async with motes.connect() as mesh:  # inside a mote: the mesh and the node's cache
        data = await mesh.store.get(cap)
        net = mesh.store.net
    return {{
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "over_lattice": net.bytes_in,
        "from_own_disk": net.bytes_local,
    }}
"""
    )
    return path


async def test_a_mote_reads_by_capability_where_its_data_is(tmp_path: Path) -> None:
    labels = {"node-3": {"zone": "data"}}
    async with local_mesh(tmp_path, nodes=3, labels=labels) as mesh:
        async with mesh.client(timing=FAST) as client:
            data = os.urandom(6 * 2**20)
            cap = await client.store.put(data, policy=Policy.parse("label.zone=data"))
            node3 = next(n for n in await client.ops.nodes() if n.record.name == "node-3").record.id
            assert [e.cap for e in await client.store.ls(cap)] == [cap]  # a file lists as itself

            async def reported() -> bool:
                usage = await client.store.du()
                return any(h.node == node3 and h.files for h in usage.nodes)

            await eventually(reported, what="node-3's holdings report")
            await client.deploy(reader_app(tmp_path / "reader.py", cap))
            placed = [i.node for i in await client.ops.ps() if i.mote == "digest"]
            assert placed == [node3]  # not the first node by id, as without the data
            why = await client.ops.why("reader.digest")
            row = next(r for r in why.nodes if r.node == node3)
            assert any(v.rule == "locality" and "holds 6.0 MiB" in v.reason for v in row.verdicts)

            result = await client.call("reader.digest", cap, timeout=60)
            assert result["sha256"] == hashlib.sha256(data).hexdigest()
            assert result["size"] == len(data)
            # Placed with its data, the mote read it from its node's disk: nothing crossed
            # the lattice.
            assert result["over_lattice"] == 0 and result["from_own_disk"] >= len(data)


async def test_deploy_refuses_a_mote_that_reads_a_bad_capability(
    client: Mesh, tmp_path: Path
) -> None:
    with pytest.raises(BadApp, match="reads: bad capability"):
        await client.deploy(reader_app(tmp_path / "bad_reader.py", "motes:r1:broken"))
