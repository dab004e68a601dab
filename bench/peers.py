"""The peers' own virtual environments: ``bench/.peers/<name>``, pinned, made on demand.

``ensure(name)`` creates ``bench/.peers/<name>`` with ``python -m venv`` (the Python that
runs the benchmark, so peers and Motes run on the same interpreter version) and
pip-installs that peer's pinned requirements into it, unless a stamp file there already
records exactly those requirements. The first install of Ray takes a while; every later
run finds the stamp and starts at once. ``python -m bench.peers`` installs them all.

The peers are only ever *run* inside a network namespace with nothing but loopback (see
``bench/peer_contenders.py``); installing them is the one step that talks to the
package registry.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import distributions
from pathlib import Path

__all__ = ["PEERS_DIR", "PINS", "ensure", "python", "versions"]

BENCH = Path(__file__).resolve().parent
PEERS_DIR = BENCH / ".peers"
STAMP = ".bench-installed"

# Pinned requirements per peer. Changing a pin reinstalls that peer on the next run.
PINS: dict[str, tuple[str, ...]] = {
    "ray": ("ray==2.60.0",),
    "dask": ("dask==2026.8.0", "distributed==2026.8.0"),
    "tahoe": ("tahoe-lafs==1.20.0",),
}

# The distributions whose versions a run records, per peer.
REPORTED: dict[str, tuple[str, ...]] = {
    "ray": ("ray",),
    "dask": ("dask", "distributed"),
    "tahoe": ("tahoe-lafs",),
}


def home(name: str) -> Path:
    return PEERS_DIR / name


def python(name: str) -> Path:
    return home(name) / "bin" / "python"


def _stamp_text(name: str) -> str:
    return "\n".join((f"python {sys.version_info.major}.{sys.version_info.minor}", *PINS[name]))


def installed(name: str) -> bool:
    stamp = home(name) / STAMP
    try:
        return python(name).exists() and stamp.read_text().strip() == _stamp_text(name)
    except OSError:
        return False


def _print(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def ensure(name: str, say: Callable[[str], None] = _print) -> Path:
    """The peer's python, installing the peer first if its stamp is missing or stale."""
    if name not in PINS:
        raise ValueError(f"unknown peer {name!r} (known: {', '.join(PINS)})")
    if installed(name):
        return python(name)
    where = home(name)
    say(f"installing peer {name} ({' '.join(PINS[name])}) into {where}; first time only")
    t0 = time.monotonic()
    if where.exists():
        shutil.rmtree(where)
    where.parent.mkdir(parents=True, exist_ok=True)
    log_path = PEERS_DIR / f"{name}-install.log"
    pip = [str(python(name)), "-m", "pip", "--disable-pip-version-check"]
    with open(log_path, "wb") as log:
        for step in (
            [sys.executable, "-m", "venv", str(where)],
            [*pip, "install", "--upgrade", "pip"],
            [*pip, "install", *PINS[name]],
        ):
            log.write(f"$ {' '.join(step)}\n".encode())
            log.flush()
            if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                lines = log_path.read_text(errors="replace").strip().splitlines()
                kept = [line for line in lines if "is ignored" not in line][-15:]
                tail = "\n    ".join(kept)
                raise RuntimeError(f"installing peer {name} failed ({log_path}):\n    {tail}")
    (where / STAMP).write_text(_stamp_text(name) + "\n")
    say(f"peer {name} installed in {time.monotonic() - t0:.0f} s")
    return python(name)


def versions(name: str) -> dict[str, str | None]:
    """Installed versions of the peer's main distributions (read from its site-packages)."""
    found: dict[str, str | None] = dict.fromkeys(REPORTED[name])
    paths = [str(p) for p in (home(name) / "lib").glob("python*/site-packages")]
    if not paths:
        return found
    for dist in distributions(path=paths):
        key = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if key in found:
            found[key] = dist.version
    return found


def main() -> None:
    for name in sys.argv[1:] or list(PINS):
        ensure(name)
        print(name, versions(name))


if __name__ == "__main__":
    main()
