"""`motes mount CAP DIR` on a real mesh and a real FUSE mount: the stored tree shows
byte for byte, random reads of a multi-chunk file are right, writes are refused, and the
mount goes away cleanly on fusermount3 -u, SIGINT, SIGTERM and cancellation, even with a
read stuck in the store.

Skipped where ``fuse_unavailable()`` says FUSE cannot work (no /dev/fuse, no pyfuse3,
no right to mount).
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

from motes.client import Mesh
from motes.node.localmesh import LocalMesh
from motes.store.format import Entry
from motes.store.fs import FILE_NAME, fuse_unavailable, mount_readonly
from motes.testing import eventually

WHY = fuse_unavailable()
pytestmark = [
    pytest.mark.long,
    pytest.mark.skipif(WHY is not None, reason=f"no FUSE here: {WHY}"),
]

MiB = 1 << 20
BIG = random.Random(11).randbytes(2 * MiB + MiB // 2 + 123)  # three 1 MiB chunks


def make_tree(root: Path) -> dict[str, bytes]:
    """A directory to store; returns relative path -> content of every file."""
    files = {
        "hello.txt": b"hello, mesh\n",
        "empty": b"",
        "big.bin": BIG,
        "run.sh": b"#!/bin/sh\necho hi\n",
        "sub/notes.md": b"# notes\n" * 1000,
        "sub/deeper/still/leaf.bin": os.urandom(70_000),
        "sub/deeper/\u00e9t\u00e9.txt": "\u00e9t\u00e9\n".encode(),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "run.sh").chmod(0o755)
    (root / "void").mkdir()
    return files


def is_mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:  # never stats the mount: it may hang
        return any(line.split()[4] == str(path) for line in f)


def unmount(path: Path) -> None:
    subprocess.run(["fusermount3", "-u", str(path)], check=True, timeout=30)


def force_unmount(path: Path) -> None:
    """Cleanup after a failure: detach the mount even if its server is stuck or gone."""
    if is_mounted(path):
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


@asynccontextmanager
async def cli_mount(
    url: str, cap: str, mnt: Path, home: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``motes --home HOME --url URL mount CAP MNT`` in a child process (as the mesh's
    owner, whose credentials HOME holds), until it has mounted.
    On the way out, whatever happened: the child is stopped and the mount is gone."""
    mnt.mkdir(exist_ok=True)
    log = mnt.with_name(f"{mnt.name}.log")
    with open(log, "wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "motes.cli", "--home", str(home), "--url", url,
            "mount", cap, str(mnt), stdout=err, stderr=err,
        )  # fmt: skip

    async def mounted() -> bool:
        if proc.returncode is not None:
            raise AssertionError(f"mount exited {proc.returncode}: {log.read_text()}")
        return is_mounted(mnt)

    try:
        await eventually(mounted, timeout=30, what=f"a mount at {mnt}")
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await asyncio.to_thread(force_unmount, mnt)


def check_tree(mnt: Path, files: dict[str, bytes]) -> None:
    """Everything a reader of the mount would look at, compared with the source."""
    # Random reads first, on a fresh mount: nothing is in the page cache yet.
    rnd = random.Random(5)
    spots = [(rnd.randrange(len(BIG)), rnd.randrange(1, 300_000)) for _ in range(40)]
    spots += [(k * MiB - 7, 14) for k in (1, 2)]  # across chunk boundaries
    spots += [(len(BIG) - 1, 10), (len(BIG), 10), (0, len(BIG))]
    rnd.shuffle(spots)
    fd = os.open(mnt / "big.bin", os.O_RDONLY)
    try:
        for offset, size in spots:
            assert os.pread(fd, size, offset) == BIG[offset : offset + size], (offset, size)
    finally:
        os.close(fd)

    assert sorted(os.listdir(mnt)) == ["big.bin", "empty", "hello.txt", "run.sh", "sub", "void"]
    assert sorted(os.listdir(mnt / "sub" / "deeper")) == ["still", "\u00e9t\u00e9.txt"]
    assert os.listdir(mnt / "void") == []
    seen = {str(Path(d, f).relative_to(mnt)) for d, _, names in os.walk(mnt) for f in names}
    assert seen == set(files)
    for rel, data in files.items():
        path = mnt / rel
        assert path.stat().st_size == len(data), rel
        assert path.read_bytes() == data, rel
    assert (mnt / "run.sh").stat().st_mode & 0o777 == 0o555
    assert (mnt / "hello.txt").stat().st_mode & 0o777 == 0o444
    assert (mnt / "sub").is_dir()
    for attempt in (lambda: open(mnt / "new", "wb"), lambda: open(mnt / "hello.txt", "r+b")):
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EROFS


async def test_mount_shows_the_stored_tree_byte_for_byte(
    mesh: LocalMesh, client: Mesh, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    cap = await client.store.put(src)
    home, mnt = tmp_path / "home", tmp_path / "mnt"
    async with cli_mount(mesh.url, cap, mnt, mesh.home) as proc:
        await asyncio.to_thread(check_tree, mnt, files)
        await asyncio.to_thread(unmount, mnt)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    assert not is_mounted(mnt)
    assert os.listdir(mnt) == []
    # The mount read through the home's blob cache, the one `motes get` uses there.
    assert any((home / "cache" / "blobs").iterdir())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_signal_unmounts_and_exits(
    mesh: LocalMesh, client: Mesh, tmp_path: Path, sig: signal.Signals
) -> None:
    cap = await client.store.put(BIG)
    mnt = tmp_path / "mnt"
    async with cli_mount(mesh.url, cap, mnt, mesh.home) as proc:
        f = await asyncio.to_thread(open, mnt / FILE_NAME, "rb")
        try:  # a file open, half read, when the signal comes: it does not hold the mount
            assert await asyncio.to_thread(f.read, MiB + 5) == BIG[: MiB + 5]
            proc.send_signal(sig)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            assert not is_mounted(mnt)
        finally:
            with suppress(OSError):  # ENOTCONN: its file system has gone
                await asyncio.to_thread(f.close)
    assert os.listdir(mnt) == []


async def test_in_process_mount_ends_when_cancelled(
    mesh: LocalMesh, client: Mesh, tmp_path: Path
) -> None:
    cap = await client.store.put(b"in process\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    started = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(mount_readonly(client.store, cap, mnt, started=started))
            await asyncio.wait_for(started.wait(), 30)
            # Read in a thread: this process's event loop serves the mount.
            data = await asyncio.to_thread((mnt / FILE_NAME).read_bytes)
            assert data == b"in process\n"
            task.cancel()
        assert task.cancelled()
        assert not is_mounted(mnt)
        assert os.listdir(mnt) == []
    finally:
        await asyncio.to_thread(force_unmount, mnt)


class StuckStore:
    """A store whose every read waits forever (a mesh gone quiet mid-read)."""

    def __init__(self) -> None:
        self.reading = asyncio.Event()

    async def ls(self, cap: str) -> list[Entry]:
        return [Entry("stuck.bin", "motes:r1:stuck", 10, "file")]

    async def open(self, cap: str, *, start_chunk: int = 0) -> AsyncIterator[bytes]:
        self.reading.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_stuck_read_does_not_hold_the_mount(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    store = StuckStore()
    started = asyncio.Event()
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(mount_readonly(store, "x", mnt, started=started, grace=0.5))
            await asyncio.wait_for(started.wait(), 30)
            loop = asyncio.get_running_loop()
            reading = loop.run_in_executor(None, (mnt / "stuck.bin").read_bytes)
            await asyncio.wait_for(store.reading.wait(), 15)
            task.cancel()  # stops, waits out the grace period, cancels the stuck read
            with pytest.raises(OSError):  # the reader is told, it does not hang
                await asyncio.wait_for(reading, 15)
        assert task.cancelled()
        assert not is_mounted(mnt)
    finally:
        await asyncio.to_thread(force_unmount, mnt)
