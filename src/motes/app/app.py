"""``App``: where a program declares its motes.

Decorators record a ``MoteSpec`` and return the decorated object unchanged, so the same
function still runs locally (in tests, or as a reference computation).

``@app.command`` declares a command mote: its function returns the argv of a native
program (or a ``Command``: argv, extra read-only files, stdin), and the node serving the
call runs that program confined as the decorator says (``sandbox.command``); the call's
result is the program's ``ExecResult`` fields, as ``mesh.exec`` gives them.
"""

from __future__ import annotations

import inspect
import posixpath
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal, TypeVar, overload

import msgspec

from ..errors import BadApp, RequestError
from ..ids import check_name
from ..wire.messages import Confinement, MoteKind, MoteSpec

__all__ = ["WASM_FUEL", "WASM_MEMORY_MB", "App", "Command", "Declared", "check_flow"]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

_ASYNC_CONCURRENCY = 64
_AMOUNTS = {"cpu", "memory_mb", "gpu"}
"""Needs that are quantities, reserved on the node; the rest are capabilities."""
_NEEDS_KEYS = _AMOUNTS | {"screen", "camera", "arch", "os"}
_COMMAND_CONCURRENCY = 4
"""Programs one command mote instance runs at once, unless declared."""
_CONFINE_KEYS = ("files", "writable", "net", "timeout", "memory_mb", "output_bytes", "env")
WASM_FUEL = 10**10
"""A wasm call's fuel unless declared: several seconds of CPU (~1.5e9 units/s here)."""
WASM_MEMORY_MB = 256
WASM_MIN_MEMORY_MB = 32
"""The Python interpreter's snapshot alone needs about 20 MiB of linear memory."""


@dataclass(frozen=True, slots=True)
class Declared:
    """A mote as declared: its spec and the Python object that implements it."""

    spec: MoteSpec
    target: Any
    confine: Confinement | None = None
    """Command motes: how their programs are confined."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """What a command mote's function may return instead of a bare argv."""

    argv: list[str]
    files: dict[str, str] = field(default_factory=dict)
    """More read-only paths for this call (``{inside: on the node}``), beside the
    declared ones."""
    stdin: bytes = b""


class App:
    """A named set of motes, deployed together as one versioned bundle.

    >>> app = App("wordcount")
    >>> @app.mote
    ... def count(text: str) -> dict[str, int]: ...
    """

    def __init__(self, name: str, *, requirements: list[str] | None = None) -> None:
        self.name = check_name("app", name)
        self.requirements = list(requirements or [])
        caller = sys._getframe(1).f_globals
        self.module: str = caller.get("__name__", "__main__")
        self.file: str | None = caller.get("__file__")
        self.motes: dict[str, Declared] = {}
        self.flows: dict[str, list[str]] = {}

    def __repr__(self) -> str:
        return f"App({self.name!r}, motes={sorted(self.motes)})"

    @overload
    def mote(self, fn: F, /) -> F: ...
    @overload
    def mote(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        min: int = 1,
        max: int = 8,
        needs: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        concurrency: int = 0,
        spread: Literal["spread", "pack"] = "spread",
        kind: Literal["any", "batch", "interactive"] = "any",
        idle: float = 30.0,
        energy: bool = True,
        sandbox: Literal["native", "wasm"] = "native",
        fuel: int = WASM_FUEL,
        memory_mb: int = WASM_MEMORY_MB,
        files: dict[str, str] | None = None,
        writable: dict[str, str] | None = None,
    ) -> Callable[[F], F]: ...

    def mote(self, fn: Any = None, /, **options: Any) -> Any:
        """Declare a function (sync or async) as a mote. Options: see ``MoteSpec``."""

        def register(target: F) -> F:
            if not callable(target) or inspect.isclass(target):
                raise BadApp(f"@{self.name}.mote decorates a function, not {target!r}")
            self._add("function", target, options)
            return target

        return register(fn) if fn is not None else register

    @overload
    def actor(self, cls: C, /) -> C: ...
    @overload
    def actor(
        self,
        cls: None = None,
        /,
        *,
        name: str | None = None,
        min: int = 1,
        max: int = 8,
        needs: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        shards: int = 64,
        spread: Literal["spread", "pack"] = "spread",
        kind: Literal["any", "batch", "interactive"] = "any",
        idle: float = 30.0,
        energy: bool = True,
    ) -> Callable[[C], C]: ...

    def actor(self, cls: Any = None, /, **options: Any) -> Any:
        """Declare a class as a keyed actor: one activation per key across the mesh.

        The class is built with no arguments on a key's first call; its instance
        attributes are its state, saved after every call that changes them.
        """

        def register(target: C) -> C:
            if not inspect.isclass(target):
                raise BadApp(f"@{self.name}.actor decorates a class, not {target!r}")
            self._add("actor", target, options)
            return target

        return register(cls) if cls is not None else register

    def command(self, fn: Any = None, /, **options: Any) -> Any:
        """Declare a command mote: a function returning the argv of a native program
        (or a ``Command``), which the serving node runs confined, under bubblewrap
        (else Landlock, else the call fails with ``SandboxUnavailable``).

        Confinement options (as ``mesh.exec``): ``files`` and ``writable``
        (``{inside: on the node}``), ``net`` (default False), ``timeout`` (s, 30),
        ``memory_mb`` (256), ``output_bytes`` (1 MiB), ``env``; the rest as ``@app.mote``.
        A call returns the program's ``ExecResult`` fields as a dict; a non-zero exit
        status is a result, a limit hit is ``SandboxLimit``.
        """

        def register(target: F) -> F:
            if not callable(target) or inspect.isclass(target):
                raise BadApp(f"@{self.name}.command decorates a function, not {target!r}")
            self._add("command", target, options)
            return target

        return register(fn) if fn is not None else register

    def _confinement(self, where: str, options: dict[str, Any]) -> Confinement:
        """Take a command's confinement options out of ``options``."""
        given = {k: options.pop(k) for k in _CONFINE_KEYS if k in options}
        if "timeout" in given:
            given["timeout_s"] = given.pop("timeout")
        given.setdefault("output_bytes", 1 << 20)
        try:
            return msgspec.convert(given, Confinement)
        except msgspec.ValidationError as exc:
            raise BadApp(f"{where}: {exc}") from None

    def _add(self, kind: MoteKind, target: Any, options: dict[str, Any]) -> None:
        options = dict(options)  # a decorator may be reused: never consume its options
        name = check_name("mote", options.pop("name", None) or target.__name__)
        where = f"mote {self.name}.{name}"
        if name in self.motes:
            raise BadApp(f"app {self.name} declares mote {name!r} twice")
        needs = dict(options.pop("needs", None) or {})
        unknown = set(needs) - _NEEDS_KEYS
        if unknown:
            raise BadApp(f"{where}: unknown needs {sorted(unknown)}; known: {sorted(_NEEDS_KEYS)}")
        for res in _AMOUNTS & set(needs):
            value = needs[res]
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise BadApp(f"{where}: needs[{res!r}] must be a number >= 0, not {value!r}")
        confine = self._confinement(where, options) if kind == "command" else None
        labels = {str(k): str(v) for k, v in (options.pop("labels", None) or {}).items()}
        for key in ("min", "max", "concurrency", "shards"):
            if key in options and (
                isinstance(options[key], bool) or not isinstance(options[key], int)
            ):
                raise BadApp(f"{where}: {key} must be an int, not {options[key]!r}")
        lo, hi = options.get("min", 1), options.get("max", 8)
        if lo < 0 or hi < 1 or lo > hi:
            raise BadApp(f"{where}: need 0 <= min <= max and max >= 1 (min={lo}, max={hi})")
        if options.get("shards", 1) < 1 or options.get("concurrency", 0) < 0:
            raise BadApp(f"{where}: shards must be >= 1 and concurrency >= 0")
        reads = options.get("reads", [])
        if not isinstance(reads, list | tuple) or not all(isinstance(r, str) for r in reads):
            raise BadApp(f"{where}: reads must be a list of capability strings, not {reads!r}")
        options["reads"] = list(reads)
        usage = options.pop("kind", "any")
        if usage not in ("any", "batch", "interactive"):
            raise BadApp(f"{where}: kind must be 'any', 'batch' or 'interactive', not {usage!r}")
        if not isinstance(options.get("energy", True), bool):
            raise BadApp(f"{where}: energy must be True or False, not {options['energy']!r}")
        idle = options.get("idle", 30.0)
        if isinstance(idle, bool) or not isinstance(idle, int | float) or not idle > 0:
            raise BadApp(f"{where}: idle must be a number of seconds > 0, not {idle!r}")
        options.update(_sandbox_options(where, kind, target, options))
        # The autoscaler's target per instance: sync handlers take one call at a time.
        if kind == "function" and not inspect.iscoroutinefunction(target):
            options["concurrency"] = 1
        elif kind == "command" and not options.get("concurrency"):
            options["concurrency"] = _COMMAND_CONCURRENCY
        elif not options.get("concurrency"):
            options["concurrency"] = _ASYNC_CONCURRENCY
        try:
            spec = MoteSpec(
                name=name, kind=kind, needs=needs, labels=labels, usage=usage, **options
            )
        except TypeError as exc:
            raise BadApp(f"{where}: {exc}") from None
        self.motes[name] = Declared(spec, target, confine)

    def flow(self, name: str, stages: list[str | Callable[..., Any]]) -> None:
        """Wire function motes into a flow: each stage's result is the next one's argument.

        ``app.flow("ingest", ["fetch", "parse", "store"])`` (names, or the decorated
        functions). Declare the motes first. Items enter with ``mesh.flow("app.ingest")``;
        ``motes flow set`` rewires a deployed flow without a redeploy.
        """
        name = check_name("flow", name)
        if name in self.flows:
            raise BadApp(f"app {self.name} declares flow {name!r} twice")
        names = [self._stage_name(s) for s in stages]
        kinds = {m: d.spec.kind for m, d in self.motes.items()}
        self.flows[name] = check_flow(self.name, name, names, kinds)

    def _stage_name(self, stage: str | Callable[..., Any]) -> str:
        if isinstance(stage, str):
            return stage
        for mote, declared in self.motes.items():
            if declared.target is stage:
                return mote
        raise BadApp(f"{stage!r} is not a mote of app {self.name}: declare it with @app.mote")

    def specs(self) -> list[MoteSpec]:
        return [d.spec for d in self.motes.values()]

    def target(self, mote: str) -> Any:
        try:
            return self.motes[mote].target
        except KeyError:
            raise RequestError(f"app {self.name} has no mote {mote!r}") from None


def _sandbox_options(
    where: str, kind: MoteKind, target: Any, options: dict[str, Any]
) -> dict[str, Any]:
    """``sandbox`` and the wasm-only options, checked, with their defaults filled in."""
    sandbox = options.get("sandbox", "native")
    wasm_only = sorted(k for k in ("fuel", "memory_mb", "files", "writable") if k in options)
    if sandbox == "native":
        if wasm_only:
            raise BadApp(f"{where}: {', '.join(wasm_only)} apply to sandbox='wasm' motes only")
        return {}
    if sandbox != "wasm":
        raise BadApp(f"{where}: sandbox must be 'native' or 'wasm', not {sandbox!r}")
    if kind != "function":
        raise BadApp(f"{where}: wasm actors are not supported yet; declare it natively")
    if inspect.iscoroutinefunction(target):
        raise BadApp(f"{where}: a wasm mote is a plain (sync) function, not async")
    fuel = options.get("fuel", WASM_FUEL)
    memory = options.get("memory_mb", WASM_MEMORY_MB)
    for key, value, least in (("fuel", fuel, 1), ("memory_mb", memory, WASM_MIN_MEMORY_MB)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise BadApp(f"{where}: {key} must be an int >= {least}, not {value!r}")
    files = _view(where, "files", options.get("files"))
    writable = _view(where, "writable", options.get("writable"))
    both = sorted(set(files) & set(writable))
    if both:
        raise BadApp(f"{where}: {both} declared in both files and writable; choose one")
    return {"fuel": fuel, "memory_mb": memory, "files": files, "writable": writable}


def _view(where: str, what: str, table: Any) -> dict[str, str]:
    """A wasm mote's ``files``/``writable``: absolute, normal guest directories (not /)
    mapped to relative paths under the node's app directory that stay inside it."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise BadApp(f"{where}: {what} maps guest directories to app directories, not {table!r}")
    out: dict[str, str] = {}
    for guest, host in table.items():
        if (
            not isinstance(guest, str)
            or not guest.startswith("/")
            or posixpath.normpath(guest) != guest
            or guest == "/"
        ):
            raise BadApp(f"{where}: {what} key {guest!r} must be an absolute guest path, not /")
        if (
            not isinstance(host, str)
            or not host
            or host.startswith("/")
            or ".." in PurePosixPath(host).parts
        ):
            raise BadApp(
                f"{where}: {what}[{guest!r}] = {host!r} must be a relative path under the "
                "node's appdata/<app>/ directory (no '..', not absolute)"
            )
        out[guest] = host
    return out


def check_flow(app: str, flow: str, stages: list[str], kinds: Mapping[str, str]) -> list[str]:
    """The stages of a flow if they are distinct function motes of ``app``, else BadApp."""
    where = f"flow {app}.{flow}"
    if not stages:
        raise BadApp(f"{where} needs at least one stage")
    for stage in stages:
        kind = kinds.get(stage) if isinstance(stage, str) else None
        if kind is None:
            known = ", ".join(sorted(kinds)) or "none"
            raise BadApp(f"{where}: {stage!r} is not a mote of {app} (motes: {known})")
        if kind != "function":
            raise BadApp(f"{where}: {stage!r} is not a function mote (it is {kind!r})")
    if len(set(stages)) != len(stages):
        raise BadApp(f"{where}: a stage appears twice in {stages}; each runs once per item")
    return list(stages)
