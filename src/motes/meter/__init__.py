"""The call meter: one object on every call path of an instance (call, batch, actor,
durable), counting what the instance does.

``begin`` as a call starts (it also samples how much work is held: the autoscaler's
signal), ``end`` with its reply when it is done. The meter keeps in-flight and peak
counts, calls served and failed, wall time, a histogram of call latencies (four
buckets per doubling, from 1 us: p50 and p99 to within 19 %), and bytes in and out; the
worker reports them to its agent and drains by waiting until nothing is in flight.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from ..wire.messages import LATENCY_BUCKETS, Err, Ok

__all__ = ["CallMeter", "Usage", "latency_bucket"]

_NBUCKETS = 128
"""Up to 2**32 us (over an hour); a longer call is counted in the last bucket."""


def latency_bucket(seconds: float) -> int:
    """The histogram bucket of a call that took ``seconds``."""
    us = seconds * 1e6
    if us <= 1.0:
        return 0
    return min(int(LATENCY_BUCKETS * math.log2(us)), _NBUCKETS - 1)


@dataclass(slots=True)
class Usage:
    """Totals since the instance started."""

    served: int = 0
    failed: int = 0
    wall_s: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0


class CallMeter:
    def __init__(self) -> None:
        self.inflight = 0
        self.usage = Usage()
        self._peak = 0
        self._latency = [0] * _NBUCKETS
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self, queued: int = 0, bytes_in: int = 0) -> float:
        """A call starts; ``queued`` calls wait behind it. Returns its start token.

        The load is sampled here, as each call starts, and not only when a status is
        taken: a sync mote holds the event loop while it runs, so a status taken between
        calls would always see an empty queue, however long it is.
        """
        self.inflight += 1
        if self.inflight + queued > self._peak:
            self._peak = self.inflight + queued
        self.usage.bytes_in += bytes_in
        self._idle.clear()
        return time.perf_counter()

    def end(self, started: float, reply: Ok | Err | None = None, bytes_out: int = 0) -> None:
        """The call is done (``reply`` None: it was not counted as served, e.g. dropped)."""
        usage = self.usage
        took = time.perf_counter() - started
        usage.wall_s += took
        usage.bytes_out += bytes_out
        if reply is not None:
            self._latency[latency_bucket(took)] += 1
            usage.served += 1
            if isinstance(reply, Err):
                usage.failed += 1
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    def count(self, reply: Ok | Err) -> None:
        """One more result of a call already begun (the items of a batch)."""
        self.usage.served += 1
        if isinstance(reply, Err):
            self.usage.failed += 1

    def failed(self) -> None:
        """A call that could not be served at all (bad bytes, a bug of ours)."""
        self.usage.failed += 1

    def latency(self) -> dict[int, int]:
        """Calls served by latency bucket (``InstanceStatus.latency``), non-empty ones only."""
        return {i: n for i, n in enumerate(self._latency) if n}

    def take_peak(self, queued: int = 0) -> int:
        """Most calls held at once since the last call of this (and now), then reset."""
        peak = max(self._peak, self.inflight + queued)
        self._peak = 0
        return peak

    async def idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; False if ``timeout`` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
