"""One mote timed on two meshes that differ in one setting (auth, the meter), by the
same loop, interleaved: what that setting costs a call."""

from __future__ import annotations

from collections.abc import Sequence

from .contenders import MotesContender
from .runner import Result, Session, interleave
from .stats import median, percentile


async def rtt_p50_us(
    s: Session, label: str, contenders: Sequence[MotesContender]
) -> tuple[dict[str, float], int]:
    """Each contender's median (over reps) p50 call round trip in µs, and the reps."""
    chunk = min(s.sizes.rtt_round, s.sizes.rtt_calls)
    rtt = await interleave(
        f"{label} rtt",
        list(contenders),
        lambda c: c.call_rtt(chunk),
        s.sizes.reps,
        lambda ns: f"p50 {percentile(ns, 50) / 1e3:.0f} us",
        rounds=max(1, s.sizes.rtt_calls // chunk),
        merge=lambda parts: [t for part in parts for t in part],
    )
    p50 = {name: median([percentile(rep, 50) / 1e3 for rep in reps]) for name, reps in rtt.items()}
    return p50, len(next(iter(rtt.values())))


def ratio_row(metric: str, unit: str, value: float, base: float, peer: str, reps: int) -> Result:
    """A row: ``value`` against ``base`` (the setting off), ratio value ÷ base."""
    return Result(metric, unit, round(value, 3), round(base, 3), peer, round(value / base, 4), reps)
