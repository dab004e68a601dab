"""The store on real meshes: k-of-n survival, corruption, secrecy, bad caps, repair, cache.

Every test runs real node processes (each with its store service) on a real nats-server.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import nats
import pytest

from motes.client import Mesh
from motes.errors import BadCapability, BadMessage, DataUnavailable, NotStored, UnknownCapability
from motes.node.localmesh import LocalMesh
from motes.store import Policy
from motes.store.caps import FileReadCap, parse_cap
from motes.testing import FAST, eventually, local_mesh, wire_spy

K, N = 3, 10
TEN = Policy.parse("k=3,n=10,happy=7")


@pytest.fixture
async def ten(tmp_path: Path) -> AsyncIterator[LocalMesh]:
    async with local_mesh(tmp_path, nodes=10) as m:
        yield m


@pytest.fixture
async def uncached(ten: LocalMesh) -> AsyncIterator[Mesh]:
    """A client with no cache: every read goes to the nodes."""
    async with ten.client(timing=FAST, cache=False) as c:
        yield c


def share_dirs(mesh: LocalMesh) -> dict[str, Path]:
    return {n.name: n.home / "store" / "shares" for n in mesh.nodes}


@contextmanager
def shares_removed(mesh: LocalMesh, names: tuple[str, ...]) -> Iterator[None]:
    """Take every share of the named nodes away (moved aside), put them back after."""
    dirs = share_dirs(mesh)
    for name in names:
        dirs[name].rename(dirs[name].with_name("shares.away"))
    try:
        yield
    finally:
        for name in names:
            dirs[name].with_name("shares.away").rename(dirs[name])


def share_files(mesh: LocalMesh) -> list[Path]:
    return sorted(p for d in share_dirs(mesh).values() for p in d.rglob("*.*") if p.is_file())


async def test_any_seven_of_ten_nodes_can_lose_their_shares(ten: LocalMesh, uncached: Mesh) -> None:
    small = os.urandom(50_000)
    cap = await uncached.store.put(small, policy=TEN)
    large = random.Random(7).randbytes(5 * 2**20 + 123)  # six chunks
    large_cap = await uncached.store.put(large, policy=TEN)
    names = [n.name for n in ten.nodes]
    for gone in itertools.combinations(names, N - K):  # all 120 sets of 7
        with shares_removed(ten, gone):
            assert await uncached.store.get(cap) == small, gone
    for gone in random.Random(1).sample(list(itertools.combinations(names, N - K)), 6):
        with shares_removed(ten, gone):
            assert await uncached.store.get(large_cap) == large, gone
    for gone in random.Random(2).sample(list(itertools.combinations(names, N - K + 1)), 3):
        with shares_removed(ten, gone):
            with pytest.raises(DataUnavailable, match=r"2 good share\(s\) reachable, 3 needed"):
                await uncached.store.get(cap)


async def test_a_flipped_byte_anywhere_in_a_share_is_detected_and_routed_around(
    ten: LocalMesh, uncached: Mesh
) -> None:
    data = os.urandom(200_000)
    cap = await uncached.store.put(data, policy=TEN)
    files = share_files(ten)
    assert len(files) == 2 * N  # one chunk and the manifest
    rng = random.Random(3)
    # Damage seven of each blob's ten shares, each at a different place (header or body):
    # the reader must find the three good ones.
    by_blob: dict[str, list[Path]] = {}
    for f in files:
        by_blob.setdefault(f.name.split(".")[0], []).append(f)
    for shares in by_blob.values():
        for f in rng.sample(shares, N - K):
            raw = bytearray(f.read_bytes())
            raw[rng.randrange(len(raw))] ^= 0x40
            f.write_bytes(bytes(raw))
    assert await uncached.store.get(cap) == data
    # An eighth damaged share is one too many: a clear error, never wrong bytes.
    for shares in by_blob.values():
        for f in shares:
            if f.exists():
                raw = bytearray(f.read_bytes())
                raw[-1] ^= 0x01
                f.write_bytes(bytes(raw))
    with pytest.raises(DataUnavailable):
        await uncached.store.get(cap)


async def test_plaintext_never_reaches_a_share_file_or_the_lattice(
    ten: LocalMesh, uncached: Mesh, tmp_path: Path
) -> None:
    canary = b"MOTES-CANARY-" + os.urandom(8).hex().encode()
    seen: list[bytes] = []
    # A connection allowed to watch every subject, replies included (no principal's is).
    spy = await nats.connect(ten.url, **wire_spy(ten))

    async def capture(msg: nats.aio.msg.Msg) -> None:
        seen.append(msg.data + b"\0" + bytes(str(msg.headers or ""), "utf8"))

    await spy.subscribe(">", cb=capture)
    try:
        source = tmp_path / "secret.txt"
        source.write_bytes((canary + b" some words in between ") * 20_000 + b"\n")
        cap = await uncached.store.put(source)
        folder = tmp_path / "secret-dir"
        folder.mkdir()
        (folder / f"{canary.decode()}.txt").write_bytes(canary)  # a secret *name* too
        dir_cap = await uncached.store.put(folder)
        assert await uncached.store.get(cap) == source.read_bytes()
        names = [e.name for e in await uncached.store.ls(dir_cap)]
        assert names == [f"{canary.decode()}.txt"]
        await spy.flush()
    finally:
        await spy.drain()
    assert len(seen) > 100
    assert not [m[:80] for m in seen if canary in m], "the canary crossed the lattice"
    stored = [p for p in ten.home.rglob("*") if p.is_file()]
    assert any("shares" in p.parts for p in stored)
    leaked = [p for p in stored if canary in p.read_bytes()]
    assert not leaked, f"the canary is on disk in {leaked}"


async def test_forged_unknown_and_wrong_capabilities_get_clear_errors(uncached: Mesh) -> None:
    cap = await uncached.store.put(b"hello, store", policy=TEN)
    read = parse_cap(cap)
    assert isinstance(read, FileReadCap)
    with pytest.raises(BadCapability, match="checksum"):
        await uncached.store.get(cap[:-2] + ("aa" if cap[-2:] != "aa" else "bb"))
    with pytest.raises(UnknownCapability, match="newer"):
        await uncached.store.get(cap.replace("motes:r1:", "motes:r7:"))
    with pytest.raises(BadCapability, match="verify capability cannot read"):
        await uncached.store.get(str(read.verify_cap()))
    with pytest.raises(NotStored, match="no node holds its manifest"):
        await uncached.store.get(str(FileReadCap(os.urandom(32), os.urandom(32))))
    with pytest.raises(BadMessage, match="do not open"):  # right data, forged key
        await uncached.store.get(str(FileReadCap(os.urandom(32), read.root)))
    assert await uncached.store.get(cap) == b"hello, store"


async def test_a_lost_node_is_repaired_to_the_full_share_count(
    ten: LocalMesh, uncached: Mesh
) -> None:
    data = os.urandom(3 * 2**20)
    cap = await uncached.store.put(data, policy=TEN)
    report = await uncached.store.check(cap)
    assert report.healthy == report.blobs == 4 and report.missing_shares == 0
    await ten.kill_node("node-4")

    last: list[object] = []

    async def restored() -> bool:
        r = await uncached.store.check(cap)
        last[:] = [r]
        return r.missing_shares == 0 and r.healthy == r.blobs and r.nodes == N - 1

    try:
        await eventually(restored, timeout=45, what="repair after a lost node")
    except AssertionError:
        logs = [n.home / "node.log" for n in ten.nodes if (n.home / "node.log").exists()]
        store_lines = [
            line for log in logs for line in log.read_text().splitlines() if "store" in line
        ]
        raise AssertionError(f"not repaired: {last}\n" + "\n".join(store_lines[-40:])) from None
    with shares_removed(ten, ("node-1", "node-2", "node-3", "node-5", "node-6", "node-7")):
        assert await uncached.store.get(cap) == data  # 3 of the 9 left suffice

    # On demand: shares taken from a live node come back with `check --repair`.
    away = share_dirs(ten)["node-8"]
    for f in away.rglob("*.*"):
        f.unlink()
    before = await uncached.store.check(cap)
    assert before.missing_shares > 0
    after = await uncached.store.check(cap, repair=True)
    # Whatever the background repairer did meanwhile, the check that returns has
    # regenerated the rest: nothing is missing once it answers.
    assert after.repaired_shares <= before.missing_shares
    assert (await uncached.store.check(cap)).missing_shares == 0


async def test_round_trip_dirs_dedup_and_a_second_read_from_the_cache(
    mesh: LocalMesh, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(2 * 2**20 + 5))
    (tree / "sub" / "deeper" / "empty").write_bytes(b"")
    cache = tmp_path / "cache"
    async with mesh.client(timing=FAST, cache=cache) as client:
        cap = await client.store.put(tree)
        assert await client.store.put(tree) == cap  # convergent: same content, same cap
        listing = {e.name: e.kind for e in await client.store.ls(cap)}
        assert listing == {"a.txt": "file", "sub": "dir"}
        out = tmp_path / "out"
        await client.store.get(cap, out)
        for f in tree.rglob("*"):
            twin = out / f.relative_to(tree)
            assert twin.is_dir() if f.is_dir() else twin.read_bytes() == f.read_bytes()
        blob = await client.store.put(b"x" * 3_000_000)
        assert await client.store.get(blob) == b"x" * 3_000_000
        # A streaming writer fed whole chunks, odd pieces and a bytearray stores the same.
        data = os.urandom(6 * 2**20 + 123)
        async with client.store.writer() as w:
            at = 0
            for size in (2**20, 1, 2**20 - 1, 2**20, 777_777, 2**21 + 5, len(data)):
                piece = data[at : at + size]
                await w.write(bytearray(piece) if size == 1 else piece)
                at += size
        assert w.cap == await client.store.put(data)
        assert await client.store.get(w.cap) == data
        # Every node gone: a second read on this machine is served by its cache alone.
        for node in mesh.nodes:
            await mesh.kill_node(node.name)
        assert await client.store.get(blob) == b"x" * 3_000_000
