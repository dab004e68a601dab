"""The stored format: chunks, convergent encryption, erasure-coded blobs, manifests.

Pure functions over bytes (no I/O). ``docs/specs/store-format.md`` is the specification;
this module is its one implementation.

A file is cut into fixed-size chunks. Each chunk is encrypted with AES-256-GCM under a
*convergent* key (a keyed hash of the mesh's convergence secret and the chunk's content),
and the ciphertext is a **blob**: erasure-coded k-of-n with zfec into n shares. A blob is
named by its **root**: a tagged hash over (k, n, length, the ciphertext's hash, every
share's hash), so one 32-byte name checks every share on its own before decoding.
The chunk keys, sealed under the file's read key, and the chunks' roots make the
**manifest**, which is itself a blob; the read capability is (read key, manifest root).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import blake3
import msgspec
import zfec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import BadMessage, StoreUnhappy
from .caps import FileReadCap, tagged_hash

__all__ = [
    "BlobRoot",
    "Entry",
    "Manifest",
    "Params",
    "ShareHeader",
    "decode_blob",
    "encode_blob",
    "fit_params",
]

FORMAT_VERSION = 1
DEFAULT_CHUNK = 1 << 20
_NONCE = bytes(12)
"""Every key encrypts exactly one plaintext (keys are derived from it), so a fixed nonce."""
TAG_BYTES = 16


@dataclass(frozen=True, slots=True)
class Params:
    """Erasure coding: any ``k`` of ``n`` shares rebuild a blob; an upload must land on
    at least ``happy`` distinct nodes (Tahoe-LAFS's servers of happiness)."""

    k: int = 3
    n: int = 10
    happy: int = 7
    chunk: int = DEFAULT_CHUNK

    def __post_init__(self) -> None:
        if not (1 <= self.k <= self.n <= 256):
            raise ValueError(f"need 1 <= k <= n <= 256, got k={self.k} n={self.n}")
        if not (self.k <= self.happy <= self.n):
            raise ValueError(f"need k <= happy <= n, got happy={self.happy}")
        if not (4096 <= self.chunk <= 16 << 20):
            raise ValueError(f"chunk size {self.chunk} is outside 4 KiB .. 16 MiB")


def fit_params(nodes: int, asked: Params | None = None) -> Params:
    """The parameters for ``nodes`` storage nodes.

    Asked-for parameters are kept as they are, and an upload that cannot reach their
    happiness is refused. The default (3-of-10, happy 7) shrinks on a small mesh, keeping
    its proportions: n = nodes, k = 30 % of n, happy = 70 % of n; one node stores 1-of-1.
    """
    if asked is not None:
        if nodes < asked.happy:
            raise StoreUnhappy(asked.happy, nodes)
        return asked
    if nodes < 1:
        raise StoreUnhappy(1, 0, "no node with a store is reachable")
    base = Params()
    if nodes >= base.n:
        return base
    n = nodes
    k = max(1, math.ceil(n * base.k / base.n))
    happy = max(k, math.ceil(n * base.happy / base.n))
    return Params(k=k, n=n, happy=happy)


# --- blobs -------------------------------------------------------------------------------


class ShareHeader(msgspec.Struct, frozen=True, array_like=True, tag="sh1"):
    """Stored at the front of every share file: enough to check the share alone."""

    k: int
    n: int
    length: int
    """Bytes of the blob (the ciphertext)."""
    blob_hash: bytes
    share_hashes: list[bytes]

    def root(self) -> bytes:
        return blob_root(self.k, self.n, self.length, self.blob_hash, self.share_hashes)


def blob_root(k: int, n: int, length: int, blob_hash: bytes, share_hashes: list[bytes]) -> bytes:
    return tagged_hash(
        "blob-root",
        k.to_bytes(2, "little"),
        n.to_bytes(2, "little"),
        length.to_bytes(8, "little"),
        blob_hash,
        b"".join(share_hashes),
    )


def hash_blob(data: bytes | memoryview) -> bytes:
    h = blake3.blake3(derive_key_context="motes.store.v1 blob")
    h.update(data)
    return h.digest()


def hash_share(num: int, data: bytes | memoryview) -> bytes:
    h = blake3.blake3(derive_key_context="motes.store.v1 share")
    h.update(num.to_bytes(2, "little"))
    h.update(data)
    return h.digest()


@dataclass(frozen=True, slots=True)
class BlobRoot:
    root: bytes
    header: ShareHeader


_encoders: dict[tuple[int, int], zfec.Encoder] = {}
_decoders: dict[tuple[int, int], zfec.Decoder] = {}


def encode_blob(data: bytes, k: int, n: int) -> tuple[BlobRoot, list[bytes]]:
    """Erasure-code ``data`` into ``n`` shares; shares 0..k-1 are its slices (systematic).

    Each byte is copied once into its share (``ljust`` of a full slice copies nothing),
    and only the tail is padded (with zeros, to the share size)."""
    length = len(data)
    size = max(1, -(-length // k))
    view = memoryview(data)
    primary = [bytes(view[i * size : (i + 1) * size]).ljust(size, b"\0") for i in range(k)]
    if n > k:
        encoder = _encoders.get((k, n))
        if encoder is None:
            encoder = _encoders[(k, n)] = zfec.Encoder(k, n)
        check = encoder.encode(primary, list(range(k, n)))
    else:
        check = []
    shares = primary + list(check)
    hashes = [hash_share(i, s) for i, s in enumerate(shares)]
    header = ShareHeader(k=k, n=n, length=length, blob_hash=hash_blob(data), share_hashes=hashes)
    return BlobRoot(header.root(), header), shares


def decode_blob(header: ShareHeader, shares: dict[int, bytes]) -> bytes:
    """Rebuild a blob from ``k`` checked shares (share number -> bytes); check the result.

    The caller has checked every share against ``header.share_hashes``; a mismatch of the
    rebuilt blob's hash means a bug or a forged header, reported as ``BadMessage``. With
    the ``k`` primary shares (what a reader asks for first) nothing is decoded: the blob
    is their concatenation.
    """
    k, n = header.k, header.n
    nums = sorted(shares)[:k]
    if len(nums) < k:
        raise ValueError(f"need {k} shares, got {len(nums)}")
    if nums == list(range(k)):
        parts = [shares[i] for i in nums]
    else:
        decoder = _decoders.get((k, n))
        if decoder is None:
            decoder = _decoders[(k, n)] = zfec.Decoder(k, n)
        parts = decoder.decode([shares[i] for i in nums], nums)
    blob = _joined(parts, header.length)
    if hash_blob(blob) != header.blob_hash:
        raise BadMessage("a rebuilt blob does not match its hash")
    return blob


def _joined(parts: list[bytes], length: int) -> bytes:
    """The first ``length`` bytes of ``parts`` end to end, copied once (no slice after)."""
    views: list[bytes | memoryview] = []
    left = length
    for part in parts:
        if left <= 0:
            break
        views.append(part if len(part) <= left else memoryview(part)[:left])
        left -= len(part)
    return b"".join(views)


def check_share(header: ShareHeader, num: int, data: bytes | memoryview) -> bool:
    return 0 <= num < header.n and hash_share(num, data) == header.share_hashes[num]


# --- chunks: convergent encryption ---------------------------------------------------------


def chunk_key(secret: bytes, params: Params, plaintext: bytes | memoryview) -> bytes:
    """The convergent key of a chunk: same mesh, same parameters, same bytes -> same key."""
    digest = blake3.blake3(plaintext).digest()
    shape = f"{params.k}/{params.n}/{params.chunk}".encode()
    return tagged_hash("chunk-key", secret, shape, digest)


def seal_chunk(key: bytes, plaintext: bytes | memoryview) -> bytes:
    return AESGCM(key).encrypt(_NONCE, plaintext, None)


def open_chunk(key: bytes, ciphertext: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(_NONCE, ciphertext, None)
    except InvalidTag:
        raise BadMessage("a chunk does not decrypt under its key (wrong capability?)") from None


# --- manifests -----------------------------------------------------------------------------


class Entry(msgspec.Struct, frozen=True, array_like=True):
    """One child of a directory: a name and the read capability of its content."""

    name: str
    cap: str
    size: int
    kind: str  # "file" | "dir"
    mode: int = 0o644


class Manifest(msgspec.Struct, frozen=True, array_like=True, tag="m1"):
    """What a file is made of. Public to verifiers except ``sealed_keys``."""

    kind: str
    """``file`` or ``dir`` (a directory's content is a msgpack list of ``Entry``)."""
    size: int
    k: int
    n: int
    chunk: int
    chunks: list[bytes]
    """The blob root of each chunk, in order."""
    sealed_keys: bytes
    """Every chunk's key, concatenated, encrypted under the read key."""
    version: int = FORMAT_VERSION


def read_key(secret: bytes, keys: list[bytes], kind: str, size: int) -> bytes:
    """The file's read key: convergent too, so the same file always gets the same cap."""
    return tagged_hash("read-key", secret, kind.encode(), size.to_bytes(8, "little"), *keys)


def seal_keys(key: bytes, keys: list[bytes]) -> bytes:
    return AESGCM(key).encrypt(_NONCE, b"".join(keys), b"motes chunk keys")


def open_keys(key: bytes, sealed: bytes, count: int) -> list[bytes]:
    try:
        raw = AESGCM(key).decrypt(_NONCE, sealed, b"motes chunk keys")
    except InvalidTag:
        raise BadMessage("the manifest's keys do not open with this capability") from None
    if len(raw) != 32 * count:
        raise BadMessage("the manifest's key list has the wrong length")
    return [raw[i * 32 : (i + 1) * 32] for i in range(count)]


_manifest_decoder = msgspec.msgpack.Decoder(Manifest)
_entries_decoder = msgspec.msgpack.Decoder(list[Entry])


def encode_manifest(manifest: Manifest) -> bytes:
    return msgspec.msgpack.encode(manifest)


def decode_manifest(data: bytes) -> Manifest:
    try:
        m = _manifest_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadMessage(f"not a manifest: {exc}") from None
    if m.version != FORMAT_VERSION:
        raise BadMessage(f"manifest format {m.version} is unknown to this Motes")
    if any(len(c) != 32 for c in m.chunks) or m.kind not in ("file", "dir"):
        raise BadMessage("a malformed manifest")
    return m


def encode_entries(entries: list[Entry]) -> bytes:
    return msgspec.msgpack.encode(sorted(entries, key=lambda e: e.name))


def decode_entries(data: bytes) -> list[Entry]:
    try:
        return _entries_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BadMessage(f"not a directory: {exc}") from None


def file_cap(key: bytes, manifest_root: bytes) -> FileReadCap:
    return FileReadCap(key, manifest_root)
