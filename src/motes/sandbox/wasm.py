"""The WebAssembly host: a mote's Python compiled to a component, run under wasmtime.

For code the node's owner does not vouch for. What bounds it:

- **fuel** per call (``fuel=``): wasmtime counts executed instructions; running out
  traps, and the call fails with ``SandboxLimit(limit="fuel")``.
- **a deadline** per call (the call's own timeout, else ``DEFAULT_DEADLINE_S``): the
  engine's epoch is advanced by a ticker thread every ``TICK_S``; a call past its
  deadline traps, ``SandboxLimit(limit="deadline")``.
- **memory** (``memory_mb=``): the store refuses to grow linear memory past it; the
  guest's allocation fails, ``SandboxLimit(limit="memory")``.
- **output**: stdout plus stderr over ``OUTPUT_BYTES`` (1 MiB) per call fails the write,
  ``SandboxLimit(limit="output")``; what fits goes to the worker's log.
- **its view**: WASI preopens are all it sees: each ``files=`` / ``writable=`` entry maps
  a guest directory to one under the node's ``appdata/<app>/`` (read-only unless in
  ``writable``); no environment, no arguments, no sockets (wasmtime-py exposes none).
  Reaching outside fails with ``SandboxDenied``.

After a trap or a limit the instance is discarded and a fresh one made from the
compiled component (about a millisecond), so the mote serves the next call. Calls run
one at a time, inline like native sync motes (``offload`` runs them in a thread).
Actors are not supported yet: ``@app.actor(sandbox="wasm")`` is refused when declared.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from ..app.bundle import MANIFEST
from ..errors import (
    BadApp,
    BadArgument,
    EncodeError,
    MotesError,
    RemoteError,
    SandboxDenied,
    SandboxLimit,
)
from ..wire.codec import error_reply
from ..wire.messages import Err, InstanceSpec, Ok
from ._wasmbuild import engine, ensure_built

__all__ = [
    "DEFAULT_DEADLINE_S",
    "OUTPUT_BYTES",
    "WasmHost",
    "WasmMote",
    "has_wasm",
    "wasm_mote",
]

TICK_S = 0.01
DEFAULT_DEADLINE_S = 60.0
OUTPUT_BYTES = 1024 * 1024
_EFBIG = 27  # the errno a write past the output limit fails with

_encoder = msgspec.msgpack.Encoder()
_decode_report = msgspec.msgpack.Decoder(dict[str, str]).decode


@dataclass(frozen=True, slots=True)
class WasmMote:
    """One wasm mote's declared limits and view, as its bundle's manifest carries them."""

    fuel: int
    memory_mb: int
    files: dict[str, str] = field(default_factory=dict)
    writable: dict[str, str] = field(default_factory=dict)


def _declared(bundle_dir: Path) -> dict[str, dict[str, Any]]:
    wasm: dict[str, dict[str, Any]] = json.loads((bundle_dir / MANIFEST).read_text()).get(
        "wasm", {}
    )
    return wasm


def wasm_mote(bundle_dir: Path, mote: str) -> WasmMote | None:
    """The mote's wasm settings from its bundle, or None if it runs natively."""
    entry = _declared(bundle_dir).get(mote)
    return None if entry is None else WasmMote(**entry)


def has_wasm(bundle_dir: Path) -> bool:
    """Whether the bundle declares any wasm mote."""
    return bool(_declared(bundle_dir))


class _Ticker:
    """Advances an engine's epoch every ``TICK_S`` until stopped: the wall clock that
    epoch deadlines count in. ``increment_epoch`` is an atomic add, safe from any thread."""

    def __init__(self, eng: Any) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(eng,), daemon=True)
        self._thread.start()

    def _run(self, eng: Any) -> None:
        while not self._stop.wait(TICK_S):
            eng.increment_epoch()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class WasmHost:
    """Runs one wasm function mote; see the module docstring for what confines it."""

    def __init__(self, node: str, mote: WasmMote, *, cache: Path, appdata: Path) -> None:
        self.node = node
        self.mote = mote
        self._cache = cache
        self._appdata = appdata
        self._qualname = ""
        self._name = ""
        self._engine: Any = None
        self._component: Any = None
        self._linker: Any = None
        self._ticker: _Ticker | None = None
        self._store: Any = None
        self._func: Any = None
        self._view: list[str] = []
        self._preopens: list[tuple[str, str, bool]] = []
        self._out = 0
        self._fuel_used = 0
        self._lock = threading.Lock()

    @property
    def is_async(self) -> bool:
        return False

    async def load(self, bundle_dir: Path, spec: InstanceSpec) -> None:
        from wasmtime import WasmtimeError
        from wasmtime.component import Component, Linker

        self._qualname, self._name = f"{spec.app}.{spec.mote}", spec.mote
        if spec.kind != "function":
            raise BadApp(f"{self._qualname}: wasm actors are not supported yet")
        compiled = await ensure_built(bundle_dir, spec.digest, self._cache)
        self._preopens = self._view_of(self._appdata / spec.app)
        self._view = sorted(guest for guest, _, _ in self._preopens)
        self._engine = engine()
        try:
            self._component = await asyncio.to_thread(
                Component.deserialize_file, self._engine, str(compiled)
            )
            self._linker = Linker(self._engine)
            self._linker.add_wasip2()
            self._ticker = _Ticker(self._engine)
            self._fresh()
        except WasmtimeError as exc:
            raise BadApp(f"loading {self._qualname} as WebAssembly failed: {exc}") from None

    def _view_of(self, root: Path) -> list[tuple[str, str, bool]]:
        """(guest path, host directory, writable) for every declared directory, each
        made under the app's own directory on this node if it is not there yet."""
        out = []
        for table, mutable in ((self.mote.files, False), (self.mote.writable, True)):
            for guest, rel in table.items():
                host = (root / rel).resolve()
                if not host.is_relative_to(root.resolve()):
                    raise BadApp(f"{self._qualname}: {rel!r} leaves the app's directory")
                host.mkdir(parents=True, exist_ok=True)
                out.append((guest, str(host), mutable))
        return out

    def _fresh(self) -> None:
        """A new store and instance: after a trap the old one may not be entered again."""
        from wasmtime import Store, WasiConfig

        wasi = WasiConfig()
        for guest, host, mutable in self._preopens:
            wasi.preopen_dir(host, guest, mutable)
        wasi.stdout_custom = self._output
        wasi.stderr_custom = self._output
        store = Store(self._engine)
        store.set_wasi(wasi)
        store.set_limits(memory_size=self.mote.memory_mb << 20)
        store.set_fuel(self.mote.fuel)
        store.set_epoch_deadline(math.ceil(DEFAULT_DEADLINE_S / TICK_S))
        instance = self._linker.instantiate(store, self._component)
        self._store, self._func = store, instance.get_func(store, "call")

    def _output(self, data: bytes) -> int:
        self._out += len(data)
        if self._out > OUTPUT_BYTES:
            return -_EFBIG
        sys.stdout.buffer.write(data)
        return len(data)

    # --- calls ---------------------------------------------------------------------------

    def _call(self, args: list[Any], kwargs: dict[str, Any], timeout_ms: int) -> Ok | Err:
        from wasmtime import WasmtimeError

        try:
            payload = _encoder.encode([self._name, args, kwargs, self._view])
        except (TypeError, ValueError, OverflowError) as exc:
            return error_reply(EncodeError(f"the arguments of {self._qualname}", "?", str(exc)))
        deadline = timeout_ms / 1000 if timeout_ms > 0 else DEFAULT_DEADLINE_S
        with self._lock:
            store, fuel = self._store, self.mote.fuel
            self._out = 0
            store.set_fuel(fuel)
            store.set_epoch_deadline(max(1, math.ceil(deadline / TICK_S)))
            started = time.perf_counter()
            try:
                result = self._func(store, payload)
                self._func.post_return(store)
            except WasmtimeError as exc:
                took = time.perf_counter() - started
                used = fuel - store.get_fuel()
                self._fuel_used += used
                self._fresh()
                return error_reply(self._trapped(exc, used, took, deadline))
            used = fuel - store.get_fuel()
            self._fuel_used += used
            if self._out > OUTPUT_BYTES:
                self._fresh()
                return error_reply(self._limit("output", self._out, OUTPUT_BYTES, "bytes"))
            if result.tag == "ok":
                return Ok(msgspec.msgpack.decode(result.payload))
            report = _decode_report(result.payload)
            if report.get("kind") == "memory":
                self._fresh()  # its heap is at the limit: start the next call clean
            return error_reply(self._guest_error(report))

    def _limit(self, limit: str, used: float, allowed: float, unit: str) -> SandboxLimit:
        return SandboxLimit(f"wasm mote {self._qualname}", limit, used, allowed, unit)

    def _trapped(self, exc: Exception, used: int, took: float, deadline: float) -> MotesError:
        if self._store is not None and used >= self.mote.fuel:
            return self._limit("fuel", used, self.mote.fuel, "fuel units")
        if took >= deadline:
            return self._limit("deadline", round(took, 3), deadline, "s")
        return RemoteError(self._qualname, "Trap", str(exc) or "wasm trap", "", self.node)

    def _guest_error(self, report: dict[str, str]) -> MotesError:
        kind, message = report.get("kind", "remote"), report.get("message", "")
        if kind == "memory":
            allowed = self.mote.memory_mb
            return self._limit("memory", allowed, allowed, "MiB")
        if kind == "denied":
            what, _, reason = message.partition(": ")
            return SandboxDenied(what, reason or message)
        if kind == "bad_argument":
            return BadArgument(self._qualname, message)
        if kind == "encode":
            type_name, _, detail = message.partition(": ")
            return EncodeError(f"the result of {self._qualname}", type_name, detail)
        tb = report.get("traceback", "")
        print(f"[{self._qualname}] call failed:\n{tb}", file=sys.stderr, end="", flush=True)
        return RemoteError(self._qualname, report.get("type", "Exception"), message, tb, self.node)

    async def invoke(
        self, args: list[Any], kwargs: dict[str, Any], timeout_ms: int, *, offload: bool = False
    ) -> Ok | Err:
        if offload:
            return await asyncio.to_thread(self._call, args, kwargs, timeout_ms)
        return self._call(args, kwargs, timeout_ms)

    async def invoke_batch(
        self,
        items: list[list[Any]],
        timeout_ms: int,
        *,
        kwargs: list[dict[str, Any]] | None = None,
        offload: bool = False,
    ) -> list[Ok | Err]:
        kws = kwargs if kwargs is not None else [{}] * len(items)

        def run() -> list[Ok | Err]:
            return [self._call(a, k, timeout_ms) for a, k in zip(items, kws, strict=True)]

        return await asyncio.to_thread(run) if offload else run()

    def take_fuel(self) -> int:
        used, self._fuel_used = self._fuel_used, 0
        return used

    # --- actors (not supported yet: refused at declaration and at load) -----------------

    async def activate(self, key: str, state: bytes | None) -> None:
        raise BadApp(f"{self._qualname}: wasm actors are not supported yet")

    async def call_actor(
        self, key: str, method: str, args: list[Any], kwargs: dict[str, Any], timeout_ms: int
    ) -> Ok | Err:
        return error_reply(BadApp(f"{self._qualname}: wasm actors are not supported yet"))

    def state(self, key: str) -> bytes:
        raise BadApp(f"{self._qualname}: wasm actors are not supported yet")

    def deactivate(self, key: str) -> None:
        pass

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        self._store = self._func = None
