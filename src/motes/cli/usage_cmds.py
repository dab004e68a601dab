"""``motes top`` and ``motes usage``: what the meter recorded, from the instances' totals.

Both read ``InstanceStatus.meter`` (``motes ps``); ``top`` takes two readings an interval
apart and shows rates over it, ``usage`` shows the totals since each live instance
started, grouped. The pure parts (``rates``, ``totals``) take the readings as values.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..client import Mesh
from ..wire.messages import LATENCY_BUCKETS, InstanceStatus, UsageReport
from .registry import arg, command
from .render import Table, View

__all__ = ["MoteRate", "history_statuses", "rates", "totals"]


@dataclass(frozen=True, slots=True)
class MoteRate:
    """One mote's calls over an interval, summed over its instances."""

    mote: str
    calls_per_s: float
    p50_ms: float | None
    cpu_pct: float
    """CPU seconds per second, in percent of one core."""
    watts: float
    method: str


def _p50(hist: dict[int, int]) -> float | None:
    n = sum(hist.values())
    if n == 0:
        return None
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if 2 * seen >= n:
            return float(2 ** ((bucket + 1) / LATENCY_BUCKETS) / 1000)  # upper bound, ms
    return None  # unreachable


def rates(
    before: Iterable[InstanceStatus], after: Iterable[InstanceStatus], seconds: float
) -> list[MoteRate]:
    """Per-mote rates between two readings ``seconds`` apart (instances in both only)."""
    old = {i.iid: i for i in before}
    acc: dict[str, dict[str, float]] = {}
    hists: dict[str, dict[int, int]] = {}
    methods: dict[str, str] = {}
    for new in after:
        prev = old.get(new.iid)
        if prev is None or new.meter is None or prev.meter is None:
            continue
        name = f"{new.app}.{new.mote}"
        a = acc.setdefault(name, {"calls": 0.0, "cpu": 0.0, "joules": 0.0})
        a["calls"] += new.served - prev.served
        a["cpu"] += (new.meter.cpu_user_s + new.meter.cpu_sys_s) - (
            prev.meter.cpu_user_s + prev.meter.cpu_sys_s
        )
        a["joules"] += new.meter.joules - prev.meter.joules
        h = hists.setdefault(name, {})
        for b, n in new.latency.items():
            d = n - prev.latency.get(b, 0)
            if d > 0:
                h[b] = h.get(b, 0) + d
        methods[name] = new.meter.method
    return [
        MoteRate(
            mote=name,
            calls_per_s=a["calls"] / seconds,
            p50_ms=_p50(hists[name]),
            cpu_pct=100 * a["cpu"] / seconds,
            watts=a["joules"] / seconds,
            method=methods[name],
        )
        for name, a in sorted(acc.items())
    ]


BY = ("mote", "app", "person", "node")


def totals(
    instances: Iterable[InstanceStatus], by: str, deployers: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """Totals since each instance started, grouped ``by`` mote, app, node or person (the
    id of who deployed the app's current version, from ``deployers``)."""
    people = deployers or {}
    groups: dict[str, dict[str, object]] = {}
    for i in instances:
        m = i.meter
        if m is None:
            continue
        key = {
            "mote": f"{i.app}.{i.mote}",
            "app": i.app,
            "node": i.node,
            "person": people.get(i.app, "?"),
        }[by]
        g = groups.setdefault(
            key,
            {by: key, "calls": 0, "failed": 0, "wall_s": 0.0, "cpu_user_s": 0.0,
             "cpu_sys_s": 0.0, "bytes_in": 0, "bytes_out": 0, "fuel": 0, "joules": 0.0,
             "methods": []},
        )  # fmt: skip
        for field, value in (
            ("calls", i.served),
            ("failed", i.failed),
            ("wall_s", m.wall_s),
            ("cpu_user_s", m.cpu_user_s),
            ("cpu_sys_s", m.cpu_sys_s),
            ("bytes_in", m.bytes_in),
            ("bytes_out", m.bytes_out),
            ("fuel", m.fuel),
            ("joules", m.joules),
        ):
            g[field] = g[field] + value  # type: ignore[operator]  # numbers by construction
        methods = g["methods"]
        assert isinstance(methods, list)
        if m.method not in methods:
            methods.append(m.method)
    return [groups[k] for k in sorted(groups)]


def history_statuses(reports: Iterable[UsageReport]) -> list[InstanceStatus]:
    """The history's rows as instance readings, so ``totals`` sums them the same way."""
    return [
        InstanceStatus(
            iid=f"{r.node}/{row.iid}/{r.start}",
            app=row.app,
            mote=row.mote,
            digest="",
            node=r.node,
            state="",
            served=row.calls,
            failed=row.failed,
            meter=row.meter,
        )
        for r in reports
        for row in r.rows
    ]


@command(
    "top",
    "per-mote calls/s, p50 latency, CPU and watts over an interval",
    arg("--interval", type=float, default=1.0, help="seconds between the two readings"),
    json=True,
)
async def top(mesh: Mesh, ns: argparse.Namespace) -> View:
    before = await mesh.ops.ps()
    await asyncio.sleep(ns.interval)
    found = rates(before, await mesh.ops.ps(), ns.interval)
    rows = [
        [
            r.mote,
            f"{r.calls_per_s:.1f}",
            "-" if r.p50_ms is None else f"{r.p50_ms:.2f}",
            f"{r.cpu_pct:.1f}",
            f"{r.watts:.2f}",
            r.method,
        ]
        for r in found
    ]
    headers = ["MOTE", "CALLS/S", "P50 MS", "CPU %", "WATTS", "METHOD"]
    return View(data=found, table=Table(headers, rows))


@command(
    "usage",
    "calls, CPU, bytes and joules: of live instances, or (--since) from the history",
    arg("--by", choices=BY, default="mote"),
    arg(
        "--since",
        type=float,
        default=None,
        metavar="SECONDS",
        help="from the usage history (stream MOTES_USAGE) over the last SECONDS instead",
    ),
    json=True,
)
async def usage(mesh: Mesh, ns: argparse.Namespace) -> View:
    people = await mesh.apps.deployers() if ns.by == "person" else None
    if ns.since is not None:
        reports = await mesh.ops.usage(time.time() - ns.since)
        found = totals(history_statuses(reports), ns.by, people)
    else:
        found = totals(await mesh.ops.ps(), ns.by, people)
    rows = [
        [
            str(g[ns.by]),
            str(g["calls"]),
            f"{g['cpu_user_s']:.3f}",
            f"{g['cpu_sys_s']:.3f}",
            str(g["bytes_in"]),
            str(g["bytes_out"]),
            f"{g['joules']:.3f}",
            ",".join(str(m) for m in g["methods"]),  # type: ignore[attr-defined]
        ]
        for g in found
    ]
    headers = [ns.by.upper(), "CALLS", "CPU USER S", "CPU SYS S", "IN B", "OUT B", "JOULES"]
    return View(data=found, table=Table([*headers, "METHOD"], rows))
