"""Typed, frozen settings, read once at the edge (CLI, ``connect``, a process's main) and
passed down. Every interval and timeout has its default here, nowhere else.

A ``Config`` has four sections: ``lattice`` (how to reach NATS and as whom), ``timing``,
``node`` and ``store``. ``load_config`` reads, each over the one before:

1. the file ``<home>/motes.toml`` if it exists, or the file ``MOTES_CONFIG`` names
   (TOML, or JSON for the files a parent writes for its children);
2. ``MOTES_*`` environment variables: ``MOTES_URL`` (servers, comma-separated),
   ``MOTES_<TIMING FIELD>`` (``MOTES_HEARTBEAT_S=0.5``) and ``MOTES_<SECTION>_<FIELD>``
   for the rest (``MOTES_LATTICE_REPLICAS=3``);
3. flags the caller passes in.

An unknown key, section or ``MOTES_*`` variable is a ``RequestError``: a setting that
silently does nothing is worse than a refusal. A process started by another one gets its
config as the path of a 0600 file (``write_config``), never as arguments or inherited
environment, so nothing secret shows in ``/proc``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_origin, get_type_hints

from .errors import MeshNotRunning, RequestError

__all__ = [
    "CONFIG_FILE",
    "MESH_FILE",
    "Config",
    "LatticeConfig",
    "NodeConfig",
    "StoreConfig",
    "Timing",
    "default_home",
    "load_config",
    "read_config",
    "read_mesh_file",
    "resolve_home",
    "write_config",
]

MESH_FILE = "mesh.json"
"""Written under the home by a running local mesh: its URL and pids."""
CONFIG_FILE = "motes.toml"
"""The home's own settings, if its owner wrote any."""

_ENV_HOME = "MOTES_HOME"
_ENV_CONFIG = "MOTES_CONFIG"
_ENV_URL = "MOTES_URL"
_ENV_CACHE = "MOTES_CACHE"
_PLAIN_VARS = frozenset({_ENV_HOME, _ENV_CONFIG, _ENV_URL, _ENV_CACHE})


@dataclass(frozen=True, slots=True, kw_only=True)
class LatticeConfig:
    """How to reach the lattice, and as whom."""

    servers: tuple[str, ...] = ()
    """NATS URLs of the lattice; empty: the local mesh running at the home."""
    credentials: str = ""
    """Path of a NATS ``.creds`` file (user JWT and seed) for the session; empty: none."""
    identity: str = ""
    """Path of the principal's identity credential: it may only ask for a new session."""
    mesh_key: str = ""
    """The mesh's public key (hex): records are checked against it. Empty: a mesh
    without authentication (benchmarks compare with one)."""
    tls_ca: str = ""
    """PEM file of the certificate authority that server certificates must chain to."""
    tls_cert: str = ""
    tls_key: str = ""
    inbox_prefix: str = "_INBOX"
    """Replies to this connection arrive under this prefix (one per principal)."""
    domain: str = ""
    """The JetStream domain to use (empty: the one the server is in)."""
    leaf: bool = False
    """The server is a leaf and JetStream lives on the hubs (in ``domain``): bucket
    writes then go through the hubs' domain mapping."""
    replicas: int = 1
    """Replicas of the buckets and streams this connection creates."""
    connect_timeout_s: float = 2.0
    connect_attempts: int = 2
    """Tries at the first connect (fail fast); once connected, reconnects never stop."""
    reconnect_wait_s: float = 0.25
    pending_bytes: int = 64 * 1024 * 1024
    """Bytes buffered while reconnecting; publishing beyond it fails instead of queueing."""
    api_timeout_s: float = 10.0
    """JetStream API calls (KV, streams) give up after this long."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Intervals and timeouts shared by the node agent, scheduler, worker and client."""

    heartbeat_s: float = 0.25
    """How often a node agent announces itself."""
    failure_timeout_s: float = 1.5
    """A node silent this long is declared lost."""
    lease_ttl_s: float = 2.0
    """Leases (scheduler, store repair) lapse this long after the last renewal; holders
    renew at a quarter of it."""
    call_timeout_s: float = 30.0
    """Default deadline of a call when the caller gives none."""
    start_timeout_s: float = 30.0
    """How long ``deploy`` waits for the minimum instances to be ready (and an agent for
    a worker or its store service to start)."""
    instance_wait_s: float = 5.0
    """How long a call waits for a placed-but-starting instance before NoInstance."""
    scatter_s: float = 0.5
    """How long a mesh-wide query (nodes, ps) waits for the slowest answer."""
    warm_workers: int = 1
    """Idle worker processes each node keeps started, so placement skips interpreter start."""
    repair_s: float = 5.0
    """How often the store's repairer looks for lost store nodes (and then repairs)."""
    status_s: float = 0.5
    """How often a busy worker reports its load to its agent."""
    log_flush_s: float = 0.2
    """How often worker output is shipped to the log stream."""
    ack_wait_s: float = 5.0
    """A durable call not acked (or marked in progress) within this long is redelivered."""
    fetch_wait_s: float = 1.0
    """How long an idle instance waits on the durable queue before looking again."""
    restart_backoff_s: float = 10.0
    """Most a crashed instance waits before it is started again."""
    stop_grace_s: float = 10.0
    """How long a stopping worker may finish the calls it holds."""
    wake_s: float = 5.0
    """While a caller waits on a durable result, how often it reminds the scheduler."""
    request_s: float = 10.0
    """One share moved to or from a store service."""
    hedge_s: float = 1.0
    """A share slower than this gets a second one started beside it."""
    holdings_s: float = 1.0
    """How often a store service reports changed holdings."""
    sweep_s: float = 600.0
    """Every file is checked (and repaired) at least this often."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """This process's node, when it is one (or runs on one)."""

    name: str = ""
    home: str = ""
    """The node's directory: key, bundles, shares, cache."""
    id: str = ""
    """The node's id (a fingerprint of its key), for processes that do not hold the key."""
    labels: dict[str, str] = field(default_factory=dict)
    machine: str = ""
    """The machine it runs on: the name of the nats-server it is attached to (the nodes
    of one ``motes up`` share one)."""
    role: str = ""
    """``hub`` (its machine's server is one of the mesh's hubs) or ``leaf``."""
    link: str = ""
    """For a leaf: the hubs its server dials (leaf-node URLs, comma-separated)."""
    meter: str = "on"
    """``on``: every call's CPU time is metered; ``off``: not (the bench's comparison)."""
    power_idle_w: float = 0.0
    """Watts per core at idle, for the power model; 0: from the table of known CPUs."""
    power_max_w: float = 0.0
    """Watts per core at full load; 0: from the table of known CPUs."""
    wasm_cache: str = ""
    """Where compiled WebAssembly motes are kept (``motes.sandbox._wasmbuild``); empty:
    ``<home>/wasm``. The nodes of one machine may share one: entries are keyed by
    content and built under a lock."""

    def __post_init__(self) -> None:
        if self.meter not in ("on", "off"):
            raise RequestError(f"[node] meter={self.meter!r}: use 'on' or 'off'")
        if self.power_idle_w < 0 or self.power_max_w < 0:
            raise RequestError("[node] power_idle_w and power_max_w are watts per core, >= 0")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    cache: str = ""
    """Where a client caches stored data it reads; empty: ``<home>/cache`` (a node's
    ``<node home>/cache``); ``off``: no cache."""
    cache_bytes: int = 2 << 30
    window: int = 8
    """Chunks in flight per transfer."""
    convergence: str = ""
    """A file holding the secret this principal's stored data is keyed with; empty: the
    mesh-wide one (a mesh without authentication)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    home: str = ""
    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    timing: Timing = field(default_factory=Timing)
    node: NodeConfig = field(default_factory=NodeConfig)
    store: StoreConfig = field(default_factory=StoreConfig)

    @property
    def home_path(self) -> Path:
        return Path(self.home) if self.home else default_home()

    def replace(self, **sections: Any) -> Config:
        """A copy with whole sections (or fields of them, as dicts) replaced."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            if isinstance(value, Mapping):
                value = dataclasses.replace(getattr(self, name), **value)
            changes[name] = value
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "home": self.home,
            **{s: _section_dict(getattr(self, s)) for s in _SECTIONS},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "config") -> Config:
        unknown = set(data) - {"home", *_SECTIONS}
        if unknown:
            raise RequestError(
                f"{where}: unknown section(s) {sorted(unknown)}; known: {sorted(_SECTIONS)}"
            )
        sections: dict[str, Any] = {
            name: _build(kind, data.get(name) or {}, f"{where} [{name}]")
            for name, kind in _SECTIONS.items()
        }
        return cls(home=str(data.get("home", "")), **sections)


_SECTIONS: dict[str, type] = {
    "lattice": LatticeConfig,
    "timing": Timing,
    "node": NodeConfig,
    "store": StoreConfig,
}

T = TypeVar("T")


def _section_dict(section: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _build(kind: type[T], values: Mapping[str, Any], where: str) -> T:
    if not isinstance(values, Mapping):
        raise RequestError(f"{where}: expected a table of settings, got {values!r}")
    hints = get_type_hints(kind)
    names = {f.name for f in dataclasses.fields(kind)}  # type: ignore[arg-type]
    unknown = set(values) - names
    if unknown:
        raise RequestError(f"{where}: unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
    return kind(**{k: _coerce(hints[k], v, f"{where} {k}") for k, v in values.items()})


_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """A setting's value as its field's type; RequestError if it cannot be one."""
    origin = get_origin(hint)
    if hint is bool:
        if isinstance(value, str) and value.strip().lower() in _BOOLS:
            return _BOOLS[value.strip().lower()]
        if not isinstance(value, bool):
            raise RequestError(f"{where}={value!r} is not true or false")
        return value
    if hint is float or hint is int:
        if isinstance(value, str):
            try:
                value = hint(value)
            except ValueError:
                raise RequestError(f"{where}={value!r} is not a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(f"{where}={value!r} is not a number")
        if hint is int and value != int(value):
            raise RequestError(f"{where}={value!r} is not a whole number")
        if not math.isfinite(value):
            raise RequestError(f"{where}={value!r} must be finite")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise RequestError(f"{where}={value!r} is not a string")
        return value
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise RequestError(f"{where}={value!r} is not a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    if origin is dict:
        if isinstance(value, str):
            value = dict(p.partition("=")[::2] for p in value.split(",") if p)
        if not isinstance(value, Mapping):
            raise RequestError(f"{where}={value!r} is not a table")
        return {str(k): str(v) for k, v in value.items()}
    raise TypeError(f"unsupported setting type {hint} at {where}")  # a bug of ours


def _check_timing(timing: Timing, where: str = "timing") -> Timing:
    for f in dataclasses.fields(timing):
        _check_interval(getattr(timing, f.name), f"{where} {f.name}")
    return timing


def _check_interval(value: float, where: str) -> None:
    """Intervals are > 0; counts (ints) are >= 0."""
    if value < 0 or (not isinstance(value, int) and value == 0):
        bound = ">= 0" if isinstance(value, int) else "> 0"
        raise RequestError(f"{where}={value!r} must be a finite number {bound}")


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``MOTES_*`` variables as section settings; unknown ones are refused, and a bad
    value is reported by the variable's name."""
    timing_fields = {f.name for f in dataclasses.fields(Timing)}
    by_var: dict[str, tuple[str, str]] = {
        f"MOTES_{n.upper()}": ("timing", n) for n in timing_fields
    }
    for section, kind in _SECTIONS.items():
        for f in dataclasses.fields(kind):
            by_var.setdefault(f"MOTES_{section.upper()}_{f.name.upper()}", (section, f.name))
    out: dict[str, dict[str, Any]] = {}
    unknown = []
    for var, raw in env.items():
        if not var.startswith("MOTES_") or var in _PLAIN_VARS:
            continue
        target = by_var.get(var)
        if target is None:
            unknown.append(var)
            continue
        section, name = target
        value = _coerce(get_type_hints(_SECTIONS[section])[name], raw, var)
        if section == "timing":
            _check_interval(value, var)
        out.setdefault(section, {})[name] = value
    if unknown:
        known = sorted([*_PLAIN_VARS, "MOTES_<TIMING FIELD>", "MOTES_<SECTION>_<FIELD>"])
        raise RequestError(
            f"unknown setting {', '.join(sorted(unknown))}; settings are {', '.join(known)}"
        )
    if env.get(_ENV_URL):
        out.setdefault("lattice", {})["servers"] = env[_ENV_URL]
    if env.get(_ENV_CACHE):
        out.setdefault("store", {})["cache"] = env[_ENV_CACHE]
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def read_config(path: Path) -> dict[str, Any]:
    """A config file's contents: TOML, or JSON for files ending in ``.json``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RequestError(f"config file {path} does not exist") from None
    try:
        if path.suffix == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"config file {path} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(f"config file {path} does not hold a table of settings")
    return data


def load_config(
    home: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """The settings for this process: file, then ``MOTES_*``, then ``flags`` (by section)."""
    env = os.environ if env is None else env
    explicit = env.get(_ENV_CONFIG)
    data = read_config(Path(explicit)) if explicit else {}
    if home is None:
        home = data.get("home") or env.get(_ENV_HOME) or None
    resolved = resolve_home(home)
    file = resolved / CONFIG_FILE
    if not explicit and file.is_file():
        data = read_config(file)
    data = _merge(data, _from_env(env))
    data = _merge(data, flags or {})
    data["home"] = str(resolved)
    config = Config.from_dict(data, where=str(explicit or file))
    _check_timing(config.timing)
    return config


def write_config(config: Config, path: Path) -> Path:
    """Write ``config`` for a child process: JSON, mode 0600, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config.to_dict(), f, indent=1)
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def default_home() -> Path:
    """The platform's per-user data directory for Motes."""
    from platformdirs import user_data_path

    return user_data_path("motes", appauthor=False)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``--home`` wins, then ``MOTES_HOME``, then the platform's data directory."""
    if home is not None:
        return Path(home).expanduser().resolve()
    env = os.environ.get(_ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    return default_home()


def read_mesh_file(home: Path) -> dict[str, Any]:
    """Where the local mesh at ``home`` runs (url, pids); MeshNotRunning if none does."""
    path = home / MESH_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise MeshNotRunning(f"no mesh is running at {home} (start one with `motes up`)") from None
    except (ValueError, OSError) as exc:
        raise MeshNotRunning(
            f"{path} is unreadable ({exc}); run `motes down`, then `motes up`"
        ) from None
