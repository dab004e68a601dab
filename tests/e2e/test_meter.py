"""The call meter on a real mesh: CPU time, bytes and joules of a mote's calls."""

from __future__ import annotations

import itertools

from motes.client import Mesh
from motes.testing import eventually
from motes.wire.codec import encode
from motes.wire.messages import Call, InstanceStatus, MeterTotals, Ok

from ..conftest import APPS


async def _totals(client: Mesh, calls: int) -> MeterTotals:
    async def probe() -> MeterTotals | None:
        insts: list[InstanceStatus] = [i for i in await client.ops.ps() if i.mote == "burn"]
        done = [i.meter for i in insts if i.meter is not None and i.served >= calls]
        return done[0] if done else None

    return await eventually(probe, what="the meter's totals of burn.burn")


async def test_cpu_bytes_and_joules_of_a_call_are_recorded(client: Mesh) -> None:
    await client.deploy(APPS / "burn.py")
    payload = b"p" * 5000
    inside, back = await client.call("burn.burn", 0.3, payload)
    assert back == payload
    totals = await _totals(client, 1)
    cpu = totals.cpu_user_s + totals.cpu_sys_s
    assert abs(cpu - inside) <= 0.1 * inside, (cpu, inside)
    # Bytes in: the request as the client encoded it; out: the reply as the worker did.
    sent = encode(Call([0.3, payload], {}, client.timing.call_timeout_s * 1000))
    assert abs(totals.bytes_in - len(sent)) <= 16, (totals.bytes_in, len(sent))
    reply = encode(Ok([inside, payload]))
    assert abs(totals.bytes_out - len(reply)) <= 16, (totals.bytes_out, len(reply))
    assert totals.wall_s >= cpu * 0.9
    assert totals.peak_rss > 10 * 1024 * 1024
    # No RAPL on this kind of machine: the power model, named, with its error band.
    assert totals.method.startswith(("model:", "rapl"))
    assert totals.joules > 0 and 0 < totals.band < 1


async def test_top_and_usage_show_the_calls_cpu_and_joules(client: Mesh) -> None:
    import argparse
    import asyncio

    from motes.cli import usage_cmds
    from motes.cli.render import text

    await client.deploy(APPS / "burn.py")
    await client.call("burn.burn", 0.01, b"")  # an instance is up and metered

    stop = asyncio.Event()
    made = 1

    async def load() -> None:
        nonlocal made
        while not stop.is_set():
            await client.call("burn.burn", 0.1, b"x" * 100)
            made += 1

    calls = asyncio.create_task(load())
    found = []
    try:
        # On a loaded box one reading can miss a node that answers `ps` late: read again.
        for _ in range(5):
            view = await usage_cmds.top(client, argparse.Namespace(interval=0.6))
            found = [r for r in view.data if r.mote == "burn.burn"]
            if found:
                break
    finally:
        stop.set()
        await calls
    (rate,) = found
    assert rate.calls_per_s > 0 and rate.cpu_pct > 20 and rate.watts > 0
    assert rate.method.startswith(("model:", "rapl")) and rate.p50_ms is not None
    out = text(view)
    assert "burn.burn" in out and "WATTS" in out and rate.method in out

    totals = await _totals(client, made)
    view = await usage_cmds.usage(client, argparse.Namespace(by="app", since=None))
    (row,) = view.data
    assert row["app"] == "burn" and row["calls"] == made
    assert row["cpu_user_s"] + row["cpu_sys_s"] >= 0.8
    assert row["joules"] == totals.joules and row["methods"] == [totals.method]
    assert "JOULES" in text(view)
    view = await usage_cmds.usage(client, argparse.Namespace(by="person", since=None))
    (row,) = view.data
    owner = (await client.apps.deployers())["burn"]
    assert row["person"] == owner and owner.startswith("p") and row["calls"] == made


async def test_each_node_serves_the_meter_as_openmetrics_text(client: Mesh) -> None:
    import asyncio
    import urllib.request

    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    await client.deploy(APPS / "burn.py")
    inside, _ = await client.call("burn.burn", 0.2, b"q" * 1000)
    urls = [n.record.metrics for n in await client.ops.nodes()]
    assert len(urls) == 3 and all(u.startswith("http://127.0.0.1:") for u in urls)

    def scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for url in urls:
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                text = resp.read().decode()
            for family in text_string_to_metric_families(text):  # raises if malformed
                for sample in family.samples:
                    if sample.labels.get("mote") == "burn":
                        out.setdefault(sample.name, []).append((sample.labels, sample.value))
        return out

    async def probe() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        found = await asyncio.to_thread(scrape)
        calls = sum(v for _, v in found.get("motes_calls_total", []))
        return found if calls >= 1 else None

    found = await eventually(probe, what="burn.burn's calls in the metrics")
    cpu = sum(v for _, v in found["motes_call_cpu_seconds_total"])
    assert abs(cpu - inside) <= 0.1 * inside
    (labels, joules), *_ = found["motes_call_energy_joules_total"]
    assert joules > 0 and labels["method"].startswith(("model:", "rapl"))
    assert sum(v for _, v in found["motes_call_in_bytes_total"]) > 1000
    assert all(v > 0 for _, v in found["motes_instance_peak_memory_bytes"])


async def test_usage_reports_go_into_the_history_stream_at_most_once_a_second(
    client: Mesh,
) -> None:
    import argparse
    import time

    from motes.cli import usage_cmds

    await client.deploy(APPS / "burn.py")
    t0 = time.time()
    for _ in range(3):
        await client.call("burn.burn", 0.05, b"h" * 200)

    async def probe() -> list[dict[str, object]] | None:
        view = await usage_cmds.usage(client, argparse.Namespace(by="mote", since=60.0))
        rows = [r for r in view.data if r["mote"] == "burn.burn"]
        return rows if rows and rows[0]["calls"] == 3 else None

    (row,) = await eventually(probe, what="burn.burn's usage in the history")
    assert row["cpu_user_s"] + row["cpu_sys_s"] >= 0.14  # type: ignore[operator]
    assert row["bytes_in"] > 600 and row["joules"] > 0  # type: ignore[operator]
    reports = [r for r in await client.ops.usage(t0 - 5) if any(x.mote == "burn" for x in r.rows)]
    by_node: dict[str, list[float]] = {}
    for r in reports:
        by_node.setdefault(r.node, []).append(r.end)
    for ends in by_node.values():
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(ends))
