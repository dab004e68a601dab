"""The runner: sets up the contenders once, runs each metric, writes the results.

How a run goes:

1. The peers (Ray, Dask distributed, Tahoe-LAFS) are installed, pinned, in their own
   virtualenvs under ``bench/.peers/`` unless already there (``bench/peers.py``).
2. A local mesh (embedded nats-server on 127.0.0.1, one node process) starts in a
   temporary directory, a client connects and deploys ``bench/apps/echo.py``.
3. Contenders start: Motes calling the sync mote, Motes calling the async mote, Motes'
   CLI (``startup``), and the peers each metric compares against: the raw nats-py floor
   (a responder process on the same nats-server) and Ray and Dask, each a driver process
   in its own virtualenv and its own loopback-only network namespace
   (``bench/netns.py``, ``bench/drivers/``).
4. Each metric module (``call_rtt``, ``call_throughput``, ``map_throughput``,
   ``startup``) measures its contenders interleaved, one repetition each in turn
   (A B A B ...; call_rtt interleaves finer still, in rounds within a repetition), after
   one unrecorded warm-up each, and reports the median over repetitions. A row's ratio is
   motes ÷ peer of those medians, so it reads the same way as the goals in
   /work/shared/BENCHMARKS.md (lower is better for times and sizes, higher for rates).
   ``netdecides``, ``durable`` (a 3-node mesh; raw JetStream on its server), ``store``
   (a 10-node mesh beside a 10-node Tahoe-LAFS grid), ``map_heavy`` (a 3-node mesh),
   ``locality`` and ``energy`` (4-node meshes) start what they measure themselves. A
   metric that fails gives a row saying so (``note``) and the run goes on; so does a
   peer that fails.
5. Every peer process is stopped and its namespace swept (strays killed and reported),
   ``bench/results/<UTC date>-<host>.json`` is written (``...-quick.json`` for a quick
   run, which git ignores) and a table printed; a full run of every metric with the
   default settings also rewrites ``bench/RESULTS.md`` (keeping its hand-written notes).

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
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import motes
from motes.client import Mesh
from motes.config import LatticeConfig, Timing
from motes.identity import KeyKind, SigningKey
from motes.identity.jwt import Permissions
from motes.lattice.server import find_binary
from motes.node.localmesh import LocalMesh
from motes.testing import local_mesh
from motes.trust.keyring import write_creds

from . import peers as peer_envs
from .contenders import (
    Contender,
    MotesContender,
    MotesUpContender,
    PeerContender,
    PeerDriver,
    RawNatsContender,
)
from .netns import members

__all__ = ["FULL", "QUICK", "Result", "Session", "Sizes", "interleave", "main"]

T = TypeVar("T")

BENCH = Path(__file__).resolve().parent
APP = BENCH / "apps" / "echo.py"
RESULTS_DIR = BENCH / "results"
METRICS = (
    "call_rtt",
    "call_throughput",
    "map_throughput",
    "startup",
    "netdecides",
    "durable",
    "store",
    "locality",
    "energy",
    "auth_cost",
    "meter_cost",
    "sandbox_exec",
    "map_heavy",
    "placement",
    "wasm",
)
CALL_METRICS = ("call_rtt", "call_throughput", "map_throughput", "map_heavy")
"""The metrics whose peers are the long-running drivers ``_peers`` starts for the run."""

RAW = RawNatsContender.name
RAY = "ray"  # startup: ray.init(); its raylet's RSS
RAY_ACTOR = "ray actor"
RAY_TASKS = "ray tasks"
DASK = "dask"
TAHOE = "tahoe-lafs"  # store: a grid started by bench/store.py itself
ZFEC = "zfec encode"  # store: raw zfec in the harness's process, the ceiling for put
RAW_GET = "decode+decrypt+hash"  # store: a get's own CPU work in one process, its ceiling
RULE_OFF = "rule off"  # locality: the same job without the data-locality rule
POOL = "process pool"  # map_heavy: concurrent.futures.ProcessPoolExecutor, 3 workers
SPREAD = "spread"  # energy: the same job placed without the energy rule

# Which peers each metric compares against, by contender name.
PEERS: dict[str, list[str]] = {
    "call_rtt": [RAW, RAY_ACTOR, DASK],
    "call_throughput": [RAW, RAY_ACTOR, RAY_TASKS, DASK],
    "map_throughput": [RAY_TASKS, DASK],
    "map_heavy": [RAY_TASKS],  # and the process pool, started by bench/map_heavy.py itself
    "startup": [RAY, DASK],
    "store": [TAHOE, ZFEC, RAW_GET],
}

# Peers installed for every run (their versions are recorded even when not run).
INSTALL = ("ray", "dask", "tahoe")


@dataclass(frozen=True, slots=True)
class Goal:
    op: str  # "<=" or ">="
    x: float
    absolute: bool = False
    """Compares Motes' own value (in the row's unit), not the ratio to the peer."""


# Goals from BENCHMARKS.md, shown in the table (never asserted). Keyed by (row metric,
# peer name); an absolute goal is keyed by (row metric, None) and shown on its first row.
GOALS: dict[tuple[str, str | None], Goal] = {
    ("call_rtt_us", RAW): Goal("<=", 1.3),
    ("call_rtt_us", RAY_ACTOR): Goal("<=", 0.6),
    ("call_throughput", RAY_ACTOR): Goal(">=", 3),
    ("map_throughput", RAY_TASKS): Goal(">=", 100),
    ("map_heavy_nap_s", POOL): Goal("<=", 1.3),
    ("map_heavy_burn_s", POOL): Goal("<=", 1.2),
    ("startup_s", None): Goal("<=", 1, absolute=True),
    ("node_idle_rss_MB", None): Goal("<=", 50, absolute=True),
    ("auth_call_rtt_us", "auth off"): Goal("<=", 1.05),
    ("meter_call_rtt_us", "meter off"): Goal("<=", 1.03),
    ("auth_call_throughput", "auth off"): Goal(">=", 0.95),
    ("store_put_MiBps", ZFEC): Goal(">=", 0.5),
    ("store_get_MiBps", TAHOE): Goal(">=", 10),
    ("store_get_MiBps", RAW_GET): Goal(">=", 0.5),
    ("energy_saved", SPREAD): Goal("<=", 0.8),  # >= 20 % fewer joules than spread alone
    ("placement_ms", None): Goal("<=", 1000, absolute=True),
    ("replacement_ms", None): Goal("<=", 500, absolute=True),
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
    idle_s: float
    """startup: seconds a freshly started system idles before its RSS is read."""
    peer_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """metric -> peer -> calls (items) per repetition, for a peer too slow for the full
    count to fit the run (its rate, or its percentiles, over fewer calls)."""
    skip: tuple[str, ...] = ()
    """``metric:peer`` pairs left out (quick runs leave out the slowest)."""
    metrics: tuple[str, ...] = METRICS
    """The metrics run unless ``--only`` says otherwise."""
    store_mib: int = 256
    """store: the file put and got (MiB)."""
    store_reps: int = 3
    """store: recorded put + get pairs per contender (after a warm-up of ``store_warmup_mib``)."""
    store_warmup_mib: int = 8
    locality_mib: int = 64
    """locality: the file the job reads (MiB)."""
    locality_calls: int = 3
    """locality: calls to the job, with the rule and without (the first reads from the
    nodes, later ones find the data in the node's cache)."""
    energy_calls: int = 100
    """energy: calls per repetition, with the energy rule and with spread alone."""
    energy_ms: float = 20.0
    """energy: CPU milliseconds each call burns."""
    placement_nodes: int = 1000
    """placement: simulated nodes; ``placement_apps`` apps of 10 motes are placed on them."""
    placement_apps: int = 1000

    def count(self, metric: str, who: str, default: int) -> int:
        return self.peer_counts.get(metric, {}).get(who, default)


FULL = Sizes(
    reps=7,
    rtt_calls=5000,
    rtt_round=500,
    tput_calls=10_000,
    window=256,
    map_items=100_000,
    idle_s=3.0,
    # Ray tasks and Dask run ~1k and ~200 calls/s here: their full counts would take over
    # an hour at 7 repetitions, so they make fewer calls; their rates are what is compared.
    peer_counts={
        "call_rtt": {DASK: 500},
        "call_throughput": {DASK: 1000},
        "map_throughput": {RAY_TASKS: 20_000, DASK: 2000},
    },
)
QUICK = Sizes(
    reps=5,
    rtt_calls=1000,
    rtt_round=500,
    tput_calls=2000,
    window=256,
    map_items=100_000,
    idle_s=2.0,
    peer_counts={
        "call_rtt": {DASK: 60},
        "call_throughput": {RAY_ACTOR: 1000, RAY_TASKS: 500, DASK: 100},
    },
    skip=(f"map_throughput:{RAY_TASKS}", f"map_throughput:{DASK}"),
    # startup, netdecides, locality: full runs only; store at a quarter of the size;
    # durable at its full size (1000 calls a repetition: seconds)
    metrics=(
        "call_rtt",
        "call_throughput",
        "map_throughput",
        "durable",
        "store",
        "auth_cost",
        "meter_cost",
        "placement",
    ),
    store_mib=64,
    store_reps=2,
    energy_calls=40,
)


@dataclass(slots=True)
class Result:
    metric: str
    unit: str
    motes: float | None
    """None when Motes' side failed (``note`` says why)."""
    peer: float | None
    peer_name: str | None
    ratio: float | None
    reps: int
    note: str = ""
    """Set when something failed (a peer, Motes' side, the metric): what, in one line."""


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
    motes: dict[str, Contender]  # "sync" / "async": which echo mote; "up": the CLI
    peers: dict[str, Contender] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    """metric -> what it wants recorded beside its rows (parameters, raw samples, notes);
    written to the results JSON as ``details``."""

    def peers_for(self, metric: str) -> list[Contender]:
        return [self.peers[n] for n in wanted_peers(self.sizes, metric) if n in self.peers]


def wanted_peers(sizes: Sizes, metric: str) -> list[str]:
    """The peers ``metric`` compares against in a run of ``sizes``."""
    if f"{metric}:" in sizes.skip:
        return []
    return [n for n in PEERS.get(metric, []) if f"{metric}:{n}" not in sizes.skip]


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
            async with mesh.client() as client:
                await client.deploy(APP)
                if await client.call("bench.echo", b"x") != b"x":
                    raise RuntimeError("bench.echo did not echo")
                _say(f"mesh up and app deployed in {time.monotonic() - t0:.1f} s ({mesh.url})")
                session = Session(
                    sizes,
                    {
                        "sync": MotesContender(client, "bench.echo", "motes"),
                        "async": MotesContender(client, "bench.echo_async", "motes async"),
                        "up": MotesUpContender(),
                    },
                )
                floor = _floor_lattice(mesh, Path(tmp))
                async with _peers(sizes, metrics, floor) as peers:
                    session.peers = peers
                    yield session
                # The echo motes are pinned to one instance each; say so if that changed.
                _say(f"instances at the end: {await _instances(client)}")


def _floor_lattice(mesh: LocalMesh, folder: Path) -> LatticeConfig:
    """The raw nats-py floor's own credential, minted by the mesh like every other: it
    may serve and call only its echo subject, with replies to its own inbox. (No member's
    credential lets it serve a subject of its choosing.)"""
    if mesh.trust is None:
        return mesh.lattice
    key = SigningKey.generate(KeyKind.PERSON)
    inbox = "_I.benchfloor"
    subject = RawNatsContender.subject
    perms = Permissions(
        pub_allow=(subject,), sub_allow=(subject, f"{inbox}.>"), responses=1, response_ttl_s=60
    )
    jwt = mesh.trust.keys.user_jwt(key.public, name="bench floor", permissions=perms, ttl_s=None)
    creds = write_creds(folder / "floor.creds", jwt, key)
    return LatticeConfig(servers=mesh.servers, credentials=str(creds), inbox_prefix=inbox)


async def _instances(client: Mesh) -> str:
    counts: dict[str, int] = {}
    for p in await client.ops.ps():
        key = f"{p.app}.{p.mote} {p.state}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())) or "none"


@contextlib.asynccontextmanager
async def _peers(
    sizes: Sizes, metrics: Sequence[str], lattice: LatticeConfig
) -> AsyncIterator[dict[str, Contender]]:
    """Start the peers the metrics want; stop them all, however the run ends.

    A peer's long-running driver starts only if a call metric wants it; ``startup``
    needs none (it starts the peer afresh each time).
    """
    calls = {n for m in metrics if m in CALL_METRICS for n in wanted_peers(sizes, m)}
    starting = {n for m in metrics if m == "startup" for n in wanted_peers(sizes, m)}
    started: dict[str, Contender] = {}
    drivers: list[PeerDriver] = []

    def driver(peer: str) -> PeerDriver:
        for d in drivers:
            if d.peer == peer:
                return d
        d = PeerDriver(peer)
        drivers.append(d)
        return d

    ray = driver("ray") if calls & {RAY_ACTOR, RAY_TASKS} else None
    dask = driver("dask") if DASK in calls else None
    if RAY_ACTOR in calls:
        started[RAY_ACTOR] = PeerContender(RAY_ACTOR, ray, "actor")
    if RAY_TASKS in calls:
        started[RAY_TASKS] = PeerContender(RAY_TASKS, ray, "tasks")
    if RAY in starting:
        started[RAY] = PeerContender(RAY, None, startup_peer="ray")
    if DASK in calls or DASK in starting:
        started[DASK] = PeerContender(
            DASK, dask, "submit", startup_peer="dask" if DASK in starting else None
        )
    raw = RawNatsContender(lattice) if RAW in calls else None
    strays: list[str] = []
    try:
        t0 = time.monotonic()
        for outcome in await asyncio.gather(*(d.start() for d in drivers), return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        for d in drivers:
            _say(f"peer {d.peer} {d.info.get('version')} ready in its own network namespace")
        if raw is not None:
            await raw.start()
            started[RAW] = raw
        if drivers or raw is not None:
            _say(f"peers up in {time.monotonic() - t0:.1f} s")
        yield started
    finally:
        if raw is not None:
            await raw.stop()
        for found in await asyncio.gather(*(d.stop() for d in drivers)):
            strays += found
        leftover = [pid for d in drivers if d.driver.netns for pid in members(d.driver.netns)]
        if drivers:
            _say(
                "peers stopped: "
                + (f"{len(strays)} stray process(es) killed" if strays else "no stray process")
                + (f"; STILL RUNNING: {leftover}" if leftover else "")
            )


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
    out = {
        "motes": motes.__version__,
        "nats-py": dist("nats-py"),
        "nats-server": server,
        "msgspec": dist("msgspec"),
        "python": platform.python_version(),
    }
    for peer in INSTALL:
        out.update(peer_envs.versions(peer))
    return out


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


def goal_of(r: Result) -> tuple[Goal, bool] | None:
    """The goal a row is judged by, and whether it is met (None: no goal on this row)."""
    goal = GOALS.get((r.metric, r.peer_name))
    if goal is None:
        goal = GOALS.get((r.metric, None))
    if goal is None:
        return None
    value = r.motes if goal.absolute else r.ratio
    if value is None:
        return None
    return goal, value <= goal.x if goal.op == "<=" else value >= goal.x


def _goal(r: Result) -> str:
    judged = goal_of(r)
    if judged is None:
        return ""
    goal, met = judged
    what = f"motes {goal.op} {goal.x:g} {r.unit}" if goal.absolute else f"{goal.op} {goal.x:g}"
    return f"{what} ({'met' if met else 'missed'})"


def table(results: Sequence[Result]) -> str:
    head = ("metric", "unit", "motes", "peer", "peer value", "ratio", "goal", "reps")
    rows = []
    shown: set[str] = set()  # an absolute goal is shown on its metric's first row only
    for r in results:
        judged = goal_of(r)
        goal = _goal(r)
        if judged is not None and judged[0].absolute:
            if r.metric in shown:
                goal = ""
            shown.add(r.metric)
        if r.note:  # in full in the results JSON
            note = r.note if len(r.note) <= 80 else r.note[:77] + "..."
            goal = f"{goal}; {note}" if goal else note
        rows.append(
            (
                r.metric,
                r.unit,
                _num(r.motes),
                r.peer_name or "-",
                _num(r.peer),
                "-" if r.ratio is None else f"{r.ratio:.2f}",
                goal,
                str(r.reps),
            )
        )
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


def results_path(quick: bool, now: dt.datetime, only: Sequence[str] = ()) -> Path:
    """``<date>-<host>.json``; ``-quick`` for a quick run; a run of some metrics only
    (``--only``) adds their names, so it never overwrites the day's full run."""
    host = socket.gethostname().split(".")[0] or "host"
    suffix = "".join(f"-{m}" for m in only) + ("-quick" if quick else "")
    return RESULTS_DIR / f"{now:%Y-%m-%d}-{host}{suffix}.json"


NOTES_MARK = "<!-- Below this line: written by hand, kept when a full run rewrites the file. -->"

GOAL_TEXT = {
    ("call_rtt_us", RAW): "call_rtt p50 <= 1.3 x raw nats-py request/reply",
    ("call_rtt_us", RAY_ACTOR): "call_rtt p50 <= 0.6 x Ray actor call",
    ("call_throughput", RAY_ACTOR): "call_throughput >= 3 x Ray actor calls",
    ("map_throughput", RAY_TASKS): "map_throughput >= 100 x Ray tasks",
    ("map_heavy_nap_s", POOL): "map_heavy (20 ms asleep) <= 1.3 x the process pool",
    ("map_heavy_burn_s", POOL): "map_heavy (20 ms of CPU) <= 1.2 x the process pool",
    ("startup_s", None): "`motes up` <= 1 s",
    ("node_idle_rss_MB", None): "idle node (agent + store) <= 50 MB RSS",
    ("store_put_MiBps", ZFEC): "store put >= 0.5 x raw zfec encode",
    ("store_get_MiBps", TAHOE): "store get >= 10 x Tahoe-LAFS",
    ("store_get_MiBps", RAW_GET): "store get >= 0.5 x raw decode + decrypt + hash",
    ("placement_ms", None): "placement of 10k motes on 1k nodes <= 1 s",
    ("replacement_ms", None): "re-placement after 100 of them are lost <= 0.5 s",
}


def goals_table(results: Sequence[Result]) -> str:
    lines = ["| goal | motes | peer | ratio | verdict |", "|---|---:|---|---:|---|"]
    seen: set[tuple[str, str | None]] = set()
    for r in results:
        judged = goal_of(r)
        if judged is None:
            continue
        goal, met = judged
        key = (r.metric, None if goal.absolute else r.peer_name)
        if key in seen:
            continue
        seen.add(key)
        peer = "-" if goal.absolute else f"{r.peer_name} {_num(r.peer)}"
        ratio = "-" if goal.absolute or r.ratio is None else f"{r.ratio:.2f}"
        lines.append(
            f"| {GOAL_TEXT.get(key, key[0])} | {_num(r.motes)} {r.unit} | {peer} | {ratio} "
            f"| {'met' if met else '**missed**'} |"
        )
    return "\n".join(lines)


def _counts(z: dict[str, Any], metric: str) -> str:
    capped = z["peer_counts"].get(metric, {})
    return "; ".join(f"{peer}: {n:,}" for peer, n in capped.items())


def _store_text(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    t = d.get("tahoe") or {}
    m = d.get("motes") or {}
    z_rates = (d.get("zfec") or {}).get("samples") or []
    return f"""- `store_put_MiBps`, `store_get_MiBps`: one file of {d["size_MiB"]:g} MiB of random
  bytes, erasure-coded k={d["k"]} of n={d["n"]} (happy {d["happy"]}) over {d["nodes"]} local
  storage nodes by each store; {d["reps"]} put + get pairs each, in turn (Motes, Tahoe-LAFS,
  then one zfec pass), after an unrecorded warm-up put + get of {d["warmup_MiB"]} MiB; the
  median put and get rate (file MiB / s). Motes: a mesh of {m.get("nodes")} nodes
  (`local_mesh`, default `Timing`), the client in the benchmark's process with no cache,
  `mesh.store.put(path, policy=Policy.parse("k=3,n=10,happy=7"))` and
  `mesh.store.get(cap, path)`; chunks of {m.get("chunk", 0) // 2**20} MiB, shares fsynced
  on the nodes. Tahoe-LAFS {t.get("version")}: introducer, {t.get("nodes")} storage nodes
  and a client node ({t.get("storage_protocol")}), in its own namespace; `PUT /uri` with
  the file streamed, `GET /uri/CAP` streamed to a file. Both stores dedup convergently,
  so before each put every node's shares are deleted (not timed); every download is
  checked byte for byte (not timed). `zfec encode`: raw zfec in the harness's process,
  1 MiB chunks split into k blocks and the n-k check blocks computed, one pass over the
  file's size per repetition ({len(z_rates)} passes): the ceiling for put, which also
  encrypts, hashes and sends every share. `decode+decrypt+hash`: a get's own CPU work in
  the harness's process, one thread, on shares made beforehand (not timed): per 1 MiB
  chunk, blake3 of each of the k primary shares, zfec's decode of them, blake3 of the
  ciphertext, AES-256-GCM decryption; one pass per repetition: the ceiling for get,
  which also moves every share over the lattice.
"""


def _mib(n: int | float | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f} MiB"


def _locality_text(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    lines = [
        f"""- `locality_*`: a 4-node mesh (default `Timing`); a {d["size_MiB"]:g} MiB file put
  with `Policy.parse("{d["policy"]}")`, so its only share holder is {d["holder"]} (the one
  node labelled zone=data). A job mote reads it by capability (`async with
  motes.connect() as mesh`, `await mesh.store.open(cap)`, every chunk) and counts what
  its client fetched: `locality_bytes` is `mesh.store.net.bytes_in`, share bytes fetched
  from store services over the lattice (a cache hit adds nothing);
  `locality_remote_bytes` is the part fetched from a node other than the one the job ran
  on. `job_on.scan` declares `reads=[cap]` (the data-locality rule applies),
  `job_off.scan` is the same job without it (peer column `rule off`); each is called
  {d["calls"]} times: the first call reads from the nodes, later ones
  (`locality_bytes_later`, median) find the blobs in that node's cache. Each job
  `max=1`; the nodes' caches emptied between the two. Ratio: on ÷ off."""
    ]
    for key in ("on", "off"):
        j = d.get(key) or {}
        calls = ", ".join(
            f"{_mib(c.get('bytes_in'))} ({_mib(c.get('remote_bytes'))} from other nodes)"
            for c in j.get("calls", [])
        )
        lines.append(
            f"  - rule {key}: ran on {j.get('ran_on')}; fetched per call: {calls or '-'};"
            f" `motes why` there: {j.get('verdict_here') or '-'}"
        )
    return "\n".join(lines) + "\n"


def _energy_text(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    jobs = d["jobs"]
    return f"""- `energy_saved`: a 4-node mesh, power profiles set in the nodes' config (watts per
  core, idle / full load): {d["power_w_per_core"]}. The same batch mote (`min=max=
  {d["instances"]}`, {d["ms"]:g} ms of CPU per call) as `job_on` (the energy rule, placed
  {jobs["on"]["placed"]}) and `job_off` (`energy=False`: spread alone, placed
  {jobs["off"]["placed"]}); {d["calls"]} calls per repetition, {d["instances"]} in flight,
  interleaved; joules are the growth of the instances' meter totals (CPU seconds times
  the node's full-load watts per core): estimates under simulated profiles on one
  machine, not wattmeter readings. Ratio: on ÷ off.
"""


def write_results_md(doc: dict[str, Any], text: str, json_path: Path) -> None:
    m, v, z, run = doc["machine"], doc["versions"], doc["sizes"], doc["run"]
    results = [Result(**r) for r in doc["results"]]
    path = BENCH / "RESULTS.md"
    try:
        old = path.read_text()
    except OSError:
        old = ""
    notes = old.split(NOTES_MARK, 1)[1] if NOTES_MARK in old else "\n"
    body = f"""# Benchmark results

The latest full run, written by the run itself:

```
{run["command"]}
```

- Machine: `{run["host"]}`, {m["cpu_count"]} CPUs ({m["cpu_model"]}), {m["platform"]}.
- Started {run["started"]}, load average {run["load"]}; took {run["elapsed_s"]:.0f} s.
- Software: {m["python"]} on {run["event_loop"]}; motes {v["motes"]}, \
nats-py {v["nats-py"]}, nats-server {v["nats-server"]}, msgspec {v["msgspec"]}.
- Peers (pinned in `bench/peers.py`, installed under `bench/.peers/`, each run inside
  `unshare --net` with only loopback up): ray {v.get("ray")}, dask {v.get("dask")}, \
distributed {v.get("distributed")}, tahoe-lafs {v.get("tahoe-lafs")}.
- Raw results: `{json_path.relative_to(BENCH.parent)}`.

{text}

## Goals

{goals_table(results)}

## How to read it

- Each value is the median over `reps` repetitions. Motes and its peers ran in turn on
  the same machine (A B A B ...), each after one unrecorded warm-up. ratio = motes ÷ peer:
  below 1 is better for times (us, s) and sizes (MB), above 1 for rates (/s). Absolute
  values move with the machine's load; the ratios are the figures to compare.
- `call_rtt_us`, `call_rtt_us_p99`: one call at a time to the sync mote `bench.echo`,
  payload `b"x"`; per repetition {z["rtt_calls"]:,} calls, in rounds of {z["rtt_round"]}
  interleaved with the peers' (fewer for slow peers: {_counts(z, "call_rtt") or "none"}).
  The p50 (p99) of each repetition, then the median of those. `call_rtt_async_us*`: the
  same to the async mote `bench.echo_async`. Peers: nats-py `request()` to a responder
  process that answers with the payload (the floor: the ratio is what Motes adds on top
  of NATS itself); `ray.get(actor.echo.remote(b"x"))` to one Ray actor;
  `client.submit(echo, b"x", pure=False).result()` on a Dask LocalCluster.
- `call_throughput`: per repetition {z["tput_calls"]:,} calls from one client; Motes and
  raw nats-py keep {z["window"]} in flight at once (closed loop), to `bench.echo` (a sync
  mote serves one call at a time per instance) or, in `call_throughput_async`, to
  `bench.echo_async` (up to 64 at once). Ray and Dask use their own idiom: every call
  submitted, then one wait for them all — `ray.get([actor.echo.remote(b"x") ...])` to one
  (sync) actor (`ray actor`), the same as tasks (`ray tasks`, run by the cluster's worker
  processes), `client.gather([client.submit(...) ...])` (`dask`). Fewer calls for slow
  peers: {_counts(z, "call_throughput") or "none"}.
- `map_throughput`: `mesh.map("bench.echo", range({z["map_items"]}))` (one instance of
  a sync mote), every result checked; peers `ray.get([echo.remote(x) for x in ...])` and
  `client.gather(client.map(echo, range(n), pure=False))`, same items, checked (fewer for
  slow peers: {_counts(z, "map_throughput") or "none"}).
- `startup_s`: `.venv/bin/motes --home TMP up --nodes 3 --detach`, wall time until the
  command returns (every node is ready, one leads, and the CLI has listed them; this
  includes starting the Python interpreters and their imports); then `motes down`.
  Peers, in a fresh process and namespace each time, after their import:
  `ray.init(num_cpus=2, include_dashboard=False)` returning; Dask
  `LocalCluster(n_workers=1, threads_per_worker=1)` + `Client` until the worker is
  connected.
- `node_idle_rss_MB`: RSS (VmRSS, MiB) {z["idle_s"]:g} s after start, in the same runs as
  `startup_s`: the first node, its `motes.node` agent process (`mesh.json`
  `nodes[0].pid`, no app deployed, its store service a task inside it) plus any store
  service process of that node, not its warm worker; Ray's raylet; Dask's one worker
  process.
- One node process, and each echo mote pinned to one instance (`max=1`: one worker
  process, as Ray's side is one actor); Ray has 2 CPUs (`num_cpus=2`) and Dask
  2 worker processes of one thread: nats-server, the node, its workers, the responder,
  the peers and the benchmark client all share the machine's CPUs.
{_store_text(doc.get("details", {}).get("store"))}\
{_locality_text(doc.get("details", {}).get("locality"))}\
{_energy_text(doc.get("details", {}).get("energy"))}
{NOTES_MARK}"""
    path.write_text(body + notes)


# --- main --------------------------------------------------------------------------------


async def _run(args: argparse.Namespace) -> None:
    sizes = QUICK if args.quick else FULL
    if args.reps is not None:
        sizes = dataclasses.replace(sizes, reps=args.reps)
    if sizes.reps < 1:
        raise SystemExit("--reps must be at least 1")
    metrics = args.only or list(sizes.metrics)
    task = asyncio.current_task()
    if task is not None:  # SIGTERM stops the run as Ctrl-C does: every process cleaned up
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    for peer in INSTALL:  # first time only: later runs find them installed (a stamp file)
        await asyncio.to_thread(peer_envs.ensure, peer, _say)
    info = {"machine": machine(), "versions": versions()}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    _say(f"bench ({'quick' if args.quick else 'full'}): {', '.join(metrics)}; {sizes}")
    results: list[Result] = []
    async with _session(sizes, metrics) as session:
        for name in metrics:
            m0 = time.monotonic()
            try:
                module = importlib.import_module(f"bench.{name}")
                results += await module.run(session)
            except Exception as exc:  # one metric failing does not lose the others
                _say(f"{name} FAILED:\n{''.join(traceback.format_exception(exc)).rstrip()}")
                note = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
                results.append(Result(name, "-", None, None, None, None, 0, note))
            _say(f"{name}: {time.monotonic() - m0:.1f} s")
        details = session.details
    elapsed = time.monotonic() - t0
    doc = {
        **info,
        "results": [asdict(r) for r in results],
        "sizes": asdict(sizes),
        "details": details,
    }
    only = args.only or ()
    path = Path(args.out) if args.out else results_path(args.quick, started, only)
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
        write_results_md({**doc, "run": run}, text, path)
        print(f"updated {BENCH / 'RESULTS.md'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Motes benchmarks: Motes and its peers measured side by side, as ratios.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer calls per repetition, the slowest peer measurements left out",
    )
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
