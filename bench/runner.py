"""The runner: sets up the contenders once, runs each metric, writes the results.

How a run goes:

1. A local mesh (embedded nats-server on 127.0.0.1, one node process) starts in a
   temporary directory, a client connects and deploys ``bench/apps/echo.py``.
2. Contenders start: Motes calling the sync mote, Motes calling the async mote, and the
   peers each metric compares against (for now the raw nats-py floor, a responder process
   on the same nats-server).
3. Each metric module (``call_rtt``, ``call_throughput``, ``map_throughput``) measures its
   contenders interleaved, one repetition each in turn (A B A B ...), after one
   unrecorded warm-up repetition each, and reports the median over repetitions. A row's
   ratio is motes ÷ peer of those medians, so it reads the same way as the goals in
   /work/shared/BENCHMARKS.md (lower is better for times, higher for rates).
4. ``bench/results/<UTC date>-<host>.json`` is written and a table printed; a full run of
   every metric also rewrites ``bench/RESULTS.md``.

Adding a peer: write a ``Contender`` (see ``bench/contenders.py``), start it in
``_peers`` and list its name under the metrics it takes part in (``PEERS``). Every metric
then measures it side by side with Motes, one row per (metric, peer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib
import json
import os
import platform
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
    rtt_calls: int
    tput_calls: int
    window: int
    map_items: int


FULL = Sizes(reps=7, rtt_calls=5000, tput_calls=10_000, window=256, map_items=100_000)
QUICK = Sizes(reps=5, rtt_calls=2000, tput_calls=3000, window=256, map_items=100_000)


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
) -> dict[str, list[T]]:
    """``reps`` repetitions of ``measure`` per contender, in turn (A B A B ...).

    Each contender first runs one unrecorded warm-up repetition; one that raises
    ``NotImplementedError`` there is left out.
    """
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
        parts = []
        for c in active:
            gc.collect()
            value = await measure(c)
            samples[c.name].append(value)
            parts.append(f"{c.name} {show(value)}")
        _say(f"  {label} {rep}/{reps}: " + ", ".join(parts))
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


def write_results_md(
    doc: dict[str, Any], text: str, command: str, elapsed: float, json_path: Path
) -> None:
    m, v = doc["machine"], doc["versions"]
    body = f"""# Benchmark results

Latest full run, written by the run itself. Command:

```
{command}
```

Run {doc["started"]} on `{doc["host"]}`: {m["cpu_count"]} CPUs ({m["cpu_model"]}),
{m["platform"]}, {m["python"]}, event loop {doc["event_loop"]}; took {elapsed:.0f} s.
Versions: motes {v["motes"]}, nats-py {v["nats-py"]}, nats-server {v["nats-server"]},
msgspec {v["msgspec"]}. Raw results: `{json_path.relative_to(BENCH.parent)}`.

{text}

How to read it:
- Every value is the median over `reps` repetitions; in each repetition Motes and its
  peers ran in turn on the same box (A B A B ...), after one unrecorded warm-up each.
  ratio = motes ÷ peer: below 1 is better for times (us), above 1 for rates (/s).
- `call_rtt_us` / `_p99`: one call at a time, {doc["sizes"]["rtt_calls"]} calls per
  repetition, payload `b"x"`; the p50 (p99) of each repetition, then the median of those.
  `motes` calls the sync mote `bench.echo`; `call_rtt_async_us` calls
  `bench.echo_async`. The peer is nats-py `request()` to a responder process that
  answers with the payload (the floor: what Motes adds is everything above it).
- `call_throughput`: {doc["sizes"]["tput_calls"]} calls, {doc["sizes"]["window"]} in
  flight at once from one client. A sync mote serves one call at a time per instance
  (its default concurrency); the async mote serves up to 64.
- `map_throughput`: `mesh.map("bench.echo", range({doc["sizes"]["map_items"]}))` (no
  peer yet).
- One node process, so each mote has one instance; nats-server, node, workers, responder
  and this client all share the machine's CPUs.
"""
    (BENCH / "RESULTS.md").write_text(body)


# --- main --------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> None:
    sizes = QUICK if args.quick else FULL
    if args.reps:
        sizes = Sizes(args.reps, sizes.rtt_calls, sizes.tput_calls, sizes.window, sizes.map_items)
    if sizes.reps < 1:
        raise SystemExit("--reps must be at least 1")
    metrics = args.only or list(METRICS)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    info = {"machine": machine(), "versions": versions()}
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
    print(f"{elapsed:.1f} s on {info['machine']['cpu_count']} CPUs; results in {path}")
    if not args.quick and not args.only and not args.reps and not args.out:
        extra = {
            "started": f"{started:%Y-%m-%d %H:%M} UTC",
            "host": socket.gethostname(),
            "event_loop": event_loop_name(),
            "sizes": asdict(sizes),
        }
        write_results_md({**doc, **extra}, text, "make bench", elapsed, path)
        print(f"updated {BENCH / 'RESULTS.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per repetition")
    parser.add_argument("--only", nargs="+", choices=METRICS, help="run only these metrics")
    parser.add_argument("--reps", type=int, help="repetitions per contender (default 7, quick 5)")
    parser.add_argument("--out", help="write the results JSON here instead")
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(_run(args))
    else:
        uvloop.run(_run(args))
