"""auth_cost: what authentication costs a call, and how long a machine takes to join.

The run's mesh authenticates every connection (the default). Beside it this metric
starts a second one-node mesh with authentication off (``LocalMesh(auth=False)``) and
deploys the same echo app there; the sync mote ``bench.echo`` on both is then timed by
the same loops, interleaved (on, off, on, off ...): rows ``auth_call_rtt_us`` (p50 of
``rtt_calls`` calls one at a time; ratio on ÷ off, goal <= 1.05) and
``auth_call_throughput`` (``tput_calls`` calls, ``window`` in flight; ratio on ÷ off,
goal >= 0.95, i.e. at most 5 % slower). Authentication is paid once per connection
(the CONNECT's signed nonce), never per message, so both should be within noise.

``join_to_first_call_s``: in a fresh one-node mesh, an app whose mote needs the label
``joined=yes`` waits with nowhere to run; ``motes invite --node`` prints a token, and
from the moment ``motes --home NEW join TOKEN --label joined=yes`` starts (a new home:
it makes the machine's key, proves the token, takes its credentials and starts the
node agent) until the first call to that mote succeeds. Absolute, no peer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from motes.client import Mesh
from motes.config import Timing
from motes.errors import MotesError
from motes.testing import local_mesh

from .contenders import MotesContender
from .paired import ratio_row, rtt_p50_us
from .runner import APP, Result, Session, interleave
from .stats import median

METRIC = "auth_cost"
ON, OFF = "auth on", "auth off"

PROBE = """\
import motes

app = motes.App("joinprobe")


@app.mote(min=1, labels={"joined": "yes"})
def ping(x):
    return x
"""


async def run(s: Session) -> list[Result]:
    rows: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="motes-bench-auth-") as tmp:
        folder = Path(tmp)
        async with local_mesh(folder / "off", nodes=1, timing=Timing(), auth=False) as mesh:
            async with mesh.client() as off_client:
                await off_client.deploy(APP)
                rows += await _call_costs(s, off_client)
        rows.append(await _join(folder))
    return rows


async def _call_costs(s: Session, off_client: Mesh) -> list[Result]:
    on = s.motes["sync"]
    assert isinstance(on, MotesContender)
    contenders = [MotesContender(on.client, on.mote, ON), MotesContender(off_client, on.mote, OFF)]
    p50, reps = await rtt_p50_us(s, METRIC, contenders)
    tput = await interleave(
        f"{METRIC} throughput",
        contenders,
        lambda c: c.call_throughput(s.sizes.tput_calls, s.sizes.window),
        s.sizes.reps,
        lambda rate: f"{rate:,.0f}/s",
    )
    return [
        ratio_row("auth_call_rtt_us", "us", p50[ON], p50[OFF], OFF, reps),
        ratio_row(
            "auth_call_throughput",
            "calls/s",
            median(tput[ON]),
            median(tput[OFF]),
            OFF,
            len(tput[ON]),
        ),
    ]


async def _join(folder: Path) -> Result:
    app = folder / "joinprobe.py"
    app.write_text(PROBE)
    async with local_mesh(folder / "join", nodes=1, timing=Timing()) as mesh:
        async with mesh.client() as client:
            await client.deploy(app, wait=False)
            token = await _cli(mesh.home, "--url", mesh.url, "invite", "--node", "newcomer")
            token = token.splitlines()[0].strip()
            log = open(folder / "newcomer.log", "wb")
            t0 = time.monotonic()
            node = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "motes.cli", "--home", str(folder / "newcomer"),
                "join", token, "--label", "joined=yes",
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True,
            )  # fmt: skip
            try:
                took = await _first_call(client, t0)
            finally:
                log.close()
                if node.returncode is None:
                    node.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(node.wait(), 30)
                    except TimeoutError:
                        node.kill()
                        await node.wait()
    print(f"  {METRIC}: join to first served call {took:.2f} s", file=sys.stderr)
    return Result("join_to_first_call_s", "s", round(took, 3), None, None, None, 1)


async def _first_call(client: Mesh, t0: float, timeout: float = 120.0) -> float:
    while time.monotonic() - t0 < timeout:
        try:
            if await client.call("joinprobe.ping", "x", timeout=2.0) == "x":
                return time.monotonic() - t0
        except MotesError:
            await asyncio.sleep(0.02)
    raise RuntimeError(f"the joined node served no call within {timeout:.0f} s")


async def _cli(home: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "motes.cli", "--home", str(home), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "MOTES_URL"},
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"motes {' '.join(args)}: {err.decode().strip()}")
    return out.decode()
