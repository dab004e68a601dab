"""Checking and repairing a file from its verify capability alone.

Shares are erasure-coded *ciphertext*, so rebuilding a blob and re-encoding its missing
shares needs no read key: the verify capability names the manifest's root, the manifest
(public but for its sealed keys) names every chunk's root, and every root checks every
share. A blob is healthy when all ``n`` shares are held, on as many distinct live nodes as
there can be; repair puts each missing share on the best-ranked node that holds none of
that blob yet, and tags it so the node's holdings count it.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import BadMessage, DataUnavailable, MotesError, NotStored
from ..wire.codec import encode
from ..wire.store import RepairReport, Tag
from ._net import StoreNet
from .blobs import fetch_blob, place_shares
from .caps import FileVerifyCap
from .format import decode_manifest, encode_blob
from .placement import allowed

__all__ = ["check_file"]

log = logging.getLogger(__name__)


async def check_file(
    net: StoreNet, verify: FileVerifyCap, *, repair: bool, labels: dict[str, str] | None = None
) -> RepairReport:
    """Count (and with ``repair``, restore) every share of the file ``verify`` names."""
    located = await net.locate([verify.root])
    if not net.complete:  # a store answered late (or is gone): give it longer once
        located = await net.locate([verify.root], patient=True)
    nodes = allowed(net.nodes.labels, labels or {})
    holders = located[verify.root]
    if not holders:
        raise NotStored(str(verify), "no node holds its manifest")
    header, _, data = await fetch_blob(net, verify.root, holders, f"the manifest of {verify}")
    try:
        manifest = decode_manifest(data)
    except BadMessage as exc:
        raise DataUnavailable("the manifest", header.k, 0, str(exc)) from None
    roots = [verify.root, *manifest.chunks]
    where = {verify.root: holders, **(await net.locate(manifest.chunks))}
    report = _Tally(verify=str(verify), nodes=len(nodes))
    tags: dict[str, list[bytes]] = {}
    for root in dict.fromkeys(roots):  # a chunk that repeats is one blob
        held = where.get(root, {})
        missing = [num for num in range(manifest.n) if num not in held]
        distinct = {node for ns in held.values() for node in ns}
        report.blobs += 1
        report.missing += len(missing)
        if len(held) >= manifest.k:
            report.recoverable += 1
        if not missing and len(distinct) >= min(manifest.n, len(nodes)):
            report.healthy += 1
            continue
        if not repair or not missing:
            continue
        try:
            placed = await _repair_blob(net, root, held, missing, nodes, manifest.k)
        except MotesError as exc:
            report.notes.append(f"{root.hex()[:12]}: {exc}")
            continue
        report.repaired += len(placed)
        for node in set(placed.values()):
            tags.setdefault(node, []).append(root)
        if len(placed) == len(missing):
            report.healthy += 1
    results = await asyncio.gather(
        *(net.tag(node, encode(Tag([verify.si_hex], blobs))) for node, blobs in tags.items()),
        return_exceptions=True,
    )
    for res in results:  # a node that cannot be told only under-reports its holdings
        if isinstance(res, Exception):
            log.warning("store: tagging repaired shares failed: %s", res)
        elif isinstance(res, BaseException):
            raise res
    return report.done()


async def _repair_blob(
    net: StoreNet,
    root: bytes,
    held: dict[int, list[str]],
    missing: list[int],
    nodes: list[str],
    k: int,
) -> dict[int, str]:
    header, _, blob = await fetch_blob(net, root, held, f"blob {root.hex()[:12]}", k_hint=k)
    rebuilt, shares = await asyncio.to_thread(encode_blob, blob, header.k, header.n)
    if rebuilt.root != root:
        raise BadMessage(f"blob {root.hex()[:12]} re-encodes to a different root")
    wanted = {num: shares[num] for num in missing}
    return await place_shares(net, root, header, wanted, nodes, holding=held)


class _Tally:
    def __init__(self, verify: str, nodes: int) -> None:
        self.verify = verify
        self.nodes = nodes
        self.blobs = self.healthy = self.recoverable = 0
        self.missing = self.repaired = 0
        self.notes: list[str] = []

    def done(self) -> RepairReport:
        return RepairReport(
            verify=self.verify,
            blobs=self.blobs,
            healthy=self.healthy,
            recoverable=self.recoverable,
            missing_shares=self.missing,
            repaired_shares=self.repaired,
            nodes=self.nodes,
            detail="; ".join(self.notes[:5]),
        )
