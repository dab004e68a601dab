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
from .paired import ratio_row, rtt_p50_us
from .runner import APP, Result, Session

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
                p50, reps = await rtt_p50_us(s, METRIC, contenders)
    return [ratio_row("meter_call_rtt_us", "us", p50[ON], p50[OFF], OFF, reps)]
