"""Store commands: put, get, cat, ls, check, du, dataset, mount.

Write capabilities of datasets made here are kept in ``<home>/datasets/<name>.cap``
(mode 0600), so ``motes dataset add NAME PATH`` finds them by name.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..client import connect
from ..errors import BadCapability, RequestError, Unsupported
from ..store import Policy
from ..store.caps import DatasetWriteCap, parse_cap
from .table import print_table

__all__ = ["cat", "check", "dataset", "du", "get", "ls", "mount", "put"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int | None, what: str) -> None:
        self.total = total
        self.what = what
        self.done = 0
        self.start = time.monotonic()
        self._drawn = 0.0
        self.enabled = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self._drawn > 0.1:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6) / 2**20
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            line = f"{self.what} [{bar:<30}] {frac:4.0%} {_size(self.done)} {rate:6.1f} MiB/s"
        else:
            line = f"{self.what} {_size(self.done)} {rate:6.1f} MiB/s"
        print(f"\r{line}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.done:
            self._draw(time.monotonic())
            print(file=sys.stderr)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _connect(ns: argparse.Namespace) -> Any:
    return connect(ns.url, home=ns.home)


async def put(ns: argparse.Namespace) -> int:
    path = Path(ns.path)
    if not path.exists():
        raise RequestError(f"{path}: no such file or directory")
    policy = Policy.parse(ns.policy) if ns.policy else None
    bar = Progress(_tree_bytes(path), f"put {path.name}")
    async with _connect(ns) as mesh:
        try:
            cap = await mesh.store.put(path, policy=policy, progress=bar)
        finally:
            bar.close()
    print(cap)
    return 0


async def get(ns: argparse.Namespace) -> int:
    async with _connect(ns) as mesh:
        if ns.output is None:
            return await _cat(mesh, ns.cap)
        size = await mesh.store.size(ns.cap)
        bar = Progress(size, f"get -> {ns.output}")
        try:
            await mesh.store.get(ns.cap, ns.output, progress=bar)
        finally:
            bar.close()
    return 0


async def cat(ns: argparse.Namespace) -> int:
    async with _connect(ns) as mesh:
        return await _cat(mesh, ns.cap)


async def _cat(mesh: Any, cap: str) -> int:
    out = sys.stdout.buffer
    async for chunk in await mesh.store.open(cap):
        out.write(chunk)
    out.flush()
    return 0


async def ls(ns: argparse.Namespace) -> int:
    async with _connect(ns) as mesh:
        entries = await mesh.store.ls(ns.cap)
    rows = [
        [e.kind, _size(e.size), e.name or "(a file)", e.cap if ns.caps else ""] for e in entries
    ]
    print_table(["KIND", "SIZE", "NAME", "CAP" if ns.caps else ""], rows)
    return 0


async def check(ns: argparse.Namespace) -> int:
    async with _connect(ns) as mesh:
        report = await mesh.store.check(ns.cap, repair=ns.repair)
    state = "healthy" if report.healthy == report.blobs else "NOT healthy"
    print(f"{state}: {report.healthy}/{report.blobs} blobs with every share on its own node")
    print(f"  recoverable blobs: {report.recoverable}/{report.blobs}")
    print(f"  missing shares: {report.missing_shares}")
    if ns.repair:
        print(f"  regenerated shares: {report.repaired_shares}")
    if report.detail:
        print(f"  notes: {report.detail}")
    ok = report.recoverable == report.blobs and (not ns.repair or report.healthy == report.blobs)
    return 0 if ok else 1


async def du(ns: argparse.Namespace) -> int:
    async with _connect(ns) as mesh:
        usage = await mesh.store.du()
    rows = [
        [h.node, _size(h.share_bytes), _size(h.cache_bytes), _size(h.free_bytes), str(len(h.files))]
        for h in usage.nodes
    ]
    print_table(["NODE", "SHARES", "CACHE", "FREE", "FILES"], rows)
    total = sum(h.share_bytes for h in usage.nodes)
    print(f"{usage.files} file(s), {_size(usage.logical_bytes)} stored as {_size(total)} of shares")
    return 0


def _cap_file(home: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise RequestError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-'")
    return home / "datasets" / f"{name}.cap"


async def dataset(ns: argparse.Namespace) -> int:
    home = Path(ns.home)
    if ns.dataset_command == "list":
        folder = home / "datasets"
        names = sorted(p.stem for p in folder.glob("*.cap")) if folder.exists() else []
        rows = [[n, str(_load_wcap(home, n).read_cap())] for n in names]
        print_table(["NAME", "READ CAP"], rows)
        return 0
    path = _cap_file(home, ns.name)
    async with _connect(ns) as mesh:
        if ns.dataset_command == "create":
            if path.exists():
                raise RequestError(f"dataset {ns.name!r} exists here already ({path})")
            policy = Policy.parse(ns.policy) if ns.policy else None
            wcap = await mesh.store.dataset_create(ns.name, policy)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{wcap}\n")
            print(f"write: {wcap}  (kept in {path})")
            print(f"read:  {wcap.read_cap()}")
            print(f"verify: {wcap.verify_cap()}")
            return 0
        wcap = _load_wcap(home, ns.name)
        src = Path(ns.path)
        if not src.exists():
            raise RequestError(f"{src}: no such file or directory")
        bar = Progress(_tree_bytes(src), f"add {src.name}")
        try:
            await mesh.store.dataset_add(wcap, src, name=ns.as_name, progress=bar)
        finally:
            bar.close()
        print(wcap.read_cap())
    return 0


def _load_wcap(home: Path, name: str) -> DatasetWriteCap:
    path = _cap_file(home, name)
    try:
        cap = parse_cap(path.read_text().strip())
    except FileNotFoundError:
        raise RequestError(f"no dataset {name!r} here (`motes dataset create {name}`)") from None
    if not isinstance(cap, DatasetWriteCap):
        raise BadCapability(str(cap), f"{path} does not hold a dataset write capability")
    return cap


async def mount(ns: argparse.Namespace) -> int:
    from ..store.fs import fuse_unavailable, mount_readonly

    reason = fuse_unavailable()
    if reason is not None:  # say so before reaching for the mesh
        raise Unsupported(reason)
    started = asyncio.Event()

    async def announce() -> None:
        await started.wait()
        print(f"mounted at {ns.dir} (read-only); unmount with `fusermount3 -u {ns.dir}` or Ctrl-C")

    async with _connect(ns) as mesh:
        task = asyncio.create_task(announce())
        try:
            await mount_readonly(mesh.store, ns.cap, Path(ns.dir), started=started)
        finally:
            task.cancel()
    return 0
