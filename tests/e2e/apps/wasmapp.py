"""A test app with WebAssembly motes: ordinary ones, one function declared both ways
(native and wasm, for the equality test) and hostile ones (tests/sandbox/test_wasm.py).

Nothing here imports more than the standard library and ``motes.App``: inside the
component the module runs under the guest's own ``App``.
"""

from __future__ import annotations

import os
from typing import Any

import motes

app = motes.App("wasmapp")

VIEW = {"/data": "inputs"}
OUT = {"/out": "outputs"}


def shape(x: Any) -> Any:
    """A pure function of its input that touches every msgpack type on the way back."""
    if isinstance(x, bool) or x is None:
        return {"kind": "atom", "value": x, "not": not x}
    if isinstance(x, int):
        return [x, -x, x // 3, x % 7, x * x if abs(x) < 2**31 else x >> 5, float(x) / 8]
    if isinstance(x, float):
        return {"half": x / 2, "neg": -x, "repr": repr(x)}
    if isinstance(x, str):
        return {"upper": x.upper(), "rev": x[::-1], "len": len(x), "utf8": x.encode()}
    if isinstance(x, bytes):
        return [x[::-1], len(x), x.hex()]
    if isinstance(x, list):
        return [shape(item) for item in reversed(x)]
    if isinstance(x, dict):
        return {str(k) + "!": shape(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    raise TypeError(f"unexpected {type(x).__name__}")


app.mote(name="shape_native", max=1)(shape)
app.mote(name="shape_wasm", sandbox="wasm", max=1)(shape)
# The rest start on their first call (min=0): the mesh tests use only the three above.


@app.mote(sandbox="wasm", max=1)
def square(x: int) -> int:
    return x * x


@app.mote(sandbox="wasm", min=0, max=1, fuel=10**9)
def fail(message: str) -> None:
    raise ValueError(message)


# Hostile motes: each attacks only when asked, so the same instance can show that it
# still serves an ordinary call afterwards.


@app.mote(sandbox="wasm", min=0, max=1, fuel=10**8)
def spin(forever: bool) -> int:
    n = 0
    while forever or n < 1000:
        n += 1
    return n


@app.mote(sandbox="wasm", min=0, max=1, fuel=10**13)
def spin_long(forever: bool) -> int:
    """Fuel enough for minutes: the deadline stops it."""
    return spin(forever)


@app.mote(sandbox="wasm", min=0, max=1, memory_mb=64)
def bomb(megabytes: int) -> int:
    hoard = [bytearray(1 << 20) for _ in range(megabytes)]
    return len(hoard)


@app.mote(sandbox="wasm", min=0, max=1, memory_mb=64)
def big_result(size: int) -> bytes:
    return b"x" * size


@app.mote(sandbox="wasm", min=0, max=1, files=VIEW)
def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@app.mote(sandbox="wasm", min=0, max=1, files=VIEW)
def listdir(path: str) -> list[str]:
    return sorted(os.listdir(path))


@app.mote(sandbox="wasm", min=0, max=1, files=VIEW, writable=OUT)
def write(path: str, text: str) -> int:
    with open(path, "w") as f:
        return f.write(text)


@app.mote(sandbox="wasm", min=0, max=1)
def connect(host: str, port: int) -> str:
    if port == 0:
        return "not tried"
    import socket

    with socket.create_connection((host, port), timeout=1):
        return "connected"


@app.mote(sandbox="wasm", min=0, max=1)
def shout(megabytes: int) -> int:
    chunk = "x" * (1 << 20)
    for _ in range(megabytes):
        print(chunk)
    return megabytes
