"""call_rtt_us: p50 and p99 of one call at a time to a mote in another process.

Motes calls the sync mote ``bench.echo`` (rows ``call_rtt_us``, ``call_rtt_us_p99``) and
the async mote ``bench.echo_async`` (``call_rtt_async_us``, ``..._p99``); the peers answer
the same calls in the same loop, interleaved with both in rounds of ``rtt_round`` calls
(A B C A B C ... within a repetition). Each repetition gives one p50 and one p99 over
its ``rtt_calls`` calls; a row reports the median of those over the repetitions. A peer
too slow for that many (``Sizes.peer_counts``) makes fewer calls in each round.

Peers: raw nats-py (the floor), Ray (``ray.get(actor.echo.remote(b"x"))``) and Dask
(``client.submit(echo, b"x", pure=False).result()``), timed by the same loop in their
drivers (``bench/drivers/``).
"""

from __future__ import annotations

from .runner import Result, Session, compare, interleave
from .stats import median, percentile

METRIC = "call_rtt"


async def run(s: Session) -> list[Result]:
    chunk = min(s.sizes.rtt_round, s.sizes.rtt_calls)
    rounds = max(1, s.sizes.rtt_calls // chunk)
    peers = s.peers_for(METRIC)
    per_round = {
        c.name: max(1, s.sizes.count(METRIC, c.name, chunk * rounds) // rounds) for c in peers
    }
    samples = await interleave(
        METRIC,
        [s.motes["sync"], s.motes["async"], *peers],
        lambda c: c.call_rtt(per_round.get(c.name, chunk)),
        s.sizes.reps,
        lambda ns: f"p50 {percentile(ns, 50) / 1e3:.0f} us p99 {percentile(ns, 99) / 1e3:.0f} us",
        rounds=rounds,
        merge=lambda chunks: [t for part in chunks for t in part],
    )

    def us(name: str, p: float) -> float:
        return median([percentile(rep, p) / 1e3 for rep in samples[name]])

    rows: list[Result] = []
    for metric, mote in (("call_rtt_us", "sync"), ("call_rtt_async_us", "async")):
        name = s.motes[mote].name
        for suffix, p in (("", 50), ("_p99", 99)):
            theirs = {c.name: us(c.name, p) for c in peers if c.name in samples}
            rows += compare(metric + suffix, "us", us(name, p), theirs, len(samples[name]))
    return rows
