"""The hub's picture as the JSON the page (and any other front end) reads.

Lists are paged (``offset``, ``limit``, at most ``MAX_LIMIT`` rows) and filtered
(``q``); past ``SUMMARY_ROWS`` rows a list also carries histograms, so a large mesh is
shown as distributions with a page of rows, not as thousands of rows.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import msgspec

from ._http import HttpError
from .hub import Hub, InstView, merge, percentile, rates
from .sources import Sources

__all__ = ["MAX_LIMIT", "SUMMARY_ROWS", "motes", "nodes", "page", "placements", "queues", "store"]

MAX_LIMIT = 500
SUMMARY_ROWS = 200


def page(rows: list[dict[str, Any]], query: dict[str, str], default: int = 100) -> dict[str, Any]:
    """``{"total", "offset", "limit", "items"}`` of the rows matching ``q``."""
    try:
        offset = max(0, int(query.get("offset", "0")))
        limit = min(MAX_LIMIT, max(1, int(query.get("limit", str(default)))))
    except ValueError:
        raise HttpError(400, "offset and limit must be whole numbers", "bad_query") from None
    needle = query.get("q", "").strip().lower()
    if needle:
        rows = [r for r in rows if needle in r.get("search", "")]
    return {
        "total": len(rows),
        "offset": offset,
        "limit": limit,
        "items": rows[offset : offset + limit],
    }


def _histogram(values: list[float], edges: list[float]) -> list[dict[str, Any]]:
    counts = [0] * (len(edges) + 1)
    for v in values:
        counts[next((i for i, e in enumerate(edges) if v < e), len(edges))] += 1
    labels = [
        f"< {edges[0]:g}",
        *(f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)),
        f">= {edges[-1]:g}",
    ]
    return [{"label": label, "count": n} for label, n in zip(labels, counts, strict=True)]


def nodes(hub: Hub, query: dict[str, str]) -> dict[str, Any]:
    per_node = Counter(i.node for i in hub.instances.values() if i.state not in ("lost", "left"))
    motes_on: dict[str, set[str]] = {}
    for inst in hub.instances.values():
        motes_on.setdefault(inst.node, set()).add(f"{inst.app}.{inst.mote}")
    rows: list[dict[str, Any]] = []
    for nid, view in sorted(hub.nodes.items(), key=lambda kv: kv[1].record.name):
        rec, inv = view.record, view.record.inventory
        rows.append(
            {
                "id": nid,
                "name": rec.name,
                "host": rec.host,
                "pid": rec.pid,
                "machine": f"{inv.arch} {inv.os}",
                "cpus": inv.cpus,
                "memory_mb": inv.memory_mb,
                "gpus": inv.gpus,
                "state": view.state,
                "since": view.since,
                "leader": view.leader,
                "cpu_load": view.load.cpu_load,
                "inflight": view.load.inflight,
                "instances": per_node.get(nid, 0),
                "motes": sorted(motes_on.get(nid, set())),
                "on_battery": view.power.on_battery,
                "battery_pct": view.power.battery_pct,
                "labels": rec.labels,
                "version": rec.version,
                "search": f"{rec.name} {nid} {rec.host} {view.state}".lower(),
            }
        )
    out = page(rows, query)
    states = Counter(r["state"] for r in rows)
    out["states"] = dict(sorted(states.items()))
    if len(rows) > SUMMARY_ROWS:
        out["histograms"] = {
            "cpu_load": _histogram(
                [r["cpu_load"] / max(1, r["cpus"]) for r in rows], [0.25, 0.5, 0.75, 1.0]
            ),
            "instances": _histogram([float(r["instances"]) for r in rows], [1, 2, 4, 8, 16]),
        }
    return out


def _instance(hub: Hub, inst: InstView, now: float) -> dict[str, Any]:
    r = rates(inst, now)
    hist = r.latency or r.since_start
    return {
        "iid": inst.iid,
        "mote": f"{inst.app}.{inst.mote}",
        "node": inst.node,
        "node_name": hub.name_of(inst.node),
        "state": inst.state,
        "version": inst.digest[7:19],
        "pid": inst.pid,
        "calls_s": round(r.calls_s, 2),
        "errors_s": round(r.errors_s, 2),
        "served": inst.served,
        "failed": inst.failed,
        "inflight": inst.inflight,
        "queued": inst.queued,
        "restarts": inst.restarts,
        "detail": inst.detail,
        "p50_ms": percentile(hist, 50),
        "p99_ms": percentile(hist, 99),
        "latency_window": "10 s" if r.latency else "since start",
        "cause": inst.cause,
    }


def motes(hub: Hub, query: dict[str, str]) -> dict[str, Any]:
    now = time.monotonic()
    by_mote: dict[str, list[InstView]] = {}
    for inst in hub.instances.values():
        by_mote.setdefault(f"{inst.app}.{inst.mote}", []).append(inst)
    rows = []
    for app in sorted(hub.apps.values(), key=lambda a: a.name):
        for spec in app.motes:
            name = f"{app.name}.{spec.name}"
            insts = sorted(by_mote.get(name, []), key=lambda i: (hub.name_of(i.node), i.iid))
            all_rates = [rates(i, now) for i in insts]
            window = merge(r.latency for r in all_rates)
            hist = window or merge(r.since_start for r in all_rates)
            why = hub.why.get(name)
            rows.append(
                {
                    "mote": name,
                    "app": app.name,
                    "kind": spec.kind,
                    "min": spec.min,
                    "max": spec.max,
                    "version": app.digest[7:19],
                    "versions": sorted({i.digest[7:19] for i in insts}),
                    "ready": sum(1 for i in insts if i.state == "ready"),
                    "wanted": why.desired if why is not None else spec.min,
                    "calls_s": round(sum(r.calls_s for r in all_rates), 2),
                    "errors_s": round(sum(r.errors_s for r in all_rates), 2),
                    "served": sum(i.served for i in insts),
                    "failed": sum(i.failed for i in insts),
                    "inflight": sum(i.inflight for i in insts),
                    "p50_ms": percentile(hist, 50),
                    "p99_ms": percentile(hist, 99),
                    "latency_window": "10 s" if window else "since start",
                    "nodes": sorted({hub.name_of(i.node) for i in insts}),
                    "instances": [_instance(hub, i, now) for i in insts],
                    "search": f"{name} {spec.kind}".lower(),
                }
            )
    return page(rows, query)


def placements(hub: Hub, query: dict[str, str]) -> dict[str, Any]:
    rows = []
    for app in sorted(hub.apps.values(), key=lambda a: a.name):
        for spec in app.motes:
            name = f"{app.name}.{spec.name}"
            why = hub.why.get(name)
            running = [
                i for i in hub.instances.values() if (i.app, i.mote) == (app.name, spec.name)
            ]
            verdicts = []
            vetoes: dict[str, list[str]] = {}
            for n in why.nodes if why is not None else []:
                ok = all(v.ok for v in n.verdicts)
                for v in n.verdicts:
                    if not v.ok:
                        vetoes.setdefault(f"{v.rule}: {v.reason}", []).append(n.name)
                verdicts.append(
                    {
                        "node": n.node,
                        "name": n.name,
                        "placed": n.placed,
                        "eligible": ok,
                        "score": round(sum(v.score for v in n.verdicts), 3) if ok else None,
                        "rules": [msgspec.to_builtins(v) for v in n.verdicts],
                    }
                )
            desired = why.desired if why is not None else spec.min
            placed = why.placed if why is not None else len(running)
            if desired == 0 and placed == 0:
                status = "scaled to zero"
            elif placed < desired:
                status = "pending"
            else:
                status = "running"
            rows.append(
                {
                    "mote": name,
                    "status": status,
                    "desired": desired,
                    "placed": placed,
                    "note": why.note if why is not None else "asking the scheduler",
                    "vetoes": [
                        {"rule": rule, "nodes": sorted(ns)} for rule, ns in sorted(vetoes.items())
                    ],
                    "nodes": verdicts,
                    "instances": [
                        {
                            "iid": i.iid,
                            "node": i.node,
                            "node_name": hub.name_of(i.node),
                            "state": i.state,
                            "cause": i.cause,
                        }
                        for i in sorted(running, key=lambda i: i.iid)
                    ],
                    "search": f"{name} {status}".lower(),
                }
            )
    out = page(rows, query)
    out["decisions"] = list(hub.decisions)[:50]
    return out


def queues(sources: Sources) -> dict[str, Any]:
    flows = []
    depth = {q.mote: q for q in sources.queues}
    for f in sorted(sources.flows.values(), key=lambda f: (f.app, f.name)):
        stages = []
        for stage in f.stages:
            q = depth.get(f"{f.app}.{stage}")
            stages.append({"mote": f"{f.app}.{stage}", "depth": q.depth if q else 0})
        flows.append({"flow": f"{f.app}.{f.name}", "stages": stages, "updated_at": f.updated_at})
    return {
        "queues": [msgspec.to_builtins(q) for q in sources.queues],
        "sampled_at": time.time() - (time.monotonic() - sources.queues_at)
        if sources.queues_at
        else None,
        "flows": flows,
    }


def store(hub: Hub, sources: Sources, query: dict[str, str]) -> dict[str, Any]:
    rows = []
    for si, rec in sorted(sources.files.items(), key=lambda kv: -kv[1].stored_at):
        health = sources.health.get(si)
        report = health.report if health is not None else None
        if si in sources.checking and report is None:
            state = "checking"
        elif health is None:
            state = "not checked"
        elif report is None:
            state = "unknown"
        elif report.healthy == report.blobs:
            state = "healthy"
        elif report.recoverable == report.blobs:
            state = "degraded"
        else:
            state = "unrecoverable"
        holders = sorted(hub.name_of(n) for n, h in sources.holdings.items() if si in h.files)
        rows.append(
            {
                "si": si,
                "verify": rec.verify,
                "size": rec.size,
                "k": rec.k,
                "n": rec.n,
                "happy": rec.happy,
                "stored_at": rec.stored_at,
                "labels": rec.labels,
                "health": state,
                "report": msgspec.to_builtins(report) if report is not None else None,
                "checked_at": health.checked_at if health is not None else None,
                "error": health.error if health is not None else "",
                "holders": holders,
                "search": f"{si} {rec.verify} {state}".lower(),
            }
        )
    out = page(rows, query)
    nodes_rows = []
    for nid, h in sorted(sources.holdings.items(), key=lambda kv: hub.name_of(kv[0])):
        nodes_rows.append(
            {
                "node": nid,
                "name": hub.name_of(nid),
                "share_bytes": h.share_bytes,
                "cache_bytes": h.cache_bytes,
                "free_bytes": h.free_bytes,
                "files": len(h.files),
            }
        )
    out["nodes"] = nodes_rows
    out["degraded"] = [r["si"] for r in rows if r["health"] in ("degraded", "unrecoverable")]
    return out
