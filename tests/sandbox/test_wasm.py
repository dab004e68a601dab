"""The hostile-guest suite for WebAssembly motes, against the real component and wasmtime.

Each attack ends in a typed error (``SandboxLimit`` naming the limit and what was used,
or ``SandboxDenied`` naming what was refused) within the bound the test states, the
node's files are untouched, and the same host serves the next call. The bounds are
generous (a shared two-core box); the limits themselves are what is asserted.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from motes.config import NodeConfig
from motes.errors import BadArgument, EncodeError, RemoteError, SandboxDenied, SandboxLimit
from motes.sandbox import host_for
from motes.sandbox.wasm import OUTPUT_BYTES, WasmHost
from motes.wire.codec import raise_for
from motes.wire.messages import InstanceSpec

from ..conftest import WasmBuilt

pytestmark = pytest.mark.timeout(900)  # the first test of a fresh machine compiles the app


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A node's home: its key file beside the app's own directories."""
    (tmp_path / "node.key").write_text("SECRET-NODE-KEY\n")
    inputs = tmp_path / "appdata" / "wasmapp" / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "hello.txt").write_text("hello from the node\n")
    (inputs / "escape").symlink_to(tmp_path / "node.key")
    (inputs / "up").symlink_to(tmp_path)
    return tmp_path


class Mote:
    """One wasm mote loaded the way a worker loads it (``host_for``, then ``load``)."""

    def __init__(self, host: WasmHost) -> None:
        self.host = host

    async def __call__(self, *args: Any, timeout_ms: int = 20_000) -> Any:
        return raise_for(await self.host.invoke(list(args), {}, timeout_ms))


@pytest.fixture
async def load(wasm_built: WasmBuilt, home: Path) -> AsyncIterator[Any]:
    hosts: list[WasmHost] = []

    async def loader(mote: str) -> Mote:
        spec = InstanceSpec(
            iid="i1", app="wasmapp", mote=mote, digest=wasm_built.digest, module="wasmapp"
        )
        node = NodeConfig(home=str(home), id="n1", wasm_cache=str(wasm_built.cache))
        host = host_for(spec, wasm_built.bundle_dir, node)
        assert isinstance(host, WasmHost)
        await host.load(wasm_built.bundle_dir, spec)
        hosts.append(host)
        return Mote(host)

    yield loader
    for host in hosts:
        await host.close()


async def test_a_wasm_mote_answers_and_meters_its_fuel(load: Any) -> None:
    square = await load("square")
    assert await square(12) == 144
    assert square.host.take_fuel() > 0
    assert square.host.take_fuel() == 0  # taken once


async def test_errors_keep_their_types(load: Any) -> None:
    fail = await load("fail")
    with pytest.raises(RemoteError) as err:
        await fail("no such thing")
    assert err.value.type_name == "ValueError" and "no such thing" in err.value.detail
    assert isinstance(err.value, ValueError)
    with pytest.raises(BadArgument):
        await fail("one", "two")
    with pytest.raises(EncodeError):
        await fail(2**64)  # cannot even be sent


async def test_infinite_loop_runs_out_of_fuel(load: Any) -> None:
    spin = await load("spin")
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await spin(True)
    assert time.monotonic() - t < 10.0
    assert err.value.limit == "fuel" and err.value.used >= err.value.allowed == 10**8
    assert "fuel" in str(err.value)
    assert await spin(False) == 1000  # each call has its own fuel, and a fresh instance


async def test_infinite_loop_is_stopped_at_the_deadline(load: Any) -> None:
    spin = await load("spin_long")
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await spin(True, timeout_ms=500)
    took = time.monotonic() - t
    assert 0.5 <= took < 5.0
    assert err.value.limit == "deadline" and err.value.used >= 0.5 and err.value.allowed == 0.5
    assert await spin(False) == 1000


@pytest.mark.parametrize(("mote", "size"), [("bomb", 1024), ("big_result", 1 << 30)])
async def test_memory_bomb_hits_the_memory_limit(load: Any, mote: str, size: int) -> None:
    bomb = await load(mote)
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await bomb(size)
    assert time.monotonic() - t < 10.0
    assert err.value.limit == "memory" and err.value.allowed == 64
    assert "memory" in str(err.value) and "64" in str(err.value)
    assert await bomb(1) in (1, b"x")


async def test_its_view_is_only_what_it_declared(load: Any, home: Path) -> None:
    read = await load("read")
    assert await read("/data/hello.txt") == b"hello from the node\n"
    key = str(home / "node.key")
    outside = [
        "/data/../node.key",
        "/data/../../etc/passwd",
        "../node.key",
        "/etc/passwd",
        key,
        "/proc/self/environ",
        "/data/escape",  # a symlink to the node's key, inside its view
        "/data/up/node.key",  # a symlink to the node's home
    ]
    for path in outside:
        with pytest.raises(SandboxDenied) as err:
            await read(path)
        assert "SECRET" not in str(err.value)
        assert err.value.what.endswith(path.rsplit("/", 1)[-1]) or "view" in err.value.reason
    listdir = await load("listdir")
    assert await listdir("/data") == ["escape", "hello.txt", "up"]
    with pytest.raises(SandboxDenied):
        await listdir("/")
    assert await read("/data/hello.txt") == b"hello from the node\n"  # serves the next


async def test_files_are_read_only_unless_writable(load: Any, home: Path) -> None:
    write = await load("write")
    assert await write("/out/note.txt", "kept") == 4
    assert (home / "appdata" / "wasmapp" / "outputs" / "note.txt").read_text() == "kept"
    with pytest.raises(SandboxDenied) as err:
        await write("/data/hello.txt", "overwritten")
    assert err.value.what == "/data/hello.txt"
    with pytest.raises(SandboxDenied):
        await write("/data/new.txt", "created")
    assert not (home / "appdata" / "wasmapp" / "inputs" / "new.txt").exists()
    assert (home / "appdata" / "wasmapp" / "inputs" / "hello.txt").read_text().startswith("hello")


async def test_it_has_no_sockets(load: Any) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        connect = await load("connect")
        with pytest.raises(SandboxDenied) as err:
            await connect("127.0.0.1", port)
        assert err.value.what == "network"
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing reached the host's listener
    assert await connect("127.0.0.1", 0) == "not tried"


async def test_a_gigabyte_of_output_hits_the_output_limit(
    load: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    shout = await load("shout")
    assert await shout(1) == 1
    t = time.monotonic()
    with pytest.raises(SandboxLimit) as err:
        await shout(1024)
    assert time.monotonic() - t < 20.0
    assert err.value.limit == "output" and err.value.allowed == OUTPUT_BYTES
    assert OUTPUT_BYTES < err.value.used < 2 * OUTPUT_BYTES
    assert len(capfd.readouterr().out) <= OUTPUT_BYTES + (1 << 20) + 2
    assert await shout(0) == 0
