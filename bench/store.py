"""The store benchmark (``store_put_MiBps``, ``store_get_MiBps``): Motes against Tahoe-LAFS,
and Motes' put against the zfec ceiling.

One file of random bytes (256 MiB in a full run), erasure-coded k=3 of n=10 over ten local
storage nodes, shares.happy 7, by each contender in turn (A B A B ...):

- ``MotesStore``: a Motes mesh of 10 nodes (``motes.testing.local_mesh``, the default
  production ``Timing``, embedded nats-server on 127.0.0.1) and a client connected with
  no cache (``motes.connect(url, cache=False)``); put is ``mesh.store.put(path,
  policy=Policy.parse("k=3,n=10,happy=7"))``, get is ``mesh.store.get(cap, path)``
  (streamed to the file, not fsynced, like Tahoe's get). The store dedups convergently,
  so before each put every node's ``store/shares`` directory is emptied (not timed), as
  the Tahoe driver does with its nodes' shares: every put writes all of its shares.
- ``TahoeStore``: a Tahoe-LAFS 1.20 grid (introducer, 10 storage nodes, 1 client node) run
  by ``bench/drivers/tahoe_driver.py`` with Tahoe's own Python (``bench/.peers/tahoe``) in
  a loopback-only network namespace (``bench/netns.py``); put is ``PUT /uri`` on the
  client's web API with the file streamed, get is ``GET /uri/CAP`` streamed to a file.
- ``zfec_encode_MiBps()``: raw zfec, in this process: 1 MiB chunks, each split into k
  blocks, the n-k check blocks computed; input MiB/s. The ceiling Motes' put is held to.
- ``raw_get_MiBps()``: a get's own CPU work, in this process, one thread, on shares made
  beforehand: per 1 MiB chunk, blake3 of the k primary shares, zfec's decode of them,
  blake3 of the ciphertext, AES-256-GCM decryption; plaintext MiB/s. The ceiling Motes'
  get is held to (it also moves every share over the lattice and writes the file).

``interleaved()`` starts the contenders side by side (both grids up at once), runs one
unrecorded warm-up put + get of a small file each, then ``reps`` repetitions: Motes put +
get, Tahoe put + get, one zfec pass, one raw get pass, in turn; every download is checked
byte for byte against the original (not timed), every put against the shares it left on
the nodes.
A contender that fails is reported with its error and left out of later repetitions;
the others go on. ``run()`` is the runner's entry (``python -m bench --only store``).

``python -m bench.store [--motes-only | --tahoe-only | --zfec-only | --no-tahoe]
[--size-mib N] [--reps N] [--warmup-mib N]`` writes the random file into a temporary directory,
measures, and prints the results as JSON. Everything written (the file, each download,
the grids) lives in temporary directories; the Tahoe driver's log is
``bench/.peers/tahoe/store.log``, each Motes node's under its home in the temporary
directory (removed at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import motes
from motes.client import Mesh
from motes.config import Timing
from motes.node.localmesh import LocalMesh
from motes.store import Policy
from motes.testing import local_mesh

from . import peers
from .netns import NamespacedDriver
from .runner import RAW_GET, TAHOE, ZFEC, Result, Session, wanted_peers
from .stats import median

__all__ = [
    "HAPPY",
    "SIZE_MIB",
    "K",
    "MotesStore",
    "N",
    "TahoeStore",
    "interleaved",
    "motes_store",
    "raw_get_MiBps",
    "run",
    "tahoe_store",
    "write_random",
    "zfec_encode_MiBps",
]

MiB = 1 << 20
SIZE_MIB = 256
WARMUP_MIB = 8
K, N, HAPPY = 3, 10, 7
NODES = 10
CHUNK = MiB  # Motes' chunk size (the store's default); zfec's ceiling uses the same
OP_TIMEOUT_S = 1800.0  # one put or get; as the Tahoe driver's request timeout


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_random(path: Path, size_mib: int) -> None:
    """Write ``size_mib`` MiB of random bytes to ``path``."""
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MiB))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


# --- Tahoe-LAFS -------------------------------------------------------------------------


class TahoeStore:
    """A running Tahoe-LAFS grid, its driver in its own network namespace.

    ``async with TahoeStore() as tahoe:`` installs Tahoe (first time only), starts the
    grid and waits until its client sees every storage node; ``put()`` and ``get()`` are
    one timed operation each, so a caller can interleave them with Motes'.
    """

    def __init__(self) -> None:
        self.tmp = ""
        self.driver: NamespacedDriver | None = None
        self.info: dict[str, Any] = {}
        self.strays: list[str] = []

    async def __aenter__(self) -> TahoeStore:
        await asyncio.to_thread(peers.ensure, "tahoe", _say)
        self.tmp = tempfile.mkdtemp(prefix="mb-tahoe-")
        self.driver = NamespacedDriver("tahoe", "tahoe_driver.py", ["serve", self.tmp], "store.log")
        try:
            self.info = await self.driver.start(timeout=300)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.driver is not None:
                self.strays = await self.driver.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    async def put(self, path: Path) -> tuple[str, float]:
        """Upload ``path``; its cap and the seconds the upload took."""
        assert self.driver is not None
        out: dict[str, Any] = await self.driver.ask({"op": "put", "path": str(path)})
        want = path.stat().st_size * N / K
        if out["shares"] != N or not want <= out["share_bytes"] < want * 1.1:
            raise RuntimeError(
                f"tahoe put left {out['shares']} shares of {out['share_bytes']:,} bytes"
                f" (expected {N} shares of about {want:,.0f} bytes in all)"
            )
        return str(out["cap"]), float(out["seconds"])

    async def get(self, cap: str, path: Path) -> float:
        """Download ``cap`` into ``path``; the seconds it took."""
        assert self.driver is not None
        out: dict[str, Any] = await self.driver.ask({"op": "get", "cap": cap, "path": str(path)})
        return float(out["seconds"])


# --- the zfec ceiling -------------------------------------------------------------------


def zfec_encode_MiBps(
    size_mib: int = SIZE_MIB, k: int = K, n: int = N, chunk: int = MiB, runs: int = 5
) -> float:
    """Raw zfec encode speed: input MiB/s, median of ``runs`` passes over ``size_mib`` MiB.

    Each ``chunk`` of random data is split into ``k`` equal blocks (the last padded with
    zeros) and the ``n - k`` check blocks are computed, as a store's put must do.
    """
    import zfec  # type: ignore[import-untyped]  # no stubs; a dependency of the store only

    block = -(-chunk // k)
    encoder = zfec.Encoder(k, n)
    checks = tuple(range(k, n))
    # The data is generated once and not timed; each pass encodes all of it.
    data = bytearray(os.urandom(size_mib * MiB))
    chunks = []
    for off in range(0, len(data), chunk):
        piece = bytes(data[off : off + chunk]).ljust(block * k, b"\0")
        chunks.append(tuple(piece[i * block : (i + 1) * block] for i in range(k)))
    del data
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for blocks in chunks:
            encoder.encode(blocks, checks)
        rates.append(size_mib / (time.perf_counter() - t0))
    return median(rates)


def raw_get_MiBps(
    size_mib: int = SIZE_MIB, k: int = K, n: int = N, chunk: int = MiB, runs: int = 5
) -> float:
    """A get's CPU work done raw: plaintext MiB/s, median of ``runs`` passes.

    Made beforehand (not timed): each ``chunk`` of random data encrypted (AES-256-GCM,
    its own key), cut into ``k`` primary shares (the last padded) with their blake3
    hashes, and the ciphertext's hash. Timed, per chunk: hash each primary share and
    compare, zfec-decode them, hash the ciphertext and compare, decrypt.
    """
    import blake3
    import zfec  # type: ignore[import-untyped]  # no stubs
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = bytes(12)
    decoder = zfec.Decoder(k, n)
    nums = list(range(k))
    prepared = []
    for _ in range(size_mib * MiB // chunk):
        key = os.urandom(32)
        sealed = AESGCM(key).encrypt(nonce, os.urandom(chunk), None)
        size = -(-len(sealed) // k)
        padded = sealed.ljust(size * k, b"\0")
        shares = [padded[i * size : (i + 1) * size] for i in nums]
        hashes = [blake3.blake3(sh).digest() for sh in shares]
        prepared.append((key, shares, hashes, len(sealed), blake3.blake3(sealed).digest()))
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for key, shares, hashes, length, blob_hash in prepared:
            if [blake3.blake3(sh).digest() for sh in shares] != hashes:
                raise RuntimeError("a share does not match its hash")
            blob = b"".join(decoder.decode(shares, nums))[:length]
            if blake3.blake3(blob).digest() != blob_hash:
                raise RuntimeError("the ciphertext does not match its hash")
            AESGCM(key).decrypt(nonce, blob, None)
        rates.append(len(prepared) * chunk / MiB / (time.perf_counter() - t0))
    return median(rates)


# --- Motes ------------------------------------------------------------------------------


class MotesStore:
    """A running 10-node Motes mesh and a client with no cache.

    ``async with MotesStore() as store:`` starts the mesh (default timing) in a temporary
    directory and connects; ``put()`` and ``get()`` are one timed operation each, so a
    caller can interleave them with Tahoe's.
    """

    def __init__(self, nodes: int = NODES, k: int = K, n: int = N, happy: int = HAPPY) -> None:
        self.nodes, self.k, self.n, self.happy = nodes, k, n, happy
        self.policy = Policy.parse(f"k={k},n={n},happy={happy}")
        self.tmp = ""
        self.mesh: LocalMesh | None = None
        self.client: Mesh | None = None
        self.info: dict[str, Any] = {}
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> MotesStore:
        self.tmp = tempfile.mkdtemp(prefix="mb-motes-store-")
        t0 = time.perf_counter()
        try:
            # Production timing (not the tests' FAST one), as a real node runs.
            self.mesh = await self._stack.enter_async_context(
                local_mesh(Path(self.tmp), nodes=self.nodes, timing=Timing())
            )
            self.client = await self._stack.enter_async_context(self.mesh.client(cache=False))
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self.info = {
            "version": motes.__version__,
            "nodes": self.nodes,
            "k": self.k,
            "n": self.n,
            "happy": self.happy,
            "chunk": CHUNK,
            "client_is_storage": False,
            "startup_s": time.perf_counter() - t0,
        }
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._stack.aclose()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _share_dirs(self) -> list[Path]:
        assert self.mesh is not None
        return [node.home / "store" / "shares" for node in self.mesh.nodes]

    def clear(self) -> None:
        """Empty every node's share directory (convergent dedup would store nothing new)."""
        for shares in self._share_dirs():
            if shares.is_dir():
                for entry in shares.iterdir():
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()

    def held(self) -> tuple[int, int, int]:
        """(share files, their bytes, nodes holding at least one) across the mesh."""
        files = size = holders = 0
        for shares in self._share_dirs():
            here = [f for f in shares.rglob("*") if f.is_file()]
            files += len(here)
            size += sum(f.stat().st_size for f in here)
            holders += bool(here)
        return files, size, holders

    async def put(self, path: Path) -> tuple[str, float]:
        """Upload ``path`` (after emptying the nodes' shares); its cap and the seconds."""
        assert self.client is not None
        await asyncio.to_thread(self.clear)
        size = path.stat().st_size
        t0 = time.perf_counter()
        async with asyncio.timeout(OP_TIMEOUT_S):
            cap = await self.client.store.put(path, policy=self.policy)
        seconds = time.perf_counter() - t0
        files, share_bytes, holders = await asyncio.to_thread(self.held)
        blobs = -(-size // CHUNK) + 1  # the chunks and the manifest
        want = size * self.n / self.k
        if files != blobs * self.n or not want <= share_bytes < want * 1.1 + blobs * 4096:
            raise RuntimeError(
                f"motes put left {files} shares of {share_bytes:,} bytes (expected"
                f" {blobs * self.n} shares of about {want:,.0f} bytes in all)"
            )
        if holders < self.happy:
            raise RuntimeError(f"motes put spread its shares over {holders} nodes only")
        return cap, seconds

    async def get(self, cap: str, path: Path) -> float:
        """Download ``cap`` into ``path``; the seconds it took."""
        assert self.client is not None
        t0 = time.perf_counter()
        async with asyncio.timeout(OP_TIMEOUT_S):
            await self.client.store.get(cap, path)
        return time.perf_counter() - t0


# --- side by side -----------------------------------------------------------------------


@dataclass
class _Side:
    """One contender's state in an interleaved run."""

    key: str  # "motes" / "tahoe"
    name: str  # as in the results' peer column
    store: MotesStore | TahoeStore | None = None
    put_s: list[float] = field(default_factory=list)
    get_s: list[float] = field(default_factory=list)
    error: str | None = None

    def failed(self, stage: str, exc: BaseException) -> None:
        self.error = f"{stage}: {type(exc).__name__}: {exc}"
        _say(f"  {self.name} FAILED at {stage}; left out from now on: {exc}")
        _say("".join(traceback.format_exception(exc)).rstrip())

    def summary(self, size: int, reps: int) -> dict[str, Any]:
        info = dict(self.store.info) if self.store is not None else {}
        out: dict[str, Any] = {
            "peer": self.name,
            "put_MiBps": size / MiB / median(self.put_s) if self.put_s else None,
            "get_MiBps": size / MiB / median(self.get_s) if self.get_s else None,
            "put_s": self.put_s,
            "get_s": self.get_s,
            "size_MiB": size / MiB,
            "reps": reps,
            **info,
            "error": self.error,
        }
        if isinstance(self.store, TahoeStore):
            out["strays"] = self.store.strays
        return out


@dataclass
class _Ceiling:
    """A one-process ceiling (zfec encode, raw get): one pass per repetition."""

    name: str
    measure_fn: Any
    rates: list[float] = field(default_factory=list)
    error: str | None = None

    async def measure(self, size_mib: int) -> list[str]:
        """One pass; what to show of it (nothing once it has failed)."""
        if self.error is not None:
            return []
        try:
            rate = await asyncio.to_thread(self.measure_fn, size_mib, runs=1)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            _say(f"  {self.name} FAILED: {self.error}")
            return []
        self.rates.append(rate)
        return [f"{self.name} {rate:.1f}"]

    def summary(self, key: str) -> dict[str, Any]:
        return {
            "peer": self.name,
            key: median(self.rates) if self.rates else None,
            "samples": self.rates,
            "error": self.error,
        }


async def _enter(stack: contextlib.AsyncExitStack, side: _Side) -> None:
    store: MotesStore | TahoeStore = MotesStore() if side.key == "motes" else TahoeStore()
    try:
        side.store = await stack.enter_async_context(store)
    except Exception as exc:  # a peer that cannot start gives a row saying so
        side.failed("start", exc)
        return
    info = store.info
    _say(
        f"{side.name} {info.get('version')}: {info.get('nodes')} storage nodes up in"
        f" {info.get('startup_s', 0):.1f} s"
        + (f" (storage protocol: {info['storage_protocol']})" if "storage_protocol" in info else "")
    )


async def _round(side: _Side, path: Path, digest: str, target: Path) -> tuple[float, float]:
    """One put + get by ``side``; the download checked (not timed) and removed."""
    assert side.store is not None
    cap, put_s = await side.store.put(path)
    get_s = await side.store.get(cap, target)
    same = await asyncio.to_thread(sha256_of, target) == digest
    target.unlink()
    if not same:
        raise RuntimeError(f"{side.name} get of {cap[:40]}... returned different bytes")
    return put_s, get_s


async def interleaved(
    path: Path,
    reps: int,
    *,
    motes: bool = True,
    tahoe: bool = True,
    zfec: bool = True,
    raw: bool = True,
    warmup_mib: int = WARMUP_MIB,
) -> dict[str, Any]:
    """Put + get ``path`` ``reps`` times with each contender, in turn; medians in MiB/s.

    Returns ``{"motes": {...}, "tahoe": {...}, "zfec": {...}, "raw_get": {...}}`` (the
    ones asked for) and
    the run's parameters. A contender that fails has ``"error"`` set and the samples it
    had; it never stops the others. With ``warmup_mib``, each store first puts and gets a
    file of that size, unrecorded.
    """
    if reps < 1:
        raise ValueError("reps must be at least 1")
    size = path.stat().st_size
    size_mib = -(-size // MiB)
    digest = await asyncio.to_thread(sha256_of, path)
    sides = [
        _Side(k, name) for k, name, on in (("motes", "motes", motes), ("tahoe", TAHOE, tahoe)) if on
    ]
    ceilings = {
        name: _Ceiling(name, fn)
        for name, fn, on in ((ZFEC, zfec_encode_MiBps, zfec), (RAW_GET, raw_get_MiBps, raw))
        if on
    }
    work = Path(tempfile.mkdtemp(prefix="mb-store-get-"))
    target = work / "download"
    t0 = time.monotonic()
    try:
        async with contextlib.AsyncExitStack() as stack:
            await asyncio.gather(*(_enter(stack, side) for side in sides))
            if warmup_mib > 0 and any(s.error is None for s in sides):
                small = work / "warm-up"
                await asyncio.to_thread(write_random, small, warmup_mib)
                small_digest = await asyncio.to_thread(sha256_of, small)
                for side in sides:
                    if side.error is None:
                        try:
                            p, g = await _round(side, small, small_digest, target)
                        except Exception as exc:
                            side.failed("warm-up", exc)
                            continue
                        done = f"put {p:.2f} s, get {g:.2f} s"
                        _say(f"  {side.name} warm-up ({warmup_mib} MiB): {done}")
                small.unlink()
            for rep in range(1, reps + 1):
                shown = []
                for side in sides:
                    if side.error is not None:
                        continue
                    try:
                        p, g = await _round(side, path, digest, target)
                    except Exception as exc:
                        side.failed(f"repetition {rep}", exc)
                        continue
                    side.put_s.append(p)
                    side.get_s.append(g)
                    shown.append(f"{side.name} put {size / MiB / p:.1f} get {size / MiB / g:.1f}")
                for ceiling in ceilings.values():
                    shown.extend(await ceiling.measure(size_mib))
                _say(f"  store {rep}/{reps} (MiB/s): {', '.join(shown) or 'nothing left to run'}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {
        "size_MiB": size / MiB,
        "reps": reps,
        "nodes": NODES,
        "k": K,
        "n": N,
        "happy": HAPPY,
        "warmup_MiB": warmup_mib,
        "order": [s.name for s in sides] + list(ceilings),
    }
    for side in sides:
        out[side.key] = side.summary(size, reps)
    if ZFEC in ceilings:
        out["zfec"] = {**ceilings[ZFEC].summary("encode_MiBps"), "chunk": CHUNK}
    if RAW_GET in ceilings:
        out["raw_get"] = {**ceilings[RAW_GET].summary("get_MiBps"), "chunk": CHUNK}
    out["elapsed_s"] = time.monotonic() - t0
    return out


def _one(result: dict[str, Any], key: str) -> dict[str, Any]:
    side: dict[str, Any] = result[key]
    if side["error"]:
        raise RuntimeError(f"{side['peer']}: {side['error']}")
    return side


async def motes_store(path: Path, reps: int, *, warmup_mib: int = WARMUP_MIB) -> dict[str, Any]:
    """Motes alone: ``reps`` put + get pairs of ``path`` on a 10-node mesh; medians."""
    return _one(
        await interleaved(path, reps, tahoe=False, zfec=False, warmup_mib=warmup_mib), "motes"
    )


async def tahoe_store(path: Path, reps: int, *, warmup_mib: int = WARMUP_MIB) -> dict[str, Any]:
    """Tahoe-LAFS alone: ``reps`` put + get pairs of ``path`` on a fresh grid; medians."""
    return _one(
        await interleaved(path, reps, motes=False, zfec=False, warmup_mib=warmup_mib), "tahoe"
    )


# --- the runner's entry -----------------------------------------------------------------


def _short(text: str | None) -> str:
    first = (text or "").strip().splitlines()[0] if text and text.strip() else "unknown error"
    return first if len(first) <= 90 else first[:87] + "..."


def rows(result: dict[str, Any], reps: int) -> list[Result]:
    """The results' rows: put and get against Tahoe-LAFS, put against the zfec ceiling,
    get against the raw get's."""
    m = result.get("motes", {})
    motes_rates = {"put": m.get("put_MiBps"), "get": m.get("get_MiBps")}
    n = len(m.get("put_s", []))
    motes_note = f"motes failed: {_short(m.get('error'))}" if m.get("error") else ""
    out: list[Result] = []
    for op in ("put", "get"):
        metric = f"store_{op}_MiBps"
        mine = motes_rates[op]
        peers_here: list[tuple[str, float | None, str | None]] = []
        if "tahoe" in result:
            t = result["tahoe"]
            peers_here.append((TAHOE, t.get(f"{op}_MiBps"), t.get("error")))
        if op == "put" and "zfec" in result:
            z = result["zfec"]
            peers_here.append((ZFEC, z.get("encode_MiBps"), z.get("error")))
        if op == "get" and "raw_get" in result:
            r = result["raw_get"]
            peers_here.append((RAW_GET, r.get("get_MiBps"), r.get("error")))
        if not peers_here:
            peers_here.append(("", None, None))
        for name, value, error in peers_here:
            notes = [f"{name} failed: {_short(error)}"] if error else []
            if motes_note:
                notes.append(motes_note)
            ratio = round(mine / value, 4) if mine and value else None
            out.append(
                Result(
                    metric,
                    "MiB/s",
                    None if mine is None else round(mine, 3),
                    None if value is None else round(value, 3),
                    name or None,
                    ratio,
                    n,
                    "; ".join(notes),
                )
            )
    return out


async def run(session: Session) -> list[Result]:
    """``make bench``: the file at the run's size, Motes, Tahoe-LAFS and zfec in turn."""
    sizes = session.sizes
    wanted = wanted_peers(sizes, "store")
    with tempfile.TemporaryDirectory(prefix="mb-store-") as tmp:
        path = Path(tmp) / "data"
        await asyncio.to_thread(write_random, path, sizes.store_mib)
        _say(
            f"store: {sizes.store_mib} MiB, k={K} n={N} happy={HAPPY} over {NODES} nodes,"
            f" {sizes.store_reps} repetitions; peers: {', '.join(wanted) or 'none'}"
        )
        result = await interleaved(
            path,
            sizes.store_reps,
            tahoe=TAHOE in wanted,
            zfec=ZFEC in wanted,
            raw=RAW_GET in wanted,
            warmup_mib=sizes.store_warmup_mib,
        )
    session.details["store"] = result
    return rows(result, sizes.store_reps)


# --- command line -----------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    if args.zfec_only:
        _say(f"zfec: encoding {args.size_mib} MiB ({K} of {N}) ...")
        rate = await asyncio.to_thread(zfec_encode_MiBps, args.size_mib)
        return {"size_MiB": args.size_mib, "k": K, "n": N, "zfec_encode_MiBps": rate}
    with tempfile.TemporaryDirectory(prefix="mb-store-") as tmp:
        path = Path(tmp) / "data"
        await asyncio.to_thread(write_random, path, args.size_mib)
        out = await interleaved(
            path,
            args.reps,
            motes=not args.tahoe_only,
            tahoe=not (args.motes_only or args.no_tahoe),
            zfec=not (args.tahoe_only or args.motes_only),
            raw=not (args.tahoe_only or args.motes_only),
            warmup_mib=args.warmup_mib,
        )
    raw_get = out.get("raw_get", {}).get("get_MiBps")
    if out.get("motes", {}).get("get_MiBps") and raw_get:
        out["get_ratio_vs_raw_get"] = out["motes"]["get_MiBps"] / raw_get
    for key, other in (("motes", "tahoe"), ("motes", "zfec")):
        mine, theirs = out.get(key, {}), out.get(other, {})
        if other == "zfec":
            value = theirs.get("encode_MiBps")
        else:
            value = theirs.get("put_MiBps")
        if mine.get("put_MiBps") and value:
            out[f"put_ratio_vs_{other}"] = mine["put_MiBps"] / value
        if other == "tahoe" and mine.get("get_MiBps") and theirs.get("get_MiBps"):
            out["get_ratio_vs_tahoe"] = mine["get_MiBps"] / theirs["get_MiBps"]
    out["elapsed_s"] = time.monotonic() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store",
        description="Store put/get, k=3 n=10 over 10 local nodes: Motes and Tahoe-LAFS in"
        " turn, and the zfec ceiling.",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--motes-only", action="store_true", help="measure Motes alone")
    only.add_argument("--tahoe-only", action="store_true", help="measure Tahoe-LAFS alone")
    only.add_argument("--zfec-only", action="store_true", help="measure raw zfec alone")
    only.add_argument(
        "--no-tahoe", action="store_true", help="Motes and the raw ceilings, no Tahoe grid"
    )
    parser.add_argument("--size-mib", type=int, default=SIZE_MIB, help="file size (MiB)")
    parser.add_argument("--reps", type=int, default=3, help="put + get pairs per contender")
    parser.add_argument(
        "--warmup-mib", type=int, default=WARMUP_MIB, help="unrecorded warm-up file (0: none)"
    )
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(_run(args))
    except KeyboardInterrupt:
        _say("interrupted; every process the benchmark started has been stopped")
        raise SystemExit(130) from None
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
