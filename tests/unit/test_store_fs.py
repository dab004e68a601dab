"""The FUSE view's parts that need no kernel: why FUSE is unavailable, reads at any offset
over a chunk stream, and the inode tree over stored directories."""

from __future__ import annotations

import asyncio
import errno
import os
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motes.errors import BadMessage, RequestError, Unsupported
from motes.store import fs
from motes.store.format import Entry

CHUNK = 1000


# --- fuse_unavailable ---------------------------------------------------------------------


@pytest.fixture
def usable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Every input of the detection set to 'FUSE works': a fake module, device and status."""
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(sys.modules, "pyfuse3", sys.modules.get("pyfuse3") or object())
    device = tmp_path / "fuse"
    device.write_bytes(b"")
    monkeypatch.setattr(fs, "DEV_FUSE", device)
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapBnd:\t000001ffffffffff\n")
    monkeypatch.setattr(fs, "PROC_STATUS", status)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return tmp_path


def test_usable_when_every_input_says_so(usable: Path) -> None:
    assert fs.fuse_unavailable() is None


def test_missing_pyfuse3_says_how_to_install_it(
    usable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyfuse3", None)  # None in sys.modules: import fails
    assert fs.fuse_unavailable() == (
        "pyfuse3 is not installed: pip install 'motes[fuse]' "
        "(needs libfuse3-dev and pkg-config to build)"
    )


def test_missing_device_is_named(usable: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "DEV_FUSE", usable / "nothing")
    reason = fs.fuse_unavailable()
    assert reason is not None
    assert reason.startswith(f"FUSE is unavailable here: {usable / 'nothing'} does not exist")
    assert "--device /dev/fuse" in reason


def test_unopenable_device_is_named(usable: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "DEV_FUSE", usable)  # a directory cannot be opened read-write
    reason = fs.fuse_unavailable()
    assert reason is not None and reason.startswith(
        f"FUSE is unavailable here: cannot open {usable}"
    )


def test_no_sys_admin_in_the_bounding_set_means_no_mount(
    usable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (usable / "status").write_text("CapBnd:\t00000000a80425fb\n")  # Docker's default set
    reason = fs.fuse_unavailable()
    assert reason is not None and "CAP_SYS_ADMIN" in reason and "--cap-add SYS_ADMIN" in reason


def test_a_user_needs_fusermount3(usable: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("PATH", str(usable))
    assert fs.fuse_unavailable() == (
        "FUSE mounts by a non-root user need fusermount3: apt-get install fuse3"
    )
    (usable / "fusermount3").write_text("#!/bin/sh\n")
    (usable / "fusermount3").chmod(0o755)
    assert fs.fuse_unavailable() is None


def test_not_linux(usable: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert fs.fuse_unavailable() == "FUSE mounts are supported on Linux only (this is darwin)"


class Untouchable:
    """A store the mount must not use when FUSE is unavailable."""

    async def ls(self, cap: str) -> list[Entry]:
        raise AssertionError("ls called")

    async def open(self, cap: str, *, start_chunk: int = 0) -> AsyncIterator[bytes]:
        raise AssertionError("open called")


async def test_mount_refuses_with_unsupported_before_reading_anything(
    usable: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fs, "DEV_FUSE", usable / "nothing")
    with pytest.raises(Unsupported, match=r"^FUSE is unavailable here: .* does not exist") as info:
        await fs.mount_readonly(Untouchable(), "motes:r1:x", usable)
    assert isinstance(info.value, RequestError)  # the CLI prints it on one line, exits 2


# --- ChunkReader --------------------------------------------------------------------------


class Stored:
    """A file that can only be streamed from the start, as ``store.open`` does."""

    def __init__(self, data: bytes, chunk: int = CHUNK) -> None:
        self.data = data
        self.chunk = chunk
        self.opened = 0
        self.served = 0

    async def open(self, start: int = 0) -> AsyncIterator[bytes]:
        self.opened += 1
        return self._chunks(start)

    async def _chunks(self, start: int = 0) -> AsyncIterator[bytes]:
        for at in range(start * self.chunk, len(self.data), self.chunk):
            self.served += 1
            yield self.data[at : at + self.chunk]


DATA = random.Random(3).randbytes(10 * CHUNK + 17)


async def test_sequential_reads_stream_once() -> None:
    stored = Stored(DATA)
    reader = fs.ChunkReader(stored.open, len(DATA))
    got = b"".join([await reader.read(at, 256) for at in range(0, len(DATA), 256)])
    assert got == DATA
    assert stored.opened == 1 and stored.served == 11


async def test_reads_at_any_offset_and_past_the_end() -> None:
    stored = Stored(DATA)
    reader = fs.ChunkReader(stored.open, len(DATA), keep=2)
    for offset, size in [
        (9 * CHUNK + 5, 3000),  # runs past the end: cut short
        (0, 10),  # behind the stream: a new stream
        (CHUNK - 3, 6),  # across a chunk boundary
        (5 * CHUNK, 3 * CHUNK),  # several whole chunks
        (len(DATA) - 1, 1),
        (len(DATA), 10),  # at the end: nothing
        (len(DATA) + 99, 10),
    ]:
        assert await reader.read(offset, size) == DATA[offset : offset + size], (offset, size)
    assert stored.opened == 2  # once, and again for the jump back to chunk 0


async def test_kept_chunks_serve_jumps_back_without_a_new_stream() -> None:
    stored = Stored(DATA)
    reader = fs.ChunkReader(stored.open, len(DATA), keep=4)
    assert await reader.read(6 * CHUNK, 10) == DATA[6 * CHUNK : 6 * CHUNK + 10]
    assert await reader.read(3 * CHUNK + 1, 10) == DATA[3 * CHUNK + 1 : 3 * CHUNK + 11]
    assert stored.opened == 1


async def test_concurrent_reads_get_their_own_bytes() -> None:
    stored = Stored(DATA)
    reader = fs.ChunkReader(stored.open, len(DATA), keep=1)
    spots = [(random.Random(i).randrange(len(DATA)), 1500) for i in range(30)]
    got = await asyncio.gather(*(reader.read(o, n) for o, n in spots))
    assert got == [DATA[o : o + n] for o, n in spots]


async def test_a_short_stream_is_an_error_not_short_data() -> None:
    stored = Stored(DATA[: 3 * CHUNK])
    reader = fs.ChunkReader(stored.open, len(DATA))
    with pytest.raises(BadMessage, match="ends before its size"):
        await reader.read(5 * CHUNK, 10)


async def test_a_chunk_of_the_wrong_size_is_an_error() -> None:
    class Ragged(Stored):
        async def _chunks(self, start: int = 0) -> AsyncIterator[bytes]:
            yield self.data[:CHUNK]
            yield self.data[CHUNK : CHUNK + 10]
            yield self.data[CHUNK + 10 :]

    reader = fs.ChunkReader(Ragged(DATA).open, len(DATA))
    with pytest.raises(BadMessage, match="chunk 1 of a stored file has 10 bytes"):
        await reader.read(CHUNK, 100)


async def test_a_failed_stream_is_reopened_on_the_next_read() -> None:
    class Flaky(Stored):
        async def _chunks(self, start: int = 0) -> AsyncIterator[bytes]:
            async for chunk in super()._chunks(start):
                if self.opened == 1 and self.served == 3:
                    raise ConnectionError("a node went away")
                yield chunk

    stored = Flaky(DATA)
    reader = fs.ChunkReader(stored.open, len(DATA))
    with pytest.raises(ConnectionError):
        await reader.read(4 * CHUNK, 10)
    assert await reader.read(4 * CHUNK, 10) == DATA[4 * CHUNK : 4 * CHUNK + 10]
    assert stored.opened == 2


async def test_close_ends_the_stream() -> None:
    closed = asyncio.Event()

    class Watched(Stored):
        async def _chunks(self, start: int = 0) -> AsyncIterator[bytes]:
            try:
                async for chunk in super()._chunks(start):
                    yield chunk
            finally:
                closed.set()

    reader = fs.ChunkReader(Watched(DATA).open, len(DATA))
    await reader.read(0, 10)
    await reader.close()
    assert closed.is_set()


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 6 * CHUNK),
    keep=st.integers(1, 3),
    reads=st.lists(st.tuples(st.integers(0, 7 * CHUNK), st.integers(1, 2 * CHUNK)), max_size=12),
)
def test_any_reads_match_slices(size: int, keep: int, reads: list[tuple[int, int]]) -> None:
    data = random.Random(size).randbytes(size)

    async def run() -> list[bytes]:
        reader = fs.ChunkReader(Stored(data).open, size, keep=keep)
        return [await reader.read(o, n) for o, n in reads]

    assert asyncio.run(run()) == [data[o : o + n] for o, n in reads]


# --- Tree ---------------------------------------------------------------------------------


class Listing:
    """``store.ls`` over a dict of capability -> entries, counting calls."""

    def __init__(self, dirs: dict[str, list[Entry]]) -> None:
        self.dirs = dirs
        self.calls: list[str] = []

    async def ls(self, cap: str) -> list[Entry]:
        self.calls.append(cap)
        await asyncio.sleep(0)  # let concurrent lookups pile up
        return self.dirs[cap]

    async def open(self, cap: str, *, start_chunk: int = 0) -> AsyncIterator[bytes]:
        raise AssertionError("not read here")


def names(nodes: list[fs.Node]) -> list[str]:
    return [n.entry.name for n in nodes]


async def test_directories_are_listed_lazily_and_once() -> None:
    store = Listing(
        {
            "root": [Entry("z.txt", "c1", 5, "file"), Entry("sub", "d1", 9, "dir", 0o755)],
            "d1": [Entry("deeper", "d2", 4, "dir", 0o755), Entry("a.bin", "c2", 5, "file")],
            "d2": [Entry("x", "c3", 4, "file", 0o755)],
        }
    )
    tree = await fs.Tree.load(store, "root")
    assert names(await tree.children(fs.ROOT)) == ["sub", "z.txt"]
    assert store.calls == ["root"]
    sub = await tree.lookup(fs.ROOT, b"sub")
    assert sub is not None and sub.is_dir
    found = await asyncio.gather(*(tree.lookup(sub.inode, b"deeper") for _ in range(5)))
    assert len({n.inode for n in found if n is not None}) == 1
    assert store.calls == ["root", "d1"]
    deeper = found[0]
    assert deeper is not None
    x = await tree.lookup(deeper.inode, b"x")
    assert x is not None and x.entry.cap == "c3" and x.entry.size == 4
    assert await tree.lookup(deeper.inode, b"..") is sub
    assert await tree.lookup(fs.ROOT, b"missing") is None
    with pytest.raises(fs.FuseErrno) as info:
        await tree.children(x.inode)
    assert info.value.errno == errno.ENOTDIR


async def test_a_file_capability_mounts_as_a_directory_holding_it() -> None:
    tree = await fs.Tree.load(Listing({"f": [Entry("", "f", 123, "file")]}), "f")
    [only] = await tree.children(fs.ROOT)
    assert (only.entry.name, only.entry.cap, only.entry.size) == (fs.FILE_NAME, "f", 123)


async def test_unsafe_names_are_skipped() -> None:
    bad = ["", ".", "..", "a/b", "nul\0", "ok"]
    store = Listing({"r": [Entry(n, "c", 1, "file") for n in bad] + [Entry("odd", "c", 1, "link")]})
    tree = await fs.Tree.load(store, "r")
    assert names(await tree.children(fs.ROOT)) == ["ok"]


async def test_a_jump_back_opens_the_stream_at_the_chunk_needed() -> None:
    stored = Stored(DATA)
    reader = fs.ChunkReader(stored.open, len(DATA), keep=1)
    assert await reader.read(8 * CHUNK, 10) == DATA[8 * CHUNK : 8 * CHUNK + 10]
    assert stored.served == 9  # chunks 0..8: the first stream learns the chunk size
    assert await reader.read(2 * CHUNK + 7, 10) == DATA[2 * CHUNK + 7 : 2 * CHUNK + 17]
    assert (stored.opened, stored.served) == (2, 10)  # the second starts at chunk 2
