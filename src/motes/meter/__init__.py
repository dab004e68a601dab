"""The call meter: one object on every call path of an instance (call, batch, actor,
durable), counting what the instance does.

``begin`` as a call starts (it also samples how much work is held: the autoscaler's
signal), ``end`` with its reply when it is done. The meter keeps in-flight and peak
counts, calls served and failed, wall time, a histogram of call latencies (four
buckets per doubling, from 1 us: p50 and p99 to within 19 %), bytes in and out, CPU time
(user and system) and wasm fuel; the worker reports them to its agent and drains by
waiting until nothing is in flight.

CPU time is the serving process's (``getrusage(RUSAGE_SELF)``: every thread, so sync
code offloaded to a thread counts too), shared fairly between the calls in flight: at
every ``begin`` and ``end`` the CPU used since the last one is divided by the calls then
in flight, and each call is charged the sum of its shares. A call served alone is
charged exactly the process's CPU while it ran; CPU used with nothing in flight (status
reports, heartbeats of the connection) is charged to no call. ``cpu=False`` turns the
two ``getrusage`` reads per call off (the meter-off comparison in the bench).
"""

from __future__ import annotations

import asyncio
import math
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..wire.messages import LATENCY_BUCKETS, Err, Ok

__all__ = ["CallMeter", "CallRecord", "Started", "Usage", "latency_bucket", "peak_rss"]

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
    cpu_user_s: float = 0.0
    cpu_sys_s: float = 0.0
    fuel: int = 0
    """WebAssembly fuel used (filled in by the wasm host; 0 for native code)."""

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


@dataclass(slots=True)
class Started:
    """A call's start: its wall clock and its CPU shares so far (``CallMeter.begin``)."""

    wall: float
    user: float = 0.0
    sys: float = 0.0
    bytes_in: int = 0


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What one call cost (``CallMeter.last``)."""

    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    bytes_in: int
    bytes_out: int
    fuel: int


def peak_rss() -> int:
    """The process's peak resident memory in bytes: ``VmHWM`` on Linux (per address
    space, so not the parent's image before exec, which ``ru_maxrss`` includes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024


class CallMeter:
    def __init__(self, *, cpu: bool = True) -> None:
        self.inflight = 0
        self.usage = Usage()
        self.cpu = cpu
        self.last: CallRecord | None = None
        """The most recent call's own record."""
        self._peak = 0
        self._latency = [0] * _NBUCKETS
        self._idle = asyncio.Event()
        self._idle.set()
        self._user = self._sys = 0.0  # the process's CPU at the last begin or end
        self._share_user = self._share_sys = 0.0  # CPU per in-flight call, summed

    def _advance(self) -> None:
        """Share the CPU used since the last event among the calls in flight then."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        if self.inflight:
            self._share_user += (ru.ru_utime - self._user) / self.inflight
            self._share_sys += (ru.ru_stime - self._sys) / self.inflight
        self._user, self._sys = ru.ru_utime, ru.ru_stime

    def begin(self, queued: int = 0, bytes_in: int = 0) -> Started:
        """A call starts; ``queued`` calls wait behind it. Returns its start token.

        The load is sampled here, as each call starts, and not only when a status is
        taken: a sync mote holds the event loop while it runs, so a status taken between
        calls would always see an empty queue, however long it is.
        """
        if self.cpu:
            self._advance()  # before counting this call: what ran until now is not its CPU
        self.inflight += 1
        if self.inflight + queued > self._peak:
            self._peak = self.inflight + queued
        self.usage.bytes_in += bytes_in
        self._idle.clear()
        return Started(time.perf_counter(), self._share_user, self._share_sys, bytes_in)

    def end(
        self,
        started: Started,
        reply: Ok | Err | None = None,
        bytes_out: int = 0,
        *,
        fuel: int = 0,
    ) -> None:
        """The call is done (``reply`` None: it was not counted as served, e.g. dropped)."""
        usage = self.usage
        took = time.perf_counter() - started.wall
        usage.wall_s += took
        usage.bytes_out += bytes_out
        usage.fuel += fuel
        user = system = 0.0
        if self.cpu:
            self._advance()
            user = self._share_user - started.user
            system = self._share_sys - started.sys
            usage.cpu_user_s += user
            usage.cpu_sys_s += system
        self.last = CallRecord(took, user, system, started.bytes_in, bytes_out, fuel)
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
