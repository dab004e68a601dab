"""The store benchmark (``store_put_MiBps``, ``store_get_MiBps``): Tahoe-LAFS, the zfec
ceiling, and the place Motes' own side goes.

One file of random bytes (256 MiB in a full run), erasure-coded k=3 of n=10 over ten local
storage nodes, shares.happy 7:

- ``TahoeStore``: a Tahoe-LAFS 1.20 grid (introducer, 10 storage nodes, 1 client node) run
  by ``bench/drivers/tahoe_driver.py`` with Tahoe's own Python (``bench/.peers/tahoe``) in
  a loopback-only network namespace (``bench/netns.py``); put is ``PUT /uri`` on the
  client's web API with the file streamed, get is ``GET /uri/CAP`` streamed to a file.
  ``tahoe_store()`` runs ``reps`` put + get pairs and returns their medians.
- ``zfec_encode_MiBps()``: raw zfec, in this process: 1 MiB chunks, each split into k
  blocks, the n-k check blocks computed; input MiB/s. The ceiling Motes' put is held to.
- ``motes_store()``: Motes' side, a placeholder until the store exists.

``python -m bench.store [--tahoe-only | --zfec-only] [--size-mib N] [--reps N]`` writes
the random file into a temporary directory, measures, and prints the results as JSON.
Everything written (the file, each download, the grid) lives in temporary directories;
the driver's log is ``bench/.peers/tahoe/store.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from . import peers
from .netns import NamespacedDriver
from .stats import median

__all__ = [
    "HAPPY",
    "SIZE_MIB",
    "K",
    "N",
    "TahoeStore",
    "motes_store",
    "tahoe_store",
    "write_random",
    "zfec_encode_MiBps",
]

MiB = 1 << 20
SIZE_MIB = 256
K, N, HAPPY = 3, 10, 7
NODES = 10


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


async def tahoe_store(path: Path, reps: int, *, warmup: bool = False) -> dict[str, Any]:
    """``reps`` uploads of ``path`` to a fresh Tahoe-LAFS grid, each followed by its download.

    Every download is checked against the original (outside the timing). Returns the
    medians in MiB/s, the seconds of each operation and the grid's parameters. With
    ``warmup``, one unrecorded put + get comes first.
    """
    if reps < 1:
        raise ValueError("reps must be at least 1")
    size = path.stat().st_size
    digest = await asyncio.to_thread(sha256_of, path)
    out_dir = Path(tempfile.mkdtemp(prefix="mb-store-get-"))
    put_s: list[float] = []
    get_s: list[float] = []
    t0 = time.monotonic()
    try:
        async with TahoeStore() as tahoe:
            _say(
                f"tahoe {tahoe.info.get('version')}: grid of {tahoe.info.get('nodes')} storage"
                f" nodes up in {tahoe.info.get('startup_s', 0):.1f} s"
                f" (storage protocol: {tahoe.info.get('storage_protocol')})"
            )
            target = out_dir / "download"
            for rep in range(-1 if warmup else 0, reps):
                cap, p = await tahoe.put(path)
                g = await tahoe.get(cap, target)
                if await asyncio.to_thread(sha256_of, target) != digest:
                    raise RuntimeError(f"tahoe get of {cap} returned different bytes")
                target.unlink()
                label = "warm-up" if rep < 0 else f"{rep + 1}/{reps}"
                _say(
                    f"  tahoe {label}: put {p:.1f} s ({size / MiB / p:.1f} MiB/s),"
                    f" get {g:.1f} s ({size / MiB / g:.1f} MiB/s)"
                )
                if rep >= 0:
                    put_s.append(p)
                    get_s.append(g)
            info = tahoe.info
        strays = tahoe.strays
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return {
        "peer": "tahoe-lafs",
        "put_MiBps": size / MiB / median(put_s),
        "get_MiBps": size / MiB / median(get_s),
        "put_s": put_s,
        "get_s": get_s,
        "size_MiB": size / MiB,
        "reps": reps,
        "nodes": info["nodes"],
        "k": info["k"],
        "n": info["n"],
        "happy": info["happy"],
        "client_is_storage": info["client_is_storage"],
        "version": info["version"],
        "storage_protocol": info.get("storage_protocol"),
        "startup_s": info.get("startup_s"),
        "elapsed_s": time.monotonic() - t0,
        "strays": strays,
    }


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


# --- Motes ------------------------------------------------------------------------------


async def motes_store(path: Path, reps: int) -> dict[str, Any]:
    """PLACEHOLDER: Motes' put and get of ``path``, ``reps`` times, as ``tahoe_store``."""
    raise NotImplementedError("filled in by the store work")


# --- command line -----------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"size_MiB": args.size_mib, "k": K, "n": N, "happy": HAPPY}
    t0 = time.monotonic()
    if not args.tahoe_only:
        _say(f"zfec: encoding {args.size_mib} MiB ({K} of {N}) ...")
        out["zfec_encode_MiBps"] = await asyncio.to_thread(zfec_encode_MiBps, args.size_mib)
    if not args.zfec_only:
        with tempfile.TemporaryDirectory(prefix="mb-store-") as tmp:
            path = Path(tmp) / "data"
            await asyncio.to_thread(write_random, path, args.size_mib)
            out["tahoe"] = await tahoe_store(path, args.reps)
            if not args.tahoe_only:
                try:
                    out["motes"] = await motes_store(path, args.reps)
                except NotImplementedError as exc:
                    out["motes"] = f"not implemented: {exc}"
    out["elapsed_s"] = time.monotonic() - t0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store",
        description="Store put/get: Tahoe-LAFS (k=3 n=10, 10 local nodes) and the zfec ceiling.",
    )
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--tahoe-only", action="store_true", help="measure Tahoe-LAFS alone")
    only.add_argument("--zfec-only", action="store_true", help="measure raw zfec alone")
    parser.add_argument("--size-mib", type=int, default=SIZE_MIB, help="file size (MiB)")
    parser.add_argument("--reps", type=int, default=3, help="put + get pairs per contender")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(_run(args))
    except KeyboardInterrupt:
        _say("interrupted; every process the benchmark started has been stopped")
        raise SystemExit(130) from None
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
