"""call_throughput: calls/s from one client with many calls in flight (closed loop).

``tput_calls`` calls per repetition, ``window`` of them always in flight. Rows:
``call_throughput`` (the sync mote ``bench.echo``, which serves one call at a time) and
``call_throughput_async`` (``bench.echo_async``, up to 64 at a time), each against the
same peers, all interleaved.

Peers: raw nats-py (same closed loop, the floor); Ray actor calls and Ray tasks, and Dask
``submit``, each in the peer's own idiom: all ``n`` submitted, then one wait for all
(``ray.get(refs)``, ``client.gather(futures)``). A peer too slow for ``tput_calls`` per
repetition makes fewer (``Sizes.peer_counts``); the rate is what is compared.
"""

from __future__ import annotations

from .runner import Result, Session, compare, interleave
from .stats import median

METRIC = "call_throughput"


async def run(s: Session) -> list[Result]:
    n, window = s.sizes.tput_calls, s.sizes.window
    peers = s.peers_for(METRIC)
    samples = await interleave(
        METRIC,
        [s.motes["sync"], s.motes["async"], *peers],
        lambda c: c.call_throughput(s.sizes.count(METRIC, c.name, n), window),
        s.sizes.reps,
        lambda rate: f"{rate:,.0f}/s",
    )
    theirs = {c.name: median(samples[c.name]) for c in peers if c.name in samples}
    rows: list[Result] = []
    for metric, mote in (("call_throughput", "sync"), ("call_throughput_async", "async")):
        name = s.motes[mote].name
        rows += compare(metric, "calls/s", median(samples[name]), theirs, len(samples[name]))
    return rows
