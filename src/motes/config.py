"""Typed, frozen settings, read once at the edge (CLI, ``connect``, node main) and passed down.

Every timeout and interval has its default here, nowhere else. ``from_env`` reads
``MOTES_*`` variables; an unknown ``MOTES_`` variable that looks like a setting is an error,
so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import MeshNotRunning, RequestError

__all__ = ["MESH_FILE", "Timing", "default_home", "read_mesh_file", "resolve_home"]

MESH_FILE = "mesh.json"
_OTHER_VARS = frozenset({"MOTES_HOME", "MOTES_URL", "MOTES_CACHE", "MOTES_NODE_HOME"})
"""``MOTES_*`` variables that are not Timing fields."""
"""Written under the home by a running local mesh: its URL and pids."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Intervals and timeouts shared by the node agent, scheduler, worker and client."""

    heartbeat_s: float = 0.25
    """How often a node agent announces itself."""
    failure_timeout_s: float = 1.5
    """A node silent this long is declared lost."""
    lease_ttl_s: float = 2.0
    """The scheduler leader's lease; a dead leader is replaced within about this time."""
    call_timeout_s: float = 30.0
    """Default deadline of a call when the caller gives none."""
    start_timeout_s: float = 30.0
    """How long ``deploy`` waits for the minimum instances to be ready."""
    instance_wait_s: float = 5.0
    """How long a call waits for a placed-but-starting instance before NoInstance."""
    scatter_s: float = 0.5
    """How long a mesh-wide query (nodes, ps) waits for the slowest answer."""
    warm_workers: int = 1
    """Idle worker processes each node keeps started, so placement skips interpreter start."""
    repair_s: float = 5.0
    """How often the store's repairer looks for lost store nodes (and then repairs)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Timing:
        """Read ``MOTES_<FIELD>`` overrides, e.g. ``MOTES_FAILURE_TIMEOUT_S=3``.

        A misspelt ``MOTES_*`` variable, or a value that is not a positive number, is a
        RequestError: a setting that silently does nothing is worse than a refusal.
        """
        env = os.environ if environ is None else environ
        fields = {f"MOTES_{f.name.upper()}": f for f in dataclasses.fields(cls)}
        unknown = sorted(
            k for k in env if k.startswith("MOTES_") and k not in fields and k not in _OTHER_VARS
        )
        if unknown:
            known = ", ".join(sorted([*fields, *_OTHER_VARS]))
            raise RequestError(f"unknown setting {', '.join(unknown)}; known: {known}")
        values: dict[str, float | int] = {}
        for var, field in fields.items():
            raw = env.get(var)
            if raw is None:
                continue
            try:
                value = int(raw) if field.type == "int" else float(raw)
            except ValueError:
                raise RequestError(f"{var}={raw!r} is not a number") from None
            low_ok = value >= 0 if field.type == "int" else value > 0
            if not (low_ok and math.isfinite(value)):
                bound = ">= 0" if field.type == "int" else "> 0"
                raise RequestError(f"{var}={raw!r} must be a finite number {bound}")
            values[field.name] = value
        return cls(**values)  # type: ignore[arg-type]


def default_home() -> Path:
    """The platform's per-user data directory for Motes."""
    from platformdirs import user_data_path

    return user_data_path("motes", appauthor=False)


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``--home`` wins, then ``MOTES_HOME``, then the platform's data directory."""
    if home is not None:
        return Path(home).expanduser().resolve()
    env = os.environ.get("MOTES_HOME")
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
