"""Building a WebAssembly mote: an app's bundle compiled once per node, then cached.

componentize-py turns the bundle's pure-Python modules and the guest entry
(``_guest/guest.py``, the ``mote`` world of ``_guest/mote.wit``) into a component; its
pre-initialisation imports the app's module, so every instance starts with it loaded.
wasmtime then compiles the component to machine code for this engine configuration and
we keep that serialized, so a worker only deserializes it (about 0.1 s) and
instantiates it (about 1 ms). Both steps are slow (tens of seconds to minutes on a busy
two-core box), so they run in a child process (``python -m motes.sandbox._wasmbuild``)
that the node agent starts before it hands the instance to a worker, under a file lock,
so concurrent starts on one machine build once.

The cache key covers the bundle digest, the guest sources and the versions of
componentize-py and wasmtime: a new version of any of them builds anew.

Why the node and not the deploying client: a deployer needs no compiler, the artifact
never crosses the lattice (a component is ~19 MB, its compiled form more) and a node
never runs machine code that it did not compile itself.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..app.bundle import MANIFEST
from ..errors import BadApp

__all__ = ["GUEST", "build", "cache_entry", "engine", "ensure_built"]

GUEST = Path(__file__).with_name("_guest")
COMPILED = "component.cwasm"
BUILD_TIMEOUT_S = 900.0
"""componentize-py plus Cranelift on a loaded two-core box took ~4 minutes."""


def _versions() -> str:
    return ",".join(
        f"{name}={importlib.metadata.version(name)}" for name in ("componentize-py", "wasmtime")
    )


def cache_entry(bundle_dir: Path, digest: str, cache: Path) -> Path:
    """The directory that holds (or will hold) ``digest``'s compiled component."""
    h = hashlib.sha256(f"{digest}\n{_versions()}\n".encode())
    for path in sorted(GUEST.iterdir()):
        if path.suffix in (".py", ".wit"):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
    return cache / h.hexdigest()[:32]


def engine() -> Any:
    """The one engine configuration compiled artifacts are made for and loaded with:
    fuel metering and epoch interruption (what bounds a call's CPU and wall time)."""
    import wasmtime

    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    return wasmtime.Engine(config)


async def ensure_built(bundle_dir: Path, digest: str, cache: Path) -> Path:
    """The compiled component for this bundle, built first (in a child process) if the
    cache lacks it; ``BadApp`` naming what failed if it cannot be built."""
    entry = cache_entry(bundle_dir, digest, cache)
    if (entry / COMPILED).is_file():
        return entry / COMPILED
    cache.mkdir(parents=True, exist_ok=True)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "motes.sandbox._wasmbuild",
        str(bundle_dir),
        digest,
        str(cache),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(BUILD_TIMEOUT_S):
            _, err = await child.communicate()
    except TimeoutError:
        child.kill()
        await child.wait()
        took = f"took over {BUILD_TIMEOUT_S:.0f} s"
        raise BadApp(f"compiling {digest[:19]} to WebAssembly {took}") from None
    if child.returncode != 0 or not (entry / COMPILED).is_file():
        tail = err.decode(errors="replace").strip().splitlines()[-12:]
        raise BadApp(f"compiling {digest[:19]} to WebAssembly failed:\n" + "\n".join(tail))
    return entry / COMPILED


def build(bundle_dir: Path, digest: str, cache: Path) -> Path:
    """Build (once, under a lock shared by every process on this machine) and return
    the compiled component's path."""
    entry = cache_entry(bundle_dir, digest, cache)
    cache.mkdir(parents=True, exist_ok=True)
    with open(entry.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (entry / COMPILED).is_file():
            return entry / COMPILED
        manifest = json.loads((bundle_dir / MANIFEST).read_text())
        with tempfile.TemporaryDirectory(prefix="motes-wasm-", dir=cache) as tmp:
            work = Path(tmp)
            wasm = _componentize(bundle_dir, manifest, work)
            (work / "out").mkdir()
            _compile(wasm, work / "out" / COMPILED)
            os.replace(work / "out", entry)  # whole or not at all: readers never lock
    return entry / COMPILED


def _componentize(bundle_dir: Path, manifest: dict[str, Any], work: Path) -> Path:
    target = work / "target"
    target.mkdir()
    text = f"MODULE = {manifest['module']!r}\nAPP = {manifest['app']!r}\n"
    (target / "mote_target.py").write_text(text)
    out = work / "app.wasm"
    tool = Path(sys.executable).with_name("componentize-py")
    argv = [str(tool), "-q", "-d", str(GUEST / "mote.wit"), "-w", "mote", "componentize"]
    argv += ["guest", "-p", str(GUEST), "-p", str(target), "-p", str(bundle_dir), "-o", str(out)]
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stdout + done.stderr, file=sys.stderr)
        raise SystemExit(f"componentize-py exited with {done.returncode}")
    return out


def _compile(wasm: Path, dest: Path) -> None:
    from wasmtime.component import Component

    component = Component(engine(), wasm.read_bytes())
    dest.write_bytes(bytes(component.serialize()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="motes-wasm-build")
    parser.add_argument("bundle_dir", type=Path)
    parser.add_argument("digest")
    parser.add_argument("cache", type=Path)
    ns = parser.parse_args(argv)
    build(ns.bundle_dir, ns.digest, ns.cache)


if __name__ == "__main__":
    main()
