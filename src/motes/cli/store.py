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

from ..client import Mesh, connect
from ..config import Config
from ..errors import BadCapability, RequestError, Unsupported
from ..store import Policy
from ..store.caps import DatasetWriteCap, parse_cap
from .registry import Kind, arg, command
from .render import Table, View, text

__all__ = ["cat", "check", "dataset_add", "dataset_create", "du", "get", "ls", "mount", "put"]

_POLICY_HELP = "k=3,n=10,happy=7,chunk=1048576,label.KEY=VALUE (default: fitted to the mesh)"

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


@command(
    "put",
    "store a file or directory; print its read capability",
    arg("path"),
    arg("--policy", help=_POLICY_HELP),
)
async def put(mesh: Mesh, ns: argparse.Namespace) -> View:
    path = Path(ns.path)
    if not path.exists():
        raise RequestError(f"{path}: no such file or directory")
    policy = Policy.parse(ns.policy) if ns.policy else None
    bar = Progress(_tree_bytes(path), f"put {path.name}")
    try:
        cap = await mesh.store.put(path, policy=policy, progress=bar)
    finally:
        bar.close()
    return View(data={"cap": cap}, before=[cap])


@command(
    "get",
    "fetch stored data by capability (to stdout, or -o PATH)",
    arg("cap"),
    arg("-o", "--output", help="write here (a directory cap makes a directory)"),
    kind=Kind.STREAM,
)
async def get(mesh: Mesh, ns: argparse.Namespace) -> int:
    if ns.output is None:
        return await _cat(mesh, ns.cap)
    size = await mesh.store.size(ns.cap)
    bar = Progress(size, f"get -> {ns.output}")
    try:
        await mesh.store.get(ns.cap, ns.output, progress=bar)
    finally:
        bar.close()
    return 0


@command("cat", "write a stored file to stdout", arg("cap"), kind=Kind.STREAM)
async def cat(mesh: Mesh, ns: argparse.Namespace) -> int:
    return await _cat(mesh, ns.cap)


async def _cat(mesh: Mesh, cap: str) -> int:
    out = sys.stdout.buffer
    async for chunk in await mesh.store.open(cap):
        out.write(chunk)
    out.flush()
    return 0


@command(
    "ls",
    "list a stored directory (or dataset)",
    arg("cap"),
    arg("--caps", action="store_true", help="show each entry's read capability"),
    json=True,
)
async def ls(mesh: Mesh, ns: argparse.Namespace) -> View:
    entries = await mesh.store.ls(ns.cap)
    rows = [
        [e.kind, _size(e.size), e.name or "(a file)", e.cap if ns.caps else ""] for e in entries
    ]
    data = [{"name": e.name, "kind": e.kind, "size": e.size, "cap": e.cap} for e in entries]
    return View(data=data, table=Table(["KIND", "SIZE", "NAME", "CAP" if ns.caps else ""], rows))


@command(
    "check",
    "count a stored file's shares in the mesh",
    arg("cap"),
    arg("--repair", action="store_true", help="regenerate missing shares"),
    json=True,
)
async def check(mesh: Mesh, ns: argparse.Namespace) -> View:
    report = await mesh.store.check(ns.cap, repair=ns.repair)
    state = "healthy" if report.healthy == report.blobs else "NOT healthy"
    lines = [
        f"{state}: {report.healthy}/{report.blobs} blobs with every share on its own node",
        f"  recoverable blobs: {report.recoverable}/{report.blobs}",
        f"  missing shares: {report.missing_shares}",
    ]
    if ns.repair:
        lines.append(f"  regenerated shares: {report.repaired_shares}")
    if report.detail:
        lines.append(f"  notes: {report.detail}")
    ok = report.recoverable == report.blobs and (not ns.repair or report.healthy == report.blobs)
    return View(data=report, before=lines, code=0 if ok else 1)


@command("du", "what each node stores and caches", json=True)
async def du(mesh: Mesh, ns: argparse.Namespace) -> View:
    usage = await mesh.store.du()
    rows = [
        [h.node, _size(h.share_bytes), _size(h.cache_bytes), _size(h.free_bytes), str(len(h.files))]
        for h in usage.nodes
    ]
    total = sum(h.share_bytes for h in usage.nodes)
    return View(
        data=usage,
        table=Table(["NODE", "SHARES", "CACHE", "FREE", "FILES"], rows),
        after=[
            f"{usage.files} file(s), {_size(usage.logical_bytes)} stored as "
            f"{_size(total)} of shares"
        ],
    )


def _cap_file(home: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise RequestError(f"dataset name {name!r}: use letters, digits, '.', '_' and '-'")
    return home / "datasets" / f"{name}.cap"


@command("dataset list", "datasets whose write capability is kept here", kind=Kind.LOCAL)
async def dataset_list(config: Config, ns: argparse.Namespace) -> int:
    home = config.home_path
    folder = home / "datasets"
    names = sorted(p.stem for p in folder.glob("*.cap")) if folder.exists() else []
    rows = [[n, str(_load_wcap(home, n).read_cap())] for n in names]
    print(text(View(table=Table(["NAME", "READ CAP"], rows))))
    return 0


@command(
    "dataset create",
    "a new empty dataset; keeps its write cap here",
    arg("name"),
    arg("--policy", help=_POLICY_HELP),
)
async def dataset_create(mesh: Mesh, ns: argparse.Namespace) -> View:
    path = _cap_file(mesh.config.home_path, ns.name)
    if path.exists():
        raise RequestError(f"dataset {ns.name!r} exists here already ({path})")
    policy = Policy.parse(ns.policy) if ns.policy else None
    wcap = await mesh.store.dataset_create(ns.name, policy)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"{wcap}\n")
    return View(
        data={"read": str(wcap.read_cap()), "verify": str(wcap.verify_cap()), "kept": str(path)},
        before=[
            f"write: {wcap}  (kept in {path})",
            f"read:  {wcap.read_cap()}",
            f"verify: {wcap.verify_cap()}",
        ],
    )


@command(
    "dataset add",
    "store PATH and add it to the dataset",
    arg("name"),
    arg("path"),
    arg("--as", dest="as_name", help="its name in the dataset (default: basename)"),
)
async def dataset_add(mesh: Mesh, ns: argparse.Namespace) -> View:
    wcap = _load_wcap(mesh.config.home_path, ns.name)
    src = Path(ns.path)
    if not src.exists():
        raise RequestError(f"{src}: no such file or directory")
    bar = Progress(_tree_bytes(src), f"add {src.name}")
    try:
        await mesh.store.dataset_add(wcap, src, name=ns.as_name, progress=bar)
    finally:
        bar.close()
    return View(data={"read": str(wcap.read_cap())}, before=[str(wcap.read_cap())])


def _load_wcap(home: Path, name: str) -> DatasetWriteCap:
    path = _cap_file(home, name)
    try:
        cap = parse_cap(path.read_text().strip())
    except FileNotFoundError:
        raise RequestError(f"no dataset {name!r} here (`motes dataset create {name}`)") from None
    if not isinstance(cap, DatasetWriteCap):
        raise BadCapability(str(cap), f"{path} does not hold a dataset write capability")
    return cap


@command(
    "mount", "a read-only FUSE view of a stored directory", arg("cap"), arg("dir"), kind=Kind.LOCAL
)
async def mount(config: Config, ns: argparse.Namespace) -> int:
    from ..store.fs import fuse_unavailable, mount_readonly

    reason = fuse_unavailable()
    if reason is not None:  # say so before reaching for the mesh
        raise Unsupported(reason)
    started = asyncio.Event()

    async def announce() -> None:
        await started.wait()
        print(f"mounted at {ns.dir} (read-only); unmount with `fusermount3 -u {ns.dir}` or Ctrl-C")

    async with connect(config=config) as mesh, asyncio.TaskGroup() as tg:
        task = tg.create_task(announce())
        try:
            await mount_readonly(mesh.store, ns.cap, Path(ns.dir), started=started)
        finally:
            task.cancel()
    return 0
