"""meter_cost: what the call meter costs a call.

The run's mesh meters every call (the default, ``[node] meter = "on"``). Beside it this
metric starts a second one-node mesh, authenticated like the first, whose node has the
meter off (``LocalMesh(meter="off")``: no ``getrusage`` reads per call, no totals in the
instance's status) and deploys the same echo app there; the sync mote ``bench.echo`` on
both is then timed by the same loop, interleaved (on, off, on, off ...): row
``meter_call_rtt_us``, the p50 of ``rtt_calls`` calls one at a time; ratio on ÷ off,
goal <= 1.03.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from motes.config import Timing
from motes.testing import local_mesh

from .contenders import MotesContender
from .runner import APP, Result, Session, interleave
from .stats import median, percentile

METRIC = "meter_cost"
ON, OFF = "meter on", "meter off"


async def run(s: Session) -> list[Result]:
    on = s.motes["sync"]
    assert isinstance(on, MotesContender)
    with tempfile.TemporaryDirectory(prefix="motes-bench-meter-") as tmp:
        async with local_mesh(Path(tmp), nodes=1, timing=Timing(), meter="off") as mesh:
            async with mesh.client() as off_client:
                await off_client.deploy(APP)
                contenders = [
                    MotesContender(on.client, on.mote, ON),
                    MotesContender(off_client, on.mote, OFF),
                ]
                chunk = min(s.sizes.rtt_round, s.sizes.rtt_calls)
                rtt = await interleave(
                    f"{METRIC} rtt",
                    contenders,
                    lambda c: c.call_rtt(chunk),
                    s.sizes.reps,
                    lambda ns: f"p50 {percentile(ns, 50) / 1e3:.0f} us",
                    rounds=max(1, s.sizes.rtt_calls // chunk),
                    merge=lambda parts: [t for part in parts for t in part],
                )

    def p50_us(name: str) -> float:
        return median([percentile(rep, 50) / 1e3 for rep in rtt[name]])

    on_us, off_us = p50_us(ON), p50_us(OFF)
    return [
        Result(
            "meter_call_rtt_us",
            "us",
            round(on_us, 3),
            round(off_us, 3),
            OFF,
            round(on_us / off_us, 4),
            len(rtt[ON]),
        )
    ]
