"""Share files on one node's disk: written whole or not at all, fsynced, checked on write.

Layout under the store directory (``<node home>/store``)::

    shares/<root[:1]>/<root hex>.<num>   one share: u32 header length, header, share bytes
    partial/<root hex>.<num>             a share arriving in pieces, renamed when complete
    tags/<si hex>                        the blob roots that belong to a file (32 bytes each)

Blocking calls (file I/O and hashing); the service runs them in a thread. Everything a
client sends is checked before it is kept: the header must hash to the share's root, the
bytes to the header's share hash.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from ..errors import BadMessage
from ..wire.codec import decode
from ..wire.store import SharePut
from .format import ShareHeader, check_share

__all__ = ["DiskShares", "ShareStore"]

_LEN = struct.Struct("<I")
_MAX_HEADER = 64 * 1024


class ShareStore(Protocol):
    """What the store service needs of a node's share storage."""

    def put(
        self, root: bytes, num: int, header: bytes, offset: int, total: int, data: bytes
    ) -> bool:
        """Keep (part of) a share; True once the whole share is durable."""
        ...

    def read(self, root: bytes, num: int, offset: int, length: int) -> tuple[bytes, int, bytes]:
        """(header, total share bytes, the asked piece); KeyError if not held."""
        ...

    def put_many(self, puts: Iterable[SharePut]) -> list[str]:
        """Keep several whole shares; per share, "" once durable, else why not."""
        ...

    def held(self, roots: Iterable[bytes]) -> list[list[int]]: ...

    def tag(self, sis: Iterable[str], roots: Iterable[bytes]) -> None: ...

    def holdings(self) -> tuple[dict[str, int], int]:
        """(storage index -> bytes held, total share bytes)."""
        ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_header(root: bytes, raw: bytes) -> ShareHeader:
    if len(raw) > _MAX_HEADER:
        raise BadMessage("share header too large")
    header = decode(raw, ShareHeader)
    if header.root() != root:
        raise BadMessage("share header does not hash to the blob root")
    return header


class DiskShares:
    """A ``ShareStore`` in a directory, one file per share."""

    def __init__(self, root_dir: Path, *, writable: bool = True) -> None:
        """``writable=False``: a reader's view (a mote reading its own node's shares from
        disk), which creates nothing and leaves the service's partial uploads alone."""
        self.dir = root_dir
        self.shares = root_dir / "shares"
        self.partial = root_dir / "partial"
        self.tags = root_dir / "tags"
        if not writable:
            return
        for d in (self.shares, self.partial, self.tags):
            d.mkdir(parents=True, exist_ok=True)
        for stale in self.partial.iterdir():  # pieces of uploads cut off by a restart
            stale.unlink(missing_ok=True)

    def path(self, root: bytes, num: int) -> Path:
        hexroot = root.hex()
        return self.shares / hexroot[:2] / f"{hexroot}.{num}"

    # --- writing ---------------------------------------------------------------------

    def put(
        self, root: bytes, num: int, header: bytes, offset: int, total: int, data: bytes
    ) -> bool:
        done, dirty = self._put(root, num, header, offset, total, data)
        if dirty is not None:
            _fsync_dir(dirty)
        return done

    def put_many(self, puts: Iterable[SharePut]) -> list[str]:
        """Keep several whole shares; per share, "" once it is durable, else why not.
        Each folder a share went into is fsynced once, after all of them."""
        errors: list[str] = []
        dirty: set[Path] = set()
        for put in puts:
            try:
                if put.offset != 0 or len(put.data) != put.total:
                    raise BadMessage("a batch carries whole shares only")
                _, folder = self._put(put.root, put.num, put.header, 0, put.total, put.data)
            except (BadMessage, OSError) as exc:
                errors.append(str(exc) or type(exc).__name__)
                continue
            if folder is not None:
                dirty.add(folder)
            errors.append("")
        for folder in dirty:
            _fsync_dir(folder)
        return errors

    def _put(
        self, root: bytes, num: int, header: bytes, offset: int, total: int, data: bytes
    ) -> tuple[bool, Path | None]:
        """(whether the share is whole, the folder to fsync for it to be durable)."""
        head = parse_header(root, header)
        share_len = -(-head.length // head.k) if head.length else 1
        if not 0 <= num < head.n or total != share_len:
            raise BadMessage(f"share {num} of {total} bytes does not fit its header")
        if offset < 0 or offset + len(data) > total:
            raise BadMessage("share piece out of range")
        final = self.path(root, num)
        if final.exists():
            return True, None  # content-addressed: the same share again (a repeat upload)
        if offset == 0 and len(data) == total:
            if not check_share(head, num, data):
                raise BadMessage(f"share {num} does not match its hash")
            return True, self._write_whole(final, header, data)
        return self._put_piece(root, num, head, header, offset, total, data)

    def _write_whole(self, final: Path, header: bytes, data: bytes | memoryview) -> Path:
        """Write a share file, fsynced; the folder it is in still needs an fsync."""
        final.parent.mkdir(exist_ok=True)
        tmp = self.partial / f"{final.name}.{os.getpid()}.{id(data)}"
        with open(tmp, "wb") as f:
            f.write(_LEN.pack(len(header)))
            f.write(header)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final.parent

    def _put_piece(
        self,
        root: bytes,
        num: int,
        head: ShareHeader,
        header: bytes,
        offset: int,
        total: int,
        data: bytes,
    ) -> tuple[bool, Path | None]:
        part = self.partial / f"{root.hex()}.{num}"
        mode = "r+b" if part.exists() else "w+b"
        with open(part, mode) as f:
            f.truncate(total) if mode == "w+b" else None
            f.seek(offset)
            f.write(data)
        marks = part.with_suffix(part.suffix + ".got")
        with open(marks, "a") as m:
            m.write(f"{offset} {len(data)}\n")
        # Pieces may arrive twice (a retried request, the same blob in two uploads):
        # count each (offset, length) once; the same share's pieces are the same bytes.
        pieces = {tuple(map(int, line.split())) for line in marks.read_text().splitlines()}
        got = sum(length for _, length in pieces)
        if got < total:
            return False, None
        whole = part.read_bytes()
        marks.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
        if not check_share(head, num, whole):
            raise BadMessage(f"share {num} does not match its hash (pieces lost or forged)")
        return True, self._write_whole(self.path(root, num), header, whole)

    # --- reading ---------------------------------------------------------------------

    def read(self, root: bytes, num: int, offset: int, length: int) -> tuple[bytes, int, bytes]:
        path = self.path(root, num)
        try:
            with open(path, "rb") as f:
                (hlen,) = _LEN.unpack(f.read(_LEN.size))
                header = f.read(hlen)
                total = os.fstat(f.fileno()).st_size - _LEN.size - hlen
                f.seek(_LEN.size + hlen + offset)
                data = f.read(max(0, min(length, total - offset)))
        except FileNotFoundError:
            raise KeyError((root.hex(), num)) from None
        return header, total, data

    def quarantine(self, root: bytes, num: int) -> None:
        """Set a share that failed its hash aside (kept for a post-mortem, never served)."""
        bad = self.dir / "quarantine"
        bad.mkdir(exist_ok=True)
        path = self.path(root, num)
        if path.exists():
            os.replace(path, bad / path.name)

    def nums(self, root: bytes) -> list[int]:
        hexroot = root.hex()
        folder = self.shares / hexroot[:2]
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        prefix = hexroot + "."
        return sorted(int(name[len(prefix) :]) for name in names if name.startswith(prefix))

    def held(self, roots: Iterable[bytes]) -> list[list[int]]:
        return [self.nums(root) for root in roots]

    # --- what belongs to which file ----------------------------------------------------

    def tag(self, sis: Iterable[str], roots: Iterable[bytes]) -> None:
        blob = b"".join(roots)
        for si in sis:
            if len(si) != 32 or any(c not in "0123456789abcdef" for c in si):
                raise BadMessage(f"bad storage index {si!r}")
            with open(self.tags / si, "ab") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())

    def holdings(self) -> tuple[dict[str, int], int]:
        sizes: dict[bytes, int] = {}
        total = 0
        for folder in self.shares.iterdir() if self.shares.exists() else ():
            for entry in os.scandir(folder):
                size = entry.stat().st_size
                total += size
                root = bytes.fromhex(entry.name.split(".")[0])
                sizes[root] = sizes.get(root, 0) + size
        files: dict[str, int] = {}
        for tag in self.tags.iterdir():
            raw = tag.read_bytes()
            roots = {raw[i : i + 32] for i in range(0, len(raw) - 31, 32)}
            held = sum(sizes.get(r, 0) for r in roots)
            if held:
                files[tag.name] = held
        return files, total

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.dir).free
