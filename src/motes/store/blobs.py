"""Moving whole blobs: placing a blob's shares on nodes, and rebuilding a blob from them.

Used by uploads, downloads and repair alike. Placement follows the rendezvous ranking
(``placement.rank``), preferring nodes that hold no share of the blob yet, and moves on
down the ranking when a node fails. Reading fetches ``k`` shares in parallel from the
fastest holders, checks each, and replaces a missing, slow or corrupt one with another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from .._aio import outcome, owned_tasks
from ..errors import DataUnavailable, StoreUnhappy
from ..wire.codec import encode
from ._net import Fetched, ShareFailed, StoreNet
from .format import ShareHeader, decode_blob
from .placement import rank

__all__ = ["fetch_blob", "place_shares"]

log = logging.getLogger(__name__)


async def place_shares(
    net: StoreNet,
    root: bytes,
    header: ShareHeader,
    shares: dict[int, bytes],
    candidates: Iterable[str],
    holding: dict[int, list[str]] | None = None,
) -> dict[int, str]:
    """Put ``shares`` (number -> bytes) on nodes; return number -> node for those placed.

    ``holding`` lists shares of this blob already on nodes (for repair): their nodes are
    tried last, so shares spread over as many distinct nodes as there are.
    """
    ranked = rank(root, candidates)
    if not ranked:
        raise StoreUnhappy(1, 0, "no node with a store is reachable")
    busy = {node for nodes in (holding or {}).values() for node in nodes}
    fresh = [n for n in ranked if n not in busy]
    order = fresh + [n for n in ranked if n in busy]
    header_raw = encode(header)
    failed: set[str] = set()
    taken: dict[str, int] = {}
    placed: dict[int, str] = {}

    def pick() -> str | None:
        """The best-ranked live node among those holding the fewest of this blob's shares:
        share i goes to the i-th node of the ranking, wrapping round when they run out."""
        live = [n for n in order if n not in failed]
        if not live:
            return None
        return min(live, key=lambda n: taken.get(n, 0))  # min is stable: ranking breaks ties

    async def one(num: int, data: bytes) -> None:
        while True:
            node = pick()
            if node is None:
                return
            taken[node] = taken.get(node, 0) + 1
            try:
                await net.put_share(node, root, num, header_raw, data)
            except ShareFailed as exc:
                log.info("share %d of %s: %s; trying another node", num, root.hex()[:12], exc)
                failed.add(node)
                taken[node] -= 1
                continue
            placed[num] = node
            return

    await asyncio.gather(*(one(num, data) for num, data in sorted(shares.items())))
    return placed


async def fetch_blob(
    net: StoreNet,
    root: bytes,
    holders: dict[int, list[str]],
    what: str,
    *,
    k_hint: int = 3,
    hedge_s: float = 1.0,
) -> tuple[ShareHeader, bytes, bytes]:
    """Rebuild a blob from its shares: (header, encoded header, blob bytes).

    ``holders`` maps share numbers to the nodes that said they hold them. ``k`` shares are
    asked for at once (``_preference``: primary shares first, then the fastest holders),
    one per node where possible; a failed or
    corrupt share is replaced by the next candidate, and a share slower than ``hedge_s``
    gets a second one started beside it. ``DataUnavailable`` when the candidates run out.
    """
    queue = sorted(
        ((num, node) for num, nodes in holders.items() for node in nodes),
        key=lambda c: _preference(net, c[0], c[1], k_hint),
    )
    if not queue:
        raise DataUnavailable(what, k_hint, 0, "no node holds a share")
    good: dict[int, Fetched] = {}
    problems: list[str] = []
    running: dict[asyncio.Task[Fetched | Exception], tuple[int, str]] = {}
    k = k_hint

    def launch(tasks: asyncio.TaskGroup) -> bool:
        """Start the best untried candidate for a share number not got or running."""
        wanted = set(good) | {num for num, _ in running.values()}
        used_nodes = {node for _, node in running.values()}
        for fresh_node_only in (True, False):
            for i, (num, node) in enumerate(queue):
                if num in wanted or (fresh_node_only and node in used_nodes):
                    continue
                del queue[i]
                task = tasks.create_task(outcome(net.get_share(node, root, num)))
                running[task] = (num, node)
                return True
        return False

    async with owned_tasks() as tasks:
        try:
            while len(good) < k:
                while len(good) + len(running) < k and launch(tasks):
                    pass
                if not running:
                    raise DataUnavailable(what, k, len(good), "; ".join(problems[-3:]))
                done, _ = await asyncio.wait(
                    running, timeout=hedge_s, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    launch(tasks)  # a slow holder: race another share beside it
                    continue
                for task in done:
                    num, _ = running.pop(task)
                    got = task.result()
                    if isinstance(got, ShareFailed):
                        problems.append(str(got))
                    elif isinstance(got, Exception):
                        raise got
                    else:
                        good[num] = got
                        k = got.header.k
        finally:
            for task in running:
                task.cancel()
    first = next(iter(good.values()))
    shares = {num: f.data for num, f in sorted(good.items())[:k]}
    blob = await asyncio.to_thread(decode_blob, first.header, shares)
    return first.header, first.header_raw, blob


def _preference(net: StoreNet, num: int, node: str, k: int) -> tuple[bool, bool, float, int]:
    """Which candidate share to ask for first: this node's own disk, then the primary
    shares (numbers below ``k``: the blob is their concatenation, nothing to decode),
    then the fastest holder. A slow holder of a primary share is raced by the hedge."""
    return (node != net.nodes.local, num >= k, net.nodes.speed_key(node), num)
