"""``mesh.exec`` end to end on a real, authenticated local mesh: a program runs on the
node asked, confined (only the declared paths, a private /tmp, its own PID namespace,
no network), its output bounded and its whole tree killed at the deadline; a person
without a ``run`` grant on a node is refused there and nothing runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import motes
from motes.errors import Forbidden, SandboxDenied, SandboxLimit
from motes.sandbox.confine import _bwrap_probe
from motes.testing import FAST, eventually, local_mesh
from motes.trust.join import join

pytestmark = pytest.mark.skipif(bool(_bwrap_probe()), reason=_bwrap_probe() or "-")

PY = "/usr/bin/python3"


def _running(marker: str) -> list[int]:
    """Host processes whose command line holds ``marker``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(int(pid))
        except OSError:
            continue
    return out


async def test_exec_runs_confined_on_the_node_asked(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    out.mkdir()
    (data / "in.txt").write_text("three\nlines\nhere\n")
    async with local_mesh(tmp_path, nodes=2) as mesh, mesh.client(timing=FAST) as owner:
        nodes = {s.record.name: s.record.id for s in await owner.ops.nodes()}
        done = await owner.exec(
            ["sh", "-c", "wc -l < /data/in.txt; echo $$ > /out/pid; ls /; echo oops >&2; exit 3"],
            files={"/data": str(data)},
            writable={"/out": str(out)},
            node="node-2",
        )
        assert done.returncode == 3 and done.node == nodes["node-2"]
        assert done.stdout.splitlines()[0] == b"3" and done.stderr == b"oops\n"
        assert done.backend == "bwrap" and done.wall_s > 0
        assert int((out / "pid").read_text()) < 10  # its own PID namespace
        seen = set(done.stdout.decode().split())
        assert not {"root", "home", "var", "srv"} & seen  # none of the node's own trees
        assert (await owner.exec(["cat", "/etc/hostname"])).returncode != 0

        # The same from the command line: its output is ours, its exit status too.
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "motes.cli", "--home", str(mesh.home), "--url", mesh.url,
             "exec", "--node", "node-1", "--file", f"/data={data}", "--",
             "sh", "-c", "cat /data/in.txt; echo no >&2; exit 4"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (cli.returncode, cli.stdout, cli.stderr) == (4, "three\nlines\nhere\n", "no\n")

        # No network unless granted: the lattice's own port, on loopback, is not there.
        port = int(mesh.url.rsplit(":", 1)[1])
        probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"
        refused = await owner.exec([PY, "-I", "-c", probe])
        assert refused.returncode != 0 and b"Error" in refused.stderr
        assert (await owner.exec([PY, "-I", "-c", probe], net=True)).returncode == 0

        # The node's own files (its keys) are never shown.
        with pytest.raises(SandboxDenied, match="node's own files"):
            await owner.exec(["ls", "/n"], files={"/n": str(tmp_path)})

        # Limits are positive, and no larger than the node can give.
        with pytest.raises(SandboxDenied, match="positive"):
            await owner.exec(["true"], timeout=-1)
        with pytest.raises(SandboxDenied, match="this node has"):
            await owner.exec(["true"], memory_mb=1 << 30)

        # Output is bounded, by the caller and by what one reply can carry.
        with pytest.raises(SandboxLimit) as hit:
            await owner.exec(["head", "-c", "100000", "/dev/zero"], output_bytes=1000)
        assert hit.value.limit == "output" and hit.value.allowed == 1000
        with pytest.raises(SandboxDenied, match="output_bytes"):
            await owner.exec(["true"], output_bytes=1 << 30)

        # At the deadline the whole tree is killed, children included.
        marker = "1000.4242"
        with pytest.raises(SandboxLimit) as hit:
            await owner.exec(["sh", "-c", f"sleep {marker} & sleep {marker} & wait"], timeout=1)
        assert hit.value.limit == "deadline"

        async def gone() -> bool:
            return not _running(marker)

        await eventually(gone, timeout=5, what="the timed-out tree being killed")


async def test_exec_needs_a_run_grant_on_that_node(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    touch = ["sh", "-c", "echo ran > /out/ran"]
    async with local_mesh(tmp_path, nodes=2) as mesh, mesh.client(timing=FAST) as owner:
        nodes = {s.record.name: s.record.id for s in await owner.ops.nodes()}
        token = await owner.trust.invite("person", "ada", grants=[("call", "nothing")])
        ada_home = tmp_path / "ada"
        await join(token.token, ada_home, servers=mesh.servers)

        async with motes.connect(home=ada_home, timing=FAST) as ada:
            with pytest.raises(Forbidden):
                await ada.exec(touch, writable={"/out": str(out)}, node=nodes["node-1"])
            with pytest.raises(Forbidden):
                await ada.exec(touch, writable={"/out": str(out)})
        assert not (out / "ran").exists()

        grant = await owner.trust.grant("ada", "run", nodes["node-1"])
        async with motes.connect(home=ada_home, timing=FAST) as ada:
            done = await ada.exec(touch, writable={"/out": str(out)})  # n1: the one it may
            assert done.returncode == 0 and done.node == nodes["node-1"]
            assert (out / "ran").read_text() == "ran\n"
            (out / "ran").unlink()
            with pytest.raises(Forbidden):
                await ada.exec(touch, writable={"/out": str(out)}, node="node-2")

            # Revoked while her session (and its permission to ask) lasts: the node
            # itself checks the grant at every request.
            await owner.trust.revoke_grant(grant.id)
            with pytest.raises(Forbidden, match="no run grant"):
                await ada.exec(touch, writable={"/out": str(out)}, node="node-1")
        assert not (out / "ran").exists()


TOOLS = """
import motes

app = motes.App("cmdtools")


@app.command(files={{"/data": {data!r}}}, timeout=5, min=1, max=1)
def count(name: str) -> list[str]:
    return ["wc", "-l", "/data/" + name]


@app.command(timeout=1, min=1, max=1)
def hang(text: str) -> motes.Command:
    return motes.Command(argv=["sh", "-c", "cat; sleep 1000.4343"], stdin=text.encode())


@app.command(min=1, max=1)
def wrong() -> str:
    return "not an argv"
"""


async def test_a_command_mote_runs_what_its_function_names_confined(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("three\nlines\nhere\n")
    app = tmp_path / "cmdtools.py"
    app.write_text(TOOLS.format(data=str(data)))
    async with local_mesh(tmp_path, nodes=1) as mesh, mesh.client(timing=FAST) as owner:
        await owner.deploy(app)
        done = await owner.call("cmdtools.count", "in.txt")
        assert done["returncode"] == 0 and done["stdout"] == b"3 /data/in.txt\n"
        assert done["backend"] == "bwrap" and done["node"]
        missing = await owner.call("cmdtools.count", "nope.txt")
        assert missing["returncode"] != 0 and b"nope.txt" in missing["stderr"]

        with pytest.raises(SandboxLimit) as hit:
            await owner.call("cmdtools.hang", "hello")
        assert hit.value.limit == "deadline" and hit.value.allowed == 1

        async def gone() -> bool:
            return not _running("1000.4343")

        await eventually(gone, timeout=5, what="the command's tree being killed")
        with pytest.raises(SandboxDenied, match="non-empty list"):
            await owner.call("cmdtools.wrong")
