"""A read-only FUSE view of stored data: ``motes mount CAP DIR``.

Owns the mount: whether FUSE can work here (``fuse_unavailable``), the inode table over a
capability's tree (listed lazily, once per directory, through ``store.ls``), reads at any
offset of a file the store can only stream from its start (``ChunkReader``), and the
mount's life: mounted until ``fusermount3 -u``/``umount``, SIGINT/SIGTERM or
cancellation, then unmounted. Everything is read through ``store``, so through the blob
cache the node's other readers share.

Stored data never changes under a capability, so the kernel may cache names, attributes
and pages for as long as it likes; a dataset is shown as it was when it was mounted.
pyfuse3 (the optional ``fuse`` extra) serves one mount per process.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import logging
import os
import shutil
import signal
import stat
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import BadMessage, FatalError, MotesError, RequestError, Unsupported
from .format import Entry

try:  # the optional `fuse` extra; fuse_unavailable() says what is missing
    import pyfuse3
    import pyfuse3.asyncio
except ImportError:
    pass

if TYPE_CHECKING:
    from pyfuse3 import FileHandleT, FileNameT, InodeT, ReaddirToken, RequestContext
    from pyfuse3 import Operations as _OperationsBase
else:  # without pyfuse3 the view is never instantiated: mount_readonly refuses first
    _OperationsBase = getattr(sys.modules.get("pyfuse3"), "Operations", object)

__all__ = ["FILE_NAME", "ChunkReader", "ReadableStore", "fuse_unavailable", "mount_readonly"]

log = logging.getLogger(__name__)

DEV_FUSE = Path("/dev/fuse")
PROC_STATUS = Path("/proc/self/status")
FUSERMOUNT = "fusermount3"
INSTALL_HINT = "pip install 'motes[fuse]' (needs libfuse3-dev and pkg-config to build)"
CAP_SYS_ADMIN = 21

FILE_NAME = "data"
"""The name a mounted *file* capability shows under: a mount root is a directory."""
KEEP_CHUNKS = 4
"""Decoded chunks kept per open file; sequential reads and small jumps hit them."""
GRACE_S = 5.0
"""How long a stopping mount lets requests in flight finish before cancelling them."""
CACHE_S = 3600.0
"""Kernel cache timeout for names and attributes: stored data never changes."""
ROOT = 1  # pyfuse3.ROOT_INODE (FUSE_ROOT_ID)


class ReadableStore(Protocol):
    """What the mount needs of ``mesh.store`` (a ``StoreClient``)."""

    async def ls(self, cap: str) -> list[Entry]: ...

    async def open(self, cap: str, *, start_chunk: int = 0) -> AsyncIterator[bytes]: ...


# --- can FUSE work here? ----------------------------------------------------------------


def fuse_unavailable() -> str | None:
    """Why a FUSE mount cannot work on this machine, in one line; None when it can."""
    if not sys.platform.startswith("linux"):
        return f"FUSE mounts are supported on Linux only (this is {sys.platform})"
    try:
        importlib.import_module("pyfuse3")
    except ModuleNotFoundError as exc:
        missing = "" if exc.name == "pyfuse3" else f" (it needs {exc.name})"
        return f"pyfuse3 is not installed{missing}: {INSTALL_HINT}"
    except ImportError as exc:  # installed, but libfuse3 itself is missing or broken
        return f"pyfuse3 cannot load libfuse3 ({exc}): install it (apt-get install fuse3)"
    if not DEV_FUSE.exists():
        return (
            f"FUSE is unavailable here: {DEV_FUSE} does not exist "
            "(modprobe fuse; in a container, run it with --device /dev/fuse)"
        )
    try:
        os.close(os.open(DEV_FUSE, os.O_RDWR))
    except OSError as exc:
        return (
            f"FUSE is unavailable here: cannot open {DEV_FUSE} ({exc.strerror}); "
            "ask for read-write access to it (it is usually mode 0666)"
        )
    if not _may_gain_sys_admin():
        return (
            "FUSE mounts are not permitted here: this process can never hold CAP_SYS_ADMIN "
            "(in a container, run it with --cap-add SYS_ADMIN --device /dev/fuse)"
        )
    if os.geteuid() != 0 and shutil.which(FUSERMOUNT) is None:
        return f"FUSE mounts by a non-root user need {FUSERMOUNT}: apt-get install fuse3"
    return None


def _may_gain_sys_admin() -> bool:
    """Whether CAP_SYS_ADMIN is in the bounding set: mount(2), and the setuid
    fusermount3, need it; without it no process here can mount anything."""
    try:
        status = PROC_STATUS.read_text()
    except OSError:
        return True  # no /proc to ask: let the mount itself say
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return True


# --- random access over a chunk stream ----------------------------------------------------


class ChunkReader:
    """Reads at any offset of one stored file, over a stream of its chunks.

    Chunks are fixed-size (the last may be shorter); the size is learnt from chunk 0.
    The last ``keep`` chunks are kept decoded. A read past the stream's position reads
    on; a read behind it (and not kept) starts a new stream at the chunk it needs
    (``open_stream(start_chunk)``). Reads are serialized: the kernel may send several
    at once.
    """

    def __init__(
        self,
        open_stream: Callable[[int], Awaitable[AsyncIterator[bytes]]],
        size: int,
        *,
        keep: int = KEEP_CHUNKS,
    ) -> None:
        self.size = size
        self.streams_opened = 0
        self._open_stream = open_stream
        self._keep = max(keep, 1)
        self._kept: OrderedDict[int, bytes] = OrderedDict()
        self._stream: AsyncIterator[bytes] | None = None
        self._next = 0
        self._chunk_size: int | None = None
        self._lock = asyncio.Lock()

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``; fewer at the end of the file."""
        end = min(offset + size, self.size)
        if offset < 0 or offset >= end:
            return b""
        async with self._lock:
            if self._chunk_size is None:
                await self._chunk(0)
            assert self._chunk_size is not None
            c = self._chunk_size
            parts = []
            for index in range(offset // c, (end - 1) // c + 1):
                data = await self._chunk(index)
                base = index * c
                parts.append(data[max(offset - base, 0) : end - base])
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def close(self) -> None:
        async with self._lock:
            await self._drop_stream()
            self._kept.clear()

    async def _chunk(self, index: int) -> bytes:
        kept = self._kept.get(index)
        if kept is not None:
            self._kept.move_to_end(index)
            return kept
        if self._stream is None or self._next > index:
            await self._drop_stream()
            start = index if self._chunk_size is not None else 0  # seek once size is known
            self._stream = await self._open_stream(start)
            self._next = start
            self.streams_opened += 1
        while True:
            try:
                data = await anext(self._stream)
            except StopAsyncIteration:
                await self._drop_stream()
                raise BadMessage(
                    f"a stored file ends before its size ({self.size} bytes)"
                ) from None
            except BaseException:
                await self._drop_stream()  # the next read starts afresh
                raise
            got = self._next
            self._next += 1
            self._check(got, data)
            self._kept[got] = data
            while len(self._kept) > self._keep:
                self._kept.popitem(last=False)
            if got == index:
                return data

    def _check(self, index: int, data: bytes) -> None:
        if index == 0 and self._chunk_size is None:
            if not 0 < len(data) <= self.size:
                raise BadMessage(f"a stored file's first chunk has {len(data)} bytes")
            self._chunk_size = len(data)
            return
        assert self._chunk_size is not None
        want = min(self._chunk_size, self.size - index * self._chunk_size)
        if len(data) != want:
            raise BadMessage(f"chunk {index} of a stored file has {len(data)} bytes, not {want}")

    async def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if isinstance(stream, AsyncGenerator):
            await stream.aclose()  # cancels the download's prefetching


# --- the tree -----------------------------------------------------------------------------


@dataclass(slots=True)
class Node:
    """One inode: a stored entry and, for a directory once listed, its children."""

    inode: int
    parent: int
    entry: Entry
    children: dict[bytes, Node] | None = None
    """Name -> child, in name order; None until the directory is listed."""
    listed: list[Node] = field(default_factory=list)
    listing: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def is_dir(self) -> bool:
        return self.entry.kind == "dir"


class Tree:
    """Inodes over a capability's tree. Nothing is ever forgotten: stored data does not
    change, and the table grows only with what is browsed."""

    def __init__(self, store: ReadableStore, root: list[Entry]) -> None:
        self.store = store
        self.nodes: dict[int, Node] = {}
        top = Node(ROOT, ROOT, Entry("", "", 0, "dir", 0o755))
        self.nodes[ROOT] = top
        if len(root) == 1 and root[0].name == "" and root[0].kind == "file":
            single = root[0]
            root = [Entry(FILE_NAME, single.cap, single.size, "file", single.mode)]
        self._adopt(top, root)

    @classmethod
    async def load(cls, store: ReadableStore, cap: str) -> Tree:
        """The tree of ``cap`` (a directory, dataset or file capability), root listed."""
        return cls(store, await store.ls(cap))

    def node(self, inode: int) -> Node:
        try:
            return self.nodes[inode]
        except KeyError:
            raise FuseErrno(errno.ENOENT) from None

    async def children(self, inode: int) -> list[Node]:
        """A directory's children, sorted by name (listed from the store the first time)."""
        parent = self.node(inode)
        if not parent.is_dir:
            raise FuseErrno(errno.ENOTDIR)
        if parent.children is None:
            async with parent.listing:  # one listing, however many ask at once
                if parent.children is None:
                    self._adopt(parent, await self.store.ls(parent.entry.cap))
        return parent.listed

    async def lookup(self, inode: int, name: bytes) -> Node | None:
        if name == b".":
            return self.node(inode)
        if name == b"..":
            return self.node(self.node(inode).parent)
        await self.children(inode)
        children = self.nodes[inode].children
        assert children is not None
        return children.get(name)

    def _adopt(self, parent: Node, entries: list[Entry]) -> None:
        children: dict[bytes, Node] = {}
        for entry in sorted(entries, key=lambda e: os.fsencode(e.name)):
            name = os.fsencode(entry.name)
            if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
                log.warning("skipping a directory entry named %r", entry.name)
            elif entry.kind not in ("file", "dir"):
                log.warning("skipping %r: unknown kind %r", entry.name, entry.kind)
            elif name in children:
                log.warning("skipping a second directory entry named %r", entry.name)
            else:
                inode = len(self.nodes) + 1
                children[name] = self.nodes[inode] = Node(inode, parent.inode, entry)
        parent.children = children
        parent.listed = list(children.values())


class FuseErrno(Exception):
    """An errno for the kernel; the view turns it into ``pyfuse3.FUSEError``."""

    def __init__(self, errno_: int) -> None:
        super().__init__(os.strerror(errno_))
        self.errno = errno_


# --- the FUSE operations ------------------------------------------------------------------


# Without the fuse extra, mypy sees pyfuse3 as Any: that subclass is fine, nothing runs it.
class View(_OperationsBase):  # type: ignore[misc,unused-ignore]
    """pyfuse3 operations over a ``Tree``: lookups, listings, reads; writes get EROFS."""

    supports_dot_lookup = False  # not exported over NFS: the kernel never asks for . or ..

    def __init__(self, tree: Tree) -> None:
        super().__init__()
        self.tree = tree
        self.readers: dict[int, ChunkReader] = {}
        self._handles = 0
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._uid, self._gid = os.getuid(), os.getgid()
        self._time_ns = time.time_ns()

    def cancel_requests(self) -> None:
        """Cancel every request being served (a stop that cannot wait any longer)."""
        for task in self._in_flight:
            task.cancel()

    @contextmanager
    def _request(self, what: str) -> Iterator[None]:
        # Every failure becomes an errno: an exception escaping a pyfuse3 handler leaves
        # the kernel request unanswered, and the reading process hangs until unmount.
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            yield
        except pyfuse3.FUSEError:
            raise
        except FuseErrno as exc:
            raise pyfuse3.FUSEError(exc.errno) from None
        except MotesError as exc:
            log.warning("%s failed: %s", what, exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("%s failed", what)
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            if task is not None:
                self._in_flight.discard(task)

    def _attributes(self, node: Node) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = pyfuse3.InodeT(node.inode)
        attr.entry_timeout = attr.attr_timeout = CACHE_S
        if node.is_dir:
            attr.st_mode = pyfuse3.ModeT(stat.S_IFDIR | 0o555)
            attr.st_nlink = 2
            attr.st_size = 0
        else:
            attr.st_mode = pyfuse3.ModeT(stat.S_IFREG | (node.entry.mode & 0o555))
            attr.st_nlink = 1
            attr.st_size = node.entry.size
        attr.st_blksize = 1 << 17
        attr.st_blocks = -(-attr.st_size // 512)
        attr.st_uid, attr.st_gid = self._uid, self._gid
        attr.st_atime_ns = attr.st_mtime_ns = attr.st_ctime_ns = self._time_ns
        return attr

    async def lookup(
        self, parent_inode: InodeT, name: FileNameT, ctx: RequestContext
    ) -> pyfuse3.EntryAttributes:
        with self._request("lookup"):
            node = await self.tree.lookup(parent_inode, name)
            if node is None:
                raise FuseErrno(errno.ENOENT)
            return self._attributes(node)

    async def getattr(self, inode: InodeT, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        with self._request("getattr"):
            return self._attributes(self.tree.node(inode))

    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        with self._request("opendir"):
            if not self.tree.node(inode).is_dir:
                raise FuseErrno(errno.ENOTDIR)
            return pyfuse3.FileHandleT(inode)  # a directory's handle is its inode

    async def readdir(self, fh: FileHandleT, start_id: int, token: ReaddirToken) -> None:
        with self._request("readdir"):
            children = await self.tree.children(fh)
            for at in range(start_id, len(children)):
                child = children[at]
                name = pyfuse3.FileNameT(os.fsencode(child.entry.name))
                if not pyfuse3.readdir_reply(token, name, self._attributes(child), at + 1):
                    break

    async def releasedir(self, fh: FileHandleT) -> None:
        return None

    async def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> pyfuse3.FileInfo:
        with self._request("open"):
            node = self.tree.node(inode)
            if node.is_dir:
                raise FuseErrno(errno.EISDIR)
            if flags & os.O_ACCMODE != os.O_RDONLY:
                raise FuseErrno(errno.EROFS)
            self._handles += 1
            cap = node.entry.cap
            self.readers[self._handles] = ChunkReader(
                lambda start: self.tree.store.open(cap, start_chunk=start), node.entry.size
            )
            # Same capability, same bytes: pages cached by an earlier open stay valid.
            return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(self._handles), keep_cache=True)

    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        with self._request("read"):
            reader = self.readers.get(fh)
            if reader is None:
                raise FuseErrno(errno.EBADF)
            return await reader.read(off, size)

    async def release(self, fh: FileHandleT) -> None:
        with self._request("release"):
            reader = self.readers.pop(fh, None)
            if reader is not None:
                await reader.close()

    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        data.f_bsize = data.f_frsize = 1 << 17
        data.f_blocks = data.f_bfree = data.f_bavail = 0
        data.f_files = len(self.tree.nodes)
        data.f_ffree = data.f_favail = 0
        data.f_namemax = 255
        return data


# --- mounting -----------------------------------------------------------------------------

_mounted: Path | None = None


async def mount_readonly(
    store: ReadableStore,
    cap: str,
    mountpoint: Path,
    *,
    started: asyncio.Event | None = None,
    grace: float = GRACE_S,
) -> None:
    """Mount ``cap`` read-only at ``mountpoint`` and serve it until it is unmounted
    (``fusermount3 -u``), SIGINT/SIGTERM arrives, or this is cancelled; then unmount.

    The first signal lets requests in flight finish for up to ``grace`` seconds; a
    second cancels them. ``started`` is set once the mount is in place. Raises
    ``Unsupported`` where FUSE cannot work, ``RequestError`` for a bad mountpoint.
    """
    global _mounted
    reason = fuse_unavailable()
    if reason is not None:
        raise Unsupported(reason)
    mountpoint = Path(mountpoint)
    if not mountpoint.is_dir():
        raise RequestError(f"{mountpoint}: not a directory (create it first)")
    if _mounted is not None:
        raise RequestError(f"this process already serves a mount at {_mounted} (one per process)")
    _mounted = mountpoint
    try:
        view = View(await Tree.load(store, cap))  # a bad capability fails before mounting
        _init(view, mountpoint)
        try:
            await _serve(view, mountpoint, started, grace)
        finally:
            pyfuse3.close(unmount=True)  # a no-op where it was unmounted already
            log.info("unmounted %s", mountpoint)
    finally:
        _mounted = None


def _init(view: View, mountpoint: Path) -> None:
    pyfuse3.asyncio.enable()
    pyfuse3.asyncio.notify_closing = _notify_closing  # see there
    options = set(pyfuse3.default_options) | {"ro", "fsname=motes", "subtype=motes"}
    try:
        pyfuse3.init(view, str(mountpoint), options)
    except RuntimeError as exc:
        if "mount" in str(exc):  # the session exists, the mount was refused
            pyfuse3.close(unmount=False)
        raise Unsupported(
            f"FUSE could not mount {mountpoint} ({exc}; the 'fuse:' line above says why); "
            f"a container needs --device /dev/fuse --cap-add SYS_ADMIN, a user {FUSERMOUNT}"
        ) from None


def _notify_closing(fd: pyfuse3.FileHandleT) -> None:
    """``pyfuse3.terminate`` wakes the worker waiting for the FUSE fd with this. pyfuse3
    3.5's asyncio version leaves the fd's reader in place, which may then fire on the
    finished future (an InvalidStateError the loop logs); this one removes it first."""
    asyncio.get_running_loop().remove_reader(fd)
    for future in pyfuse3.asyncio._read_futures.get(fd, ()):
        if not future.done():
            future.set_exception(pyfuse3.asyncio.ClosedResourceError())


async def _serve(view: View, mountpoint: Path, started: asyncio.Event | None, grace: float) -> None:
    loop = asyncio.get_running_loop()
    stops = 0
    timer: asyncio.TimerHandle | None = None

    def stop() -> None:
        nonlocal stops, timer
        stops += 1
        if stops == 1:
            log.info("unmounting %s", mountpoint)
            pyfuse3.terminate()  # idle workers end now; busy ones after their request
            timer = loop.call_later(grace, view.cancel_requests)
        else:
            view.cancel_requests()

    try:
        with _signals(stop):
            async with asyncio.TaskGroup() as tg:
                serving = tg.create_task(pyfuse3.main(), name=f"fuse {mountpoint}")
                log.info("mounted %s", mountpoint)
                if started is not None:
                    started.set()
                try:
                    await asyncio.wait({serving})  # unlike `await serving`, never cancels it
                finally:
                    if not serving.done():  # cancelled: close the session only once it ends
                        stop()
                        await asyncio.wait({serving})
    except* OSError as group:
        raise FatalError(
            f"the FUSE session at {mountpoint} failed: {group.exceptions[0]}"
        ) from None
    finally:
        if timer is not None:
            timer.cancel()


@contextmanager
def _signals(handler: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler`` while the mount is served (main thread only)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        try:
            loop.add_signal_handler(sig, handler)
        except (ValueError, RuntimeError, NotImplementedError):
            continue  # not the main thread: whoever runs the loop handles signals
        installed.append((sig, previous))
    try:
        yield
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
