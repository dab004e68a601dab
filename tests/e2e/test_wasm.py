"""WebAssembly motes on a real mesh: deployed, called, mapped and called durably like
native ones; their limits arrive as typed errors; and the same pure-Python function,
declared natively and with ``sandbox="wasm"``, gives identical results on 1,000
varied inputs."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from motes.client import Mesh
from motes.errors import RemoteError, SandboxDenied, SandboxLimit
from motes.testing import FAST, local_mesh

from ..conftest import WASM_APP, WasmBuilt

pytestmark = pytest.mark.timeout(900)  # a fresh machine compiles the app first


@pytest.fixture
async def client(tmp_path: Path, wasm_built: WasmBuilt) -> AsyncIterator[Mesh]:
    async with local_mesh(tmp_path, nodes=1, wasm_cache=wasm_built.cache) as mesh:
        # min=0 motes start on their first call: on a loaded box that takes seconds.
        async with mesh.client(timing=dataclasses.replace(FAST, instance_wait_s=60.0)) as c:
            await c.deploy(WASM_APP, timeout=120)
            yield c


async def test_call_map_and_durable_call(client: Mesh) -> None:
    assert await client.call("wasmapp.square", 12) == 144
    assert [r async for r in client.map("wasmapp.square", range(50))] == [x * x for x in range(50)]
    handle = await client.submit("wasmapp.square", 9)
    assert await handle.result(timeout=60) == 81
    durable = [r async for r in client.map("wasmapp.square", [1, 2, 3], durable=True)]
    assert durable == [1, 4, 9]


async def test_limits_and_refusals_cross_the_wire_typed(client: Mesh) -> None:
    with pytest.raises(SandboxLimit) as limit:
        await client.call("wasmapp.spin", True, timeout=60)
    assert limit.value.limit == "fuel" and limit.value.allowed == 10**8
    assert await client.call("wasmapp.spin", False) == 1000
    with pytest.raises(SandboxDenied) as denied:
        await client.call("wasmapp.read", "/etc/hostname", timeout=60)
    assert denied.value.what == "/etc/hostname"
    with pytest.raises(RemoteError) as remote:
        await client.call("wasmapp.fail", "as asked", timeout=60)
    assert isinstance(remote.value, ValueError) and "as asked" in str(remote.value)


def _text(rng: random.Random) -> str:
    # Scripts whose case mapping every Unicode version in play agrees on: the guest's
    # CPython is newer than the host's, and Unicode 16 gave U+019B (in Latin Extended-B)
    # an uppercase, so "ƛ".upper() differs between them.
    blocks = [(0x20, 0x7E), (0xC0, 0x17F), (0x391, 0x3C9), (0x410, 0x44F), (0x4E00, 0x4FFF)]
    lo, hi = rng.choice(blocks)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(0, 12)))


def _value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["none", "bool", "int", "bigint", "float", "special", "str", "bytes"]
    if depth < 3:
        kinds += ["list", "dict"]
    kind = rng.choice(kinds)
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-300, 300)
    if kind == "bigint":
        return rng.randint(-(2**63), 2**63 - 1)
    if kind == "float":
        return rng.uniform(-1e6, 1e6) * 10.0 ** rng.randint(-300, 300)
    if kind == "special":
        return rng.choice([0.0, -0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308])
    if kind == "str":
        return _text(rng)
    if kind == "bytes":
        return rng.randbytes(rng.randint(0, 40))
    if kind == "list":
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 5))}


async def test_native_and_wasm_give_identical_results(client: Mesh) -> None:
    rng = random.Random(20261202)
    inputs = [_value(rng) for _ in range(1000)]
    native = [r async for r in client.map("wasmapp.shape_native", inputs, return_exceptions=True)]
    wasm = [r async for r in client.map("wasmapp.shape_wasm", inputs, timeout=120)]
    assert not any(isinstance(r, Exception) for r in native)
    assert len(wasm) == len(native) == 1000
    for x, a, b in zip(inputs, native, wasm, strict=True):
        # Bytes, not ==: -0.0 and 0.0 (equal as floats) must come back as they went.
        assert msgspec.msgpack.encode(a) == msgspec.msgpack.encode(b), x
