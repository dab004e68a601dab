"""The store as a user sees it: ``mesh.store.put``, ``get``, ``ls``, ``check``, datasets.

Bytes, files and directories go in and come back out by capability. Large data streams:
``open`` yields a file chunk by chunk, ``writer`` takes one piece at a time, and memory
stays bounded by the transfer window whatever the size.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._aio import owned_tasks
from ..errors import (
    BadCapability,
    BadMessage,
    Conflict,
    IntegrityError,
    NoResponders,
    NotStored,
    RequestError,
)
from ..identity import open_signed, seal
from ..wire import resources, subjects
from ..wire.bus import Bus
from ..wire.codec import decode, encode, raise_for
from ..wire.messages import Err, Ok
from ..wire.store import DatasetRecord, FileRecord, Holdings, RepairReport, RepairRequest
from ._net import StoreNet
from .cache import BlobCache
from .caps import (
    Cap,
    DatasetReadCap,
    DatasetWriteCap,
    FileReadCap,
    FileVerifyCap,
    parse_cap,
)
from .format import Entry, Params, decode_entries, encode_entries, fit_params
from .placement import allowed
from .shares import DiskShares
from .transfer import Download, Progress, Upload

__all__ = ["DATASET_CONTEXT", "Policy", "StoreClient", "Usage", "Writer"]

DATASET_CONTEXT = "ds1"
"""What a dataset record's signature is made for (``identity.signed``)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How data is stored: erasure parameters (None: fitted to the mesh) and the node
    labels a share holder must have (``motes dataset create --policy``)."""

    params: Params | None = None
    labels: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Policy:
        """``k=3,n=10,happy=7,chunk=1048576,label.zone=home`` (every part optional)."""
        numbers: dict[str, int] = {}
        labels: list[tuple[str, str]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise RequestError(f"policy part {part!r} is not key=value")
            if key.startswith("label."):
                labels.append((key[6:], value))
            elif key in ("k", "n", "happy", "chunk"):
                try:
                    numbers[key] = int(value)
                except ValueError:
                    raise RequestError(f"policy {key}={value!r} is not a number") from None
            else:
                raise RequestError(f"unknown policy key {key!r} (k, n, happy, chunk, label.X)")
        return cls(_params(**numbers) if numbers else None, tuple(labels))


def _params(k: int = 3, n: int = 10, happy: int | None = None, chunk: int = 1 << 20) -> Params:
    try:
        return Params(k=k, n=n, happy=min(n, 7) if happy is None else happy, chunk=chunk)
    except ValueError as exc:
        raise RequestError(f"bad store parameters: {exc}") from None


@dataclass(frozen=True, slots=True)
class Usage:
    """``motes du``: what each node stores and caches, and what the mesh has filed."""

    nodes: list[Holdings]
    files: int
    logical_bytes: int


class StoreClient:
    """``mesh.store``. Capabilities go in and out as strings (``motes:r1:...``)."""

    def __init__(
        self,
        bus: Bus,
        *,
        scatter_s: float,
        request_s: float = 10.0,
        cache_dir: Path | None,
        node: tuple[str, Path] | None = None,
        convergence: Path | None = None,
    ) -> None:
        """``node``: (id, home) of the node this client runs on, if any (a mote's worker):
        its own shares are then read from its disk."""
        self.bus = bus
        local = (node[0], DiskShares(node[1] / "store", writable=False)) if node else None
        self.net = StoreNet(bus, scatter_s=scatter_s, request_s=request_s, local=local)
        self.cache = BlobCache(cache_dir) if cache_dir is not None else None
        self._secret: bytes | None = None
        self._secret_file = convergence

    # --- writing ---------------------------------------------------------------------

    async def put(
        self,
        source: bytes | str | os.PathLike[str],
        *,
        policy: Policy | None = None,
        progress: Progress | None = None,
        _extra_sis: tuple[str, ...] = (),
    ) -> str:
        """Store bytes, a file or a directory (recursively); return its read capability."""
        if isinstance(source, bytes | bytearray | memoryview):
            async with self.writer(policy=policy, progress=progress) as w:
                await w.write(bytes(source))
            return w.cap
        path = Path(source)
        if path.is_dir():
            return await self._put_dir(path, policy, progress, _extra_sis)
        if not path.is_file():
            raise RequestError(f"{path}: no such file or directory")
        return await self._put_file(path, policy, progress, _extra_sis)

    async def _put_file(
        self, path: Path, policy: Policy | None, progress: Progress | None, sis: tuple[str, ...]
    ) -> str:
        async with self.writer(policy=policy, progress=progress, _extra_sis=sis) as w:
            with open(path, "rb") as f:
                while piece := await asyncio.to_thread(f.read, w.chunk_size):
                    await w.write(piece)
        return w.cap

    async def _put_dir(
        self, path: Path, policy: Policy | None, progress: Progress | None, sis: tuple[str, ...]
    ) -> str:
        entries: list[Entry] = []
        for child in sorted(path.iterdir()):
            if child.is_symlink():
                continue  # links may point outside what the user asked to store
            if child.is_dir():
                cap = await self._put_dir(child, policy, progress, sis)
                entries.append(Entry(child.name, cap, _tree_size(child), "dir", 0o755))
            elif child.is_file():
                cap = await self._put_file(child, policy, progress, sis)
                mode = stat.S_IMODE(child.stat().st_mode)
                entries.append(Entry(child.name, cap, child.stat().st_size, "file", mode))
        return await self._put_entries(entries, policy, sis)

    async def _put_entries(
        self, entries: list[Entry], policy: Policy | None, sis: tuple[str, ...] = ()
    ) -> str:
        async with self.writer(policy=policy, kind="dir", _extra_sis=sis) as w:
            await w.write(encode_entries(entries))
        return w.cap

    @asynccontextmanager
    async def writer(
        self,
        *,
        policy: Policy | None = None,
        kind: str = "file",
        progress: Progress | None = None,
        _extra_sis: tuple[str, ...] = (),
    ) -> AsyncIterator[Writer]:
        """A streaming writer: ``async with store.writer() as w: await w.write(b)``;
        ``w.cap`` is the read capability once the block ends."""
        async with owned_tasks() as tasks:
            upload = await self._upload(policy, kind, progress, _extra_sis)
            upload.tasks = tasks
            w = Writer(upload)
            try:
                yield w
                await w.close()
            except BaseException:
                upload.abort()
                raise

    async def _upload(
        self, policy: Policy | None, kind: str, progress: Progress | None, sis: tuple[str, ...]
    ) -> Upload:
        policy = policy or Policy()
        await self.net.locate([])  # who is there now, with labels
        want = dict(policy.labels)
        nodes = allowed(self.net.nodes.labels, want)
        params = fit_params(len(nodes), policy.params)
        return Upload(
            self.net,
            await self.secret(),
            params,
            nodes,
            kind=kind,
            extra_sis=sis,
            labels=want,
            progress=progress,
        )

    async def secret(self) -> bytes:
        """The convergence secret this client's data is keyed with: its own (a person's,
        an app's) in an authenticated mesh; else the mesh's, made by the first writer."""
        if self._secret is None and self._secret_file is not None:
            secret = self._secret_file.read_bytes()
            if len(secret) != 32:
                raise IntegrityError(f"the convergence secret {self._secret_file}", "damaged")
            self._secret = secret
        if self._secret is None:
            kv = await self.bus.kv(resources.STORE)
            try:
                await kv.create(subjects.CONVERGENCE_KEY, secrets.token_bytes(32))
            except Conflict:
                pass  # another writer made it first: theirs is the mesh's
            entry = await kv.get(subjects.CONVERGENCE_KEY)
            if entry is None or not entry.value:
                raise IntegrityError(
                    "the mesh's convergence secret", "it vanished from the lattice"
                )
            self._secret = bytes(entry.value)
        return self._secret

    # --- reading ---------------------------------------------------------------------

    async def _file_cap(self, cap: str | Cap) -> FileReadCap:
        parsed = parse_cap(cap) if isinstance(cap, str) else cap
        if isinstance(parsed, FileReadCap):
            return parsed
        if isinstance(parsed, DatasetWriteCap):
            parsed = parsed.read_cap()
        if isinstance(parsed, DatasetReadCap):
            return (await self._dataset(parsed))[1]
        raise BadCapability(str(parsed), "a verify capability cannot read data (ask for r1)")

    async def open(
        self, cap: str, *, progress: Progress | None = None, start_chunk: int = 0
    ) -> AsyncIterator[bytes]:
        """A file's bytes, chunk by chunk (a streaming reader); chunks are the file's
        chunk size (1 MiB by default) but the last, so ``start_chunk`` seeks."""
        download = Download(self.net, await self._file_cap(cap), self.cache, progress=progress)
        manifest = await download.open()
        if manifest.kind != "file":
            raise RequestError(f"{str(cap)[:20]}... is a directory: use ls, or get it to a path")
        return download.chunks(start_chunk)

    async def size(self, cap: str) -> int:
        return (await Download(self.net, await self._file_cap(cap), self.cache).open()).size

    async def get(
        self,
        cap: str,
        path: str | os.PathLike[str] | None = None,
        *,
        progress: Progress | None = None,
    ) -> bytes | None:
        """A file's bytes; or, with ``path``, write the file (or directory tree) there."""
        fcap = await self._file_cap(cap)
        download = Download(self.net, fcap, self.cache, progress=progress)
        manifest = await download.open()
        if path is None:
            if manifest.kind != "file":
                raise RequestError("that capability is a directory: give a path to get it to")
            return b"".join([c async for c in download.chunks()])
        await self._get_to(download, Path(path))
        return None

    async def _get_to(self, download: Download, path: Path) -> None:
        manifest = await download.open()
        if manifest.kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            data = b"".join([c async for c in download.chunks()])
            for entry in decode_entries(data):
                if "/" in entry.name or entry.name in (".", "..", ""):
                    raise BadMessage(f"a directory entry named {entry.name!r}")
                child_cap = parse_cap(entry.cap)
                if not isinstance(child_cap, FileReadCap):
                    raise BadMessage(f"directory entry {entry.name!r} holds no file capability")
                child = Download(self.net, child_cap, self.cache, progress=download.progress)
                await self._get_to(child, path / entry.name)
            return
        tmp = path.with_name(f".{path.name}.part")
        with open(tmp, "wb") as f:
            async for chunk in download.chunks():
                await asyncio.to_thread(f.write, chunk)
        os.replace(tmp, path)

    async def ls(self, cap: str) -> list[Entry]:
        """A directory's entries; a file is listed as itself."""
        fcap = await self._file_cap(cap)
        download = Download(self.net, fcap, self.cache)
        manifest = await download.open()
        if manifest.kind == "file":
            return [Entry("", str(fcap), manifest.size, "file")]
        return decode_entries(b"".join([c async for c in download.chunks()]))

    # --- checking and repair -----------------------------------------------------------

    async def check(
        self, cap: str, *, repair: bool = False, timeout: float = 300.0
    ) -> RepairReport:
        """Count a file's shares in the mesh; with ``repair``, regenerate missing ones.

        Done by a store service inside the mesh, from the verify capability alone.
        """
        parsed = parse_cap(cap)
        verify = parsed.verify_cap()
        if not isinstance(verify, FileVerifyCap):
            verify = (await self._file_cap(parsed)).verify_cap()
        msg = encode(RepairRequest(verify=str(verify), repair=repair))
        try:
            reply = await self.bus.request(subjects.STORE_REPAIR, msg, timeout=timeout)
        except NoResponders:
            raise NotStored(str(verify), "no store service is running") from None
        try:
            return decode(reply.data, RepairReport)
        except BadMessage:
            raise_for(decode(reply.data, Ok | Err))  # type: ignore[arg-type]
            raise

    async def du(self) -> Usage:
        kv = await self.bus.kv(resources.FILES)
        files = [decode(e.value or b"", FileRecord) for e in (await kv.items()).values()]
        return Usage(
            nodes=sorted(await self.net.holdings(), key=lambda h: h.node),
            files=len(files),
            logical_bytes=sum(r.size for r in files),
        )

    # --- datasets --------------------------------------------------------------------

    async def dataset_create(self, name: str, policy: Policy | None = None) -> DatasetWriteCap:
        """A new, empty dataset; keep the returned write capability to add to it."""
        wcap = DatasetWriteCap.generate()
        policy = policy or Policy()
        root = await self._put_entries([], policy)
        await self._publish(wcap, name, 1, root, policy, revision=None)
        return wcap

    async def dataset_add(
        self,
        wcap: str | DatasetWriteCap,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Store ``path`` and add it to the dataset's root as ``name``; the new root cap."""
        parsed = parse_cap(wcap) if isinstance(wcap, str) else wcap
        if not isinstance(parsed, DatasetWriteCap):
            raise BadCapability(str(wcap), "adding to a dataset needs its write capability (w1)")
        rcap = parsed.read_cap()
        record, root, revision = await self._dataset_record(rcap)
        policy = Policy(
            Params(record.k, record.n, record.happy) if record.k else None,
            tuple(sorted(record.labels.items())),
        )
        sis = (rcap.si_hex,)
        child = await self.put(path, policy=policy, progress=progress, _extra_sis=sis)
        src = Path(path)
        entry_name = name or src.name
        kind = "dir" if src.is_dir() else "file"
        size = _tree_size(src) if kind == "dir" else src.stat().st_size
        entries = {e.name: e for e in await self.ls(str(root))}
        entries[entry_name] = Entry(entry_name, child, size, kind)
        new_root = await self._put_entries(list(entries.values()), policy, sis)
        await self._publish(parsed, record.name, record.seq + 1, new_root, policy, revision)
        return new_root

    async def _publish(
        self,
        wcap: DatasetWriteCap,
        name: str,
        seq: int,
        root: str,
        policy: Policy,
        revision: int | None,
    ) -> None:
        rcap = wcap.read_cap()
        root_cap = parse_cap(root)
        sealed = AESGCM(rcap.key).encrypt(seq.to_bytes(12, "little"), root.encode(), b"root")
        params = policy.params
        record = DatasetRecord(
            name=name,
            seq=seq,
            sealed_root=sealed,
            root_verify=str(root_cap.verify_cap()),
            k=params.k if params else 0,
            n=params.n if params else 0,
            happy=params.happy if params else 0,
            labels=dict(policy.labels),
        )
        signed = seal(wcap.signing_key(), record, context=DATASET_CONTEXT)
        kv = await self.bus.kv(resources.DATASETS)
        try:
            if revision is None:
                await kv.create(rcap.si_hex, signed)
            else:
                await kv.update(rcap.si_hex, signed, last=revision)
        except Conflict:
            raise RequestError(
                f"dataset {name!r} changed while adding to it; run the command again"
            ) from None

    async def _dataset(self, rcap: DatasetReadCap) -> tuple[DatasetRecord, FileReadCap]:
        record, root, _ = await self._dataset_record(rcap)
        return record, root

    async def _dataset_record(self, rcap: DatasetReadCap) -> tuple[DatasetRecord, FileReadCap, int]:
        kv = await self.bus.kv(resources.DATASETS)
        entry = await kv.get(rcap.si_hex)
        if entry is None or not entry.value:
            raise NotStored(str(rcap.verify_cap()), "no such dataset")
        what = f"the record of dataset {rcap.si_hex[:12]}"
        # Signed by the key the capability names, or it is not this dataset's record.
        record = open_signed(
            entry.value, DatasetRecord, context=DATASET_CONTEXT, signer=rcap.fingerprint, what=what
        )
        nonce = record.seq.to_bytes(12, "little")
        try:
            root = AESGCM(rcap.key).decrypt(nonce, record.sealed_root, b"root").decode()
        except Exception:
            raise IntegrityError(what, "its root does not open with this capability") from None
        parsed = parse_cap(root)
        if not isinstance(parsed, FileReadCap):
            raise IntegrityError(what, "its root is not a directory capability")
        return record, parsed, entry.revision


class Writer:
    """Streams bytes into the store; ``cap`` is set when the ``writer()`` block ends."""

    def __init__(self, upload: Upload) -> None:
        self._upload = upload
        self._buffer = bytearray()
        self.chunk_size = upload.params.chunk
        self.cap = ""
        self.size = 0

    async def write(self, data: bytes) -> None:
        """Queue ``data``; every full chunk goes to the upload. A whole chunk of ``bytes``
        (what ``put`` reads from a file) is passed on as it is, not copied."""
        if not self._buffer and isinstance(data, bytes) and len(data) == self.chunk_size:
            await self._upload.add(data)
            return
        view = memoryview(data)
        if self._buffer:  # fill the chunk begun by an earlier write first
            take = self.chunk_size - len(self._buffer)
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) < self.chunk_size:
                return
            await self._upload.add(bytes(self._buffer))
            self._buffer.clear()
        while len(view) >= self.chunk_size:
            await self._upload.add(bytes(view[: self.chunk_size]))
            view = view[self.chunk_size :]
        self._buffer += view

    async def close(self) -> None:
        if self._buffer:
            await self._upload.add(bytes(self._buffer))
            self._buffer.clear()
        cap, self.size = await self._upload.finish()
        self.cap = str(cap)


def _tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
