"""The runner: sets up the contenders once, runs each metric, writes the results.

How a run goes:

1. A local mesh (embedded nats-server on 127.0.0.1, one node process) starts in a
   temporary directory, a client connects and deploys ``bench/apps/echo.py``.
2. Contenders start: Motes calling the sync mote, Motes calling the async mote, and the
   peers each metric compares against (for now the raw nats-py floor, a responder process
   on the same nats-server).
3. Each metric module (``call_rtt``, ``call_throughput``, ``map_throughput``) measures its
   contenders interleaved, one repetition each in turn (A B A B ...; call_rtt interleaves
   finer still, in rounds within a repetition), after one unrecorded warm-up each, and
   reports the median over repetitions. A row's ratio is motes ÷ peer of those medians,
   so it reads the same way as the goals in /work/shared/BENCHMARKS.md (lower is better
   for times, higher for rates).
4. ``bench/results/<UTC date>-<host>.json`` is written (``...-quick.json`` for a quick
   run, which git ignores) and a table printed; a full run of every metric with the
   default settings also rewrites ``bench/RESULTS.md``.

Adding a peer: write a ``Contender`` (see ``bench/contenders.py``), start it in
``_peers`` and list its name under the metrics it takes part in (``PEERS``). Every metric
then measures it side by side with Motes, one row per (metric, peer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import importlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import motes
from motes.config import Timing
from motes.lattice.server import find_binary
from motes.testing import local_mesh

from .contenders import Contender, MotesContender, RawNatsContender

__all__ = ["FULL", "QUICK", "Result", "Session", "Sizes", "interleave", "main"]

T = TypeVar("T")

BENCH = Path(__file__).resolve().parent
APP = BENCH / "apps" / "echo.py"
RESULTS_DIR = BENCH / "results"
METRICS = ("call_rtt", "call_throughput", "map_throughput")

# Which peers each metric compares against, by contender name (Ray and Dask come later).
PEERS: dict[str, list[str]] = {
    "call_rtt": [RawNatsContender.name],
    "call_throughput": [RawNatsContender.name],
    "map_throughput": [],
}

# Goals from BENCHMARKS.md, shown in the table (never asserted): (metric, peer) -> (op, x).
GOALS: dict[tuple[str, str], tuple[str, float]] = {
    ("call_rtt_us", RawNatsContender.name): ("<=", 1.3),
}


@dataclass(frozen=True, slots=True)
class Sizes:
    reps: int
    """Recorded repetitions per contender (after one warm-up)."""
    rtt_calls: int
    """Sequential calls per call_rtt repetition, made in rounds of ``rtt_round`` calls."""
    rtt_round: int
    tput_calls: int
    """Calls per call_throughput repetition, ``window`` of them in flight."""
    window: int
    map_items: int
    """Items per map_throughput repetition."""


FULL = Sizes(
    reps=7, rtt_calls=5000, rtt_round=500, tput_calls=10_000, window=256, map_items=100_000
)
QUICK = Sizes(reps=5, rtt_calls=2000, rtt_round=500, tput_calls=3000, window=256, map_items=100_000)


@dataclass(slots=True)
class Result:
    metric: str
    unit: str
    motes: float
    peer: float | None
    peer_name: str | None
    ratio: float | None
    reps: int


def compare(
    metric: str, unit: str, motes_value: float, peers: dict[str, float], reps: int
) -> list[Result]:
    """One row per peer (ratio = motes ÷ peer), or one row with no peer."""
    mine = round(motes_value, 3)
    if not peers:
        return [Result(metric, unit, mine, None, None, None, reps)]
    return [
        Result(metric, unit, mine, round(value, 3), name, round(motes_value / value, 4), reps)
        for name, value in peers.items()
    ]


@dataclass
class Session:
    """What a metric module needs: sizes, the Motes contenders and the peers."""

    sizes: Sizes
    motes: dict[str, MotesContender]  # "sync" / "async": which echo mote is called
    peers: dict[str, Contender] = field(default_factory=dict)

    def peers_for(self, metric: str) -> list[Contender]:
        return [self.peers[n] for n in PEERS.get(metric, []) if n in self.peers]


async def interleave(
    label: str,
    contenders: Sequence[Contender],
    measure: Callable[[Contender], Awaitable[T]],
    reps: int,
    show: Callable[[T], str],
    *,
    rounds: int = 1,
    merge: Callable[[list[T]], T] | None = None,
) -> dict[str, list[T]]:
    """``reps`` repetitions of ``measure`` per contender, in turn (A B A B ...).

    With ``rounds`` > 1 a repetition is itself ``rounds`` measurements per contender, in
    turn, combined by ``merge``: finer interleaving, so a burst of load from elsewhere on
    a shared machine falls on every contender alike. Each contender first runs one
    unrecorded warm-up measurement; one that raises ``NotImplementedError`` there is
    left out.
    """
    if rounds > 1 and merge is None:
        raise ValueError("rounds > 1 needs merge")
    active: list[Contender] = []
    for c in contenders:
        try:
            await measure(c)
        except NotImplementedError:
            _say(f"  {label}: {c.name} cannot do this; left out")
            continue
        active.append(c)
    samples: dict[str, list[T]] = {c.name: [] for c in active}
    for rep in range(1, reps + 1):
        parts: dict[str, list[T]] = {c.name: [] for c in active}
        for _ in range(rounds):
            for c in active:
                gc.collect()
                parts[c.name].append(await measure(c))
        for c in active:
            value = merge(parts[c.name]) if merge is not None else parts[c.name][0]
            samples[c.name].append(value)
        shown = ", ".join(f"{c.name} {show(samples[c.name][-1])}" for c in active)
        _say(f"  {label} {rep}/{reps}: {shown}")
    return samples


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- setting up --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _session(sizes: Sizes, metrics: Sequence[str]) -> AsyncIterator[Session]:
    with tempfile.TemporaryDirectory(prefix="motes-bench-") as tmp:
        t0 = time.monotonic()
        # Production timing (not the tests' FAST one): heartbeats as a real node sends them.
        async with local_mesh(Path(tmp), nodes=1, timing=Timing()) as mesh:
            async with motes.connect(mesh.url) as client:
                await client.deploy(APP)
                if await client.call("bench.echo", b"x") != b"x":
                    raise RuntimeError("bench.echo did not echo")
                _say(f"mesh up and app deployed in {time.monotonic() - t0:.1f} s ({mesh.url})")
                session = Session(
                    sizes,
                    {
                        "sync": MotesContender(client, "bench.echo", "motes"),
                        "async": MotesContender(client, "bench.echo_async", "motes async"),
                    },
                )
                wanted = {n for m in metrics for n in PEERS.get(m, [])}
                async with _peers(wanted, mesh.url) as peers:
                    session.peers = peers
                    yield session


@contextlib.asynccontextmanager
async def _peers(wanted: set[str], url: str) -> AsyncIterator[dict[str, Contender]]:
    started: dict[str, Contender] = {}
    try:
        if RawNatsContender.name in wanted:
            raw = RawNatsContender(url)
            started[raw.name] = raw
            await raw.start()
        yield started
    finally:
        for c in started.values():
            await c.stop()


# --- describing the run ------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def versions() -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    try:
        out = subprocess.run(
            [str(find_binary()), "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        server: str | None = out.strip().rsplit(" ", 1)[-1].lstrip("v") or None
    except (OSError, subprocess.SubprocessError, motes.MotesError):
        server = None
    return {
        "motes": motes.__version__,
        "nats-py": dist("nats-py"),
        "nats-server": server,
        "msgspec": dist("msgspec"),
        "python": platform.python_version(),
    }


def event_loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


# --- output ------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _goal(r: Result) -> str:
    goal = GOALS.get((r.metric, r.peer_name or ""))
    if goal is None or r.ratio is None:
        return ""
    op, x = goal
    met = r.ratio <= x if op == "<=" else r.ratio >= x
    return f"{op} {x:g} ({'met' if met else 'missed'})"


def table(results: Sequence[Result]) -> str:
    head = ("metric", "unit", "motes", "peer", "peer value", "ratio", "goal", "reps")
    rows = [
        (
            r.metric,
            r.unit,
            _num(r.motes),
            r.peer_name or "-",
            _num(r.peer),
            "-" if r.ratio is None else f"{r.ratio:.2f}",
            _goal(r),
            str(r.reps),
        )
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    numeric = {2, 4, 5, 7}

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)
    )
    return "\n".join([line(head), rule + "|", *(line(r) for r in rows)])


def results_path(quick: bool, now: dt.datetime) -> Path:
    host = socket.gethostname().split(".")[0] or "host"
    suffix = "-quick" if quick else ""
    return RESULTS_DIR / f"{now:%Y-%m-%d}-{host}{suffix}.json"


def write_results_md(doc: dict[str, Any], text: str, json_path: Path) -> None:
    m, v, z, run = doc["machine"], doc["versions"], doc["sizes"], doc["run"]
    body = f"""# Benchmark results

The latest full run, written by the run itself:

```
{run["command"]}
```

- Machine: `{run["host"]}`, {m["cpu_count"]} CPUs ({m["cpu_model"]}), {m["platform"]}.
- Started {run["started"]}, load average {run["load"]}; took {run["elapsed_s"]:.0f} s.
- Software: {m["python"]} on {run["event_loop"]}; motes {v["motes"]}, \
nats-py {v["nats-py"]}, nats-server {v["nats-server"]}, msgspec {v["msgspec"]}.
- Raw results: `{json_path.relative_to(BENCH.parent)}`.

{text}

How to read it:
- Each value is the median over `reps` repetitions. Motes and its peers ran in turn on
  the same machine (A B A B ...), each after one unrecorded warm-up. ratio = motes ÷ peer:
  below 1 is better for times (us), above 1 for rates (/s). Absolute values move with
  the machine's load; the ratios are the figures to compare.
- `call_rtt_us`, `call_rtt_us_p99`: one call at a time to the sync mote `bench.echo`,
  payload `b"x"`; per repetition {z["rtt_calls"]} calls, in rounds of {z["rtt_round"]}
  interleaved with the peers'. The p50 (p99) of each repetition, then the median of those.
  `call_rtt_async_us*`: the same to the async mote `bench.echo_async`. The peer is
  nats-py `request()` to a responder process that answers with the payload: the floor,
  so the ratio is what Motes adds on top of NATS itself.
- `call_throughput`: per repetition {z["tput_calls"]} calls from one client, \
{z["window"]} in flight at once,
  to `bench.echo` (a sync mote serves one call at a time per instance, its default
  concurrency); `call_throughput_async`: the same to `bench.echo_async` (up to 64 at once).
- `map_throughput`: `mesh.map("bench.echo", range({z["map_items"]}))`, every result
  checked; no peer yet (Ray and Dask come with the peers).
- One node process, so each mote has one instance; nats-server, the node, its workers,
  the responder and the benchmark client all share the machine's CPUs.
"""
    (BENCH / "RESULTS.md").write_text(body)


# --- main --------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> None:
    sizes = QUICK if args.quick else FULL
    if args.reps is not None:
        sizes = dataclasses.replace(sizes, reps=args.reps)
    if sizes.reps < 1:
        raise SystemExit("--reps must be at least 1")
    metrics = args.only or list(METRICS)
    task = asyncio.current_task()
    if task is not None:  # SIGTERM stops the run as Ctrl-C does: every process cleaned up
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    info = {"machine": machine(), "versions": versions()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    _say(f"bench ({'quick' if args.quick else 'full'}): {', '.join(metrics)}; {sizes}")
    results: list[Result] = []
    async with _session(sizes, metrics) as session:
        for name in metrics:
            module = importlib.import_module(f"bench.{name}")
            m0 = time.monotonic()
            results += await module.run(session)
            _say(f"{name}: {time.monotonic() - m0:.1f} s")
    elapsed = time.monotonic() - t0
    doc = {**info, "results": [asdict(r) for r in results]}
    path = Path(args.out) if args.out else results_path(args.quick, started)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    text = table(results)
    print()
    print(text)
    print()
    print(
        f"{elapsed:.1f} s on {info['machine']['cpu_count']} CPUs (load average at the start "
        f"{load}, event loop {event_loop_name()}); results in {path}"
    )
    if not (args.quick or args.only or args.reps is not None or args.out):
        run = {
            "command": "make bench",
            "started": f"{started:%Y-%m-%d %H:%M} UTC",
            "host": socket.gethostname(),
            "load": load,
            "event_loop": event_loop_name(),
            "elapsed_s": elapsed,
        }
        write_results_md({**doc, "run": run, "sizes": asdict(sizes)}, text, path)
        print(f"updated {BENCH / 'RESULTS.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Motes benchmarks: Motes and its peers measured side by side, as ratios.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls per repetition")
    parser.add_argument("--only", nargs="+", choices=METRICS, help="run only these metrics")
    parser.add_argument("--reps", type=int, help="repetitions per contender (default 7, quick 5)")
    parser.add_argument("--out", help="write the results JSON here instead")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    try:
        run(_run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        _say("interrupted; every process the benchmark started has been stopped")
        raise SystemExit(130) from None
