"""The in-process host: the mote's module imported into the worker process itself.

For one's own code on one's own nodes: no confinement beyond the worker's process, and
no cost beyond a Python call. Sync handlers run inline on the worker's event loop (one
instance per worker, one call at a time, so nothing else waits on it); ``offload`` runs
them in a thread. An actor activation is an instance of the declared class; its state is
its attributes, as msgpack.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import json
import re
import sys
import traceback
from pathlib import Path
from typing import Any

import msgspec

from ..app.app import Declared
from ..app.bundle import MANIFEST, find_app
from ..errors import BadApp, BadArgument, EncodeError, MotesError
from ..wire.codec import error_reply
from ..wire.messages import Err, InstanceSpec, Ok
from ._handlers import Handler

__all__ = ["InProcessHost", "check_requirements"]

_state_encoder = msgspec.msgpack.Encoder()


class InProcessHost:
    def __init__(self, node: str) -> None:
        self.node = node
        self._handler: Handler | None = None
        self._cls: type | None = None
        self._qualname = ""
        self._methods: dict[str, Handler] = {}
        self._objects: dict[str, Any] = {}
        self.declared: Declared | None = None
        """The mote as its app declares it, once loaded."""

    @property
    def is_async(self) -> bool:
        return self._handler is not None and self._handler.is_async

    async def load(self, bundle_dir: Path, spec: InstanceSpec) -> None:
        check_requirements(bundle_dir)
        self._qualname = f"{spec.app}.{spec.mote}"
        sys.path.insert(0, str(bundle_dir))
        try:
            module = importlib.import_module(spec.module)
            app = find_app(module, spec.app)
            target = app.target(spec.mote)
            self.declared = app.motes[spec.mote]
        except MotesError:
            raise
        except Exception as exc:
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            raise BadApp(f"loading {self._qualname} failed: {type(exc).__name__}: {exc}") from None
        if spec.kind == "actor":
            self._cls = target
        else:
            self._handler = Handler(target, self._qualname, self.node)

    # --- functions -----------------------------------------------------------------------

    async def invoke(
        self, args: list[Any], kwargs: dict[str, Any], timeout_ms: int, *, offload: bool = False
    ) -> Ok | Err:
        handler = self._handler
        assert handler is not None, "not a function mote"
        if offload and not handler.is_async:
            return await asyncio.to_thread(handler.invoke_sync, args, kwargs)
        return await handler.invoke(args, kwargs, timeout_ms)

    async def invoke_batch(
        self,
        items: list[list[Any]],
        timeout_ms: int,
        *,
        kwargs: list[dict[str, Any]] | None = None,
        offload: bool = False,
    ) -> list[Ok | Err]:
        handler = self._handler
        assert handler is not None, "not a function mote"
        kws = kwargs if kwargs is not None else [{}] * len(items)
        if handler.is_async:
            calls = (handler.invoke(a, k, timeout_ms) for a, k in zip(items, kws, strict=True))
            return list(await asyncio.gather(*calls))

        def run() -> list[Ok | Err]:
            return [handler.invoke_sync(a, k) for a, k in zip(items, kws, strict=True)]

        return await asyncio.to_thread(run) if offload else run()

    # --- actors --------------------------------------------------------------------------

    def _method(self, name: str) -> Handler:
        handler = self._methods.get(name)
        if handler is None:
            fn = getattr(self._cls, name, None)
            if name.startswith("_") or not callable(fn):
                raise BadArgument(self._qualname, f"actor has no public method {name!r}")
            handler = Handler(fn, f"{self._qualname}.{name}", self.node)
            self._methods[name] = handler
        return handler

    async def activate(self, key: str, state: bytes | None) -> None:
        assert self._cls is not None, "not an actor"
        if state:
            obj: Any = object.__new__(self._cls)  # restore state without running __init__
            obj.__dict__.update(msgspec.msgpack.decode(state))
        else:
            obj = self._cls()
        self._objects[key] = obj

    async def call_actor(
        self, key: str, method: str, args: list[Any], kwargs: dict[str, Any], timeout_ms: int
    ) -> Ok | Err:
        try:
            handler = self._method(method)
        except MotesError as exc:
            return error_reply(exc)
        return await handler.invoke([self._objects[key], *args], kwargs, timeout_ms)

    def state(self, key: str) -> bytes:
        obj = self._objects[key]
        try:
            return _state_encoder.encode(vars(obj))
        except (TypeError, ValueError, OverflowError) as exc:
            what = f"the state of actor {self._qualname}"
            raise EncodeError(what, type(obj).__name__, str(exc)) from None

    def deactivate(self, key: str) -> None:
        self._objects.pop(key, None)

    def take_fuel(self) -> int:
        return 0

    async def close(self) -> None:
        self._objects.clear()


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def check_requirements(bundle_dir: Path) -> None:
    """Fail the load, naming what is missing, if a declared requirement is not installed."""
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    missing: list[str] = []
    for req in manifest.get("requirements", []):
        m = _REQUIREMENT.match(req)
        if m is None:
            missing.append(f"{req} (unparseable)")
            continue
        name, spec = m.group(1), m.group(2).strip()
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(req)
            continue
        if spec and not _satisfies(version, spec):
            missing.append(f"{req} (installed: {version})")
    if missing:
        raise BadApp(f"requirements not installed on this node: {', '.join(missing)}")


def _satisfies(version: str, spec: str) -> bool:
    try:
        from packaging.specifiers import InvalidSpecifier, SpecifierSet
    except ImportError:  # without packaging, presence is all we can check
        return True
    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except InvalidSpecifier:
        return False
