"""A bounded, least-recently-used cache of blobs on the reading node's disk.

Blobs are kept as they travel (encrypted, checked against their root on the way in), so
the cache holds nothing a reader without the capability could use, and every process on
the node (the CLI, motes in workers) shares it. The node's store service counts it in the
node's holdings: data a node has cached is data a mote there reads for free.

Layout::

    blobs/<root hex>     a blob's bytes (its hash is in the root's header, checked on read)
    heads/<root hex>     the blob's ShareHeader (to re-check the blob when it is read)
    tags/<si hex>        roots that belong to a file, for the holdings report

Recency is the file's mtime, touched on every hit; the oldest go first when a write would
pass ``max_bytes``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..wire.codec import decode
from .format import ShareHeader, hash_blob

__all__ = ["BlobCache"]

DEFAULT_MAX_BYTES = 2 << 30


class BlobCache:
    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.blobs = directory / "blobs"
        self.heads = directory / "heads"
        self.tags = directory / "tags"
        for d in (self.blobs, self.heads, self.tags):
            d.mkdir(parents=True, exist_ok=True)
        self._size: int | None = None

    def get(self, root: bytes) -> tuple[ShareHeader, bytes] | None:
        """The blob and its header, checked; None on a miss (or a damaged entry, dropped)."""
        name = root.hex()
        try:
            head_raw = (self.heads / name).read_bytes()
            data = (self.blobs / name).read_bytes()
        except FileNotFoundError:
            return None
        try:
            header = decode(head_raw, ShareHeader)
        except ValueError:
            header = None
        if header is None or header.root() != root or hash_blob(data) != header.blob_hash:
            self.drop(root)
            return None
        os.utime(self.blobs / name)
        return header, data

    def has(self, root: bytes) -> bool:
        return (self.blobs / root.hex()).exists()

    def put(self, root: bytes, header: bytes, data: bytes, sis: Iterable[str] = ()) -> None:
        if len(data) > self.max_bytes:
            return
        self._evict(len(data))
        name = root.hex()
        for folder, content in ((self.heads, header), (self.blobs, data)):
            tmp = folder / f".{name}.{os.getpid()}"
            tmp.write_bytes(content)
            os.replace(tmp, folder / name)
        self._size = (self._size or 0) + len(data)
        for si in sis:
            with open(self.tags / si, "ab") as f:
                f.write(root)

    def drop(self, root: bytes) -> None:
        for folder in (self.blobs, self.heads):
            (folder / root.hex()).unlink(missing_ok=True)
        self._size = None

    def size(self) -> int:
        if self._size is None:
            self._size = sum(e.stat().st_size for e in os.scandir(self.blobs) if e.is_file())
        return self._size

    def _evict(self, incoming: int) -> None:
        if self.size() + incoming <= self.max_bytes:
            return
        entries = sorted(
            (e for e in os.scandir(self.blobs) if e.is_file() and not e.name.startswith(".")),
            key=lambda e: e.stat().st_mtime,
        )
        size = sum(e.stat().st_size for e in entries)
        for entry in entries:
            if size + incoming <= self.max_bytes:
                break
            size -= entry.stat().st_size
            self.drop(bytes.fromhex(entry.name))
        self._size = size

    def holdings(self) -> tuple[dict[str, int], int]:
        """(storage index -> cached bytes, total cached bytes)."""
        sizes = {
            e.name: e.stat().st_size
            for e in os.scandir(self.blobs)
            if e.is_file() and not e.name.startswith(".")
        }
        files: dict[str, int] = {}
        for tag in self.tags.iterdir():
            raw = tag.read_bytes()
            roots = {raw[i : i + 32].hex() for i in range(0, len(raw) - 31, 32)}
            held = sum(sizes.get(r, 0) for r in roots)
            if held:
                files[tag.name] = held
        return files, sum(sizes.values())
