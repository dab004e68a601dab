"""The dashboard in a real headless Chromium, against a real 3-node mesh and a real
``motes dashboard`` process: one mesh, one dashboard and one browser for the module.

Each test drives the page the way a person would, waits for what a person would see
(never a reload), and writes its views' screenshots under test-results/<test>/. The
node-killing test comes last: it leaves the mesh with two nodes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from motes.client import Mesh
from motes.node.localmesh import LocalMesh
from motes.testing import FAST, eventually, local_mesh

from ._browser import (
    REPO,
    chromium,
    cpu_seconds,
    dashboard_process,
    heap,
    output_dir,
    skip_without_browser,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

APP = Path(__file__).parent / "apps" / "dash.py"
EXAMPLE = REPO / "examples" / "blocks" / "app.py"


@dataclass
class Stack:
    mesh: LocalMesh
    client: Mesh
    proc: Any
    page: Any
    base: str
    link: str

    async def show(self, route: str) -> None:
        """Go to a view by its link in the page (no reload)."""
        await self.page.evaluate("r => { location.hash = r }", route)

    async def shot(self, request: pytest.FixtureRequest, name: str) -> Path:
        path = output_dir(request.node.name) / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    skip_without_browser()
    tmp = tmp_path_factory.mktemp("dashboard")
    async with local_mesh(tmp, nodes=3) as mesh, mesh.client(timing=FAST) as client:
        async with dashboard_process(mesh) as (proc, link), chromium() as context:
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(link)  # the one-time link: a cookie, then the app
            assert page.url.endswith("/#/nodes") or page.url.endswith("/")
            yield Stack(mesh, client, proc, page, link.split("/login")[0], link)
            assert not errors, errors


async def test_nodes_view_lists_every_node_and_a_deploy_appears_without_a_reload(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import expect

    page = stack.page
    await stack.show("#/nodes")
    rows = page.locator("#nodes tbody tr")
    await expect(rows).to_have_count(3)
    for name in ("node-1", "node-2", "node-3"):
        await expect(page.locator(f'#nodes tr[data-node="{name}"]')).to_contain_text("ready")
    await expect(page.locator("#nodes")).to_contain_text("leader")
    await page.evaluate("window.__sameDocument = true")
    await stack.client.deploy(APP)
    await expect(page.locator("#nodes")).to_contain_text("dash.work", timeout=5000)
    assert await page.evaluate("window.__sameDocument === true")  # it was not reloaded
    await stack.shot(request, "nodes")


async def test_motes_view_shows_rates_latencies_errors_and_where(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import expect

    page = stack.page
    await stack.show("#/motes")
    row = page.locator('#motes tr.mote[data-mote="dash.work"]')
    await expect(row).to_be_visible()
    for x in range(1, 200):
        try:
            await stack.client.call("dash.work", x)
        except ValueError:
            pass  # 97 and 194: the mote's own errors, counted as errors
    await expect(row.locator("td").nth(4)).not_to_have_text("\u2013")  # p99 shown (not a dash)
    await expect(row.locator("td").nth(5)).to_contain_text("2")  # two failed calls
    calls_text = await row.locator('[data-col="calls"]').inner_text()
    calls = float(calls_text.replace(",", ""))
    assert calls > 0
    hosts = {i.node for i in await stack.client.ops.ps() if i.mote == "work"}
    assert len(hosts) == 2
    await expect(page.locator("#motes tr.instance[data-iid]")).not_to_have_count(0)
    await expect(row.locator("a", has_text="logs")).to_have_attribute(
        "href", "#/logs?app=dash&mote=work"
    )
    await stack.shot(request, "motes")


async def test_a_pending_mote_shows_the_rule_and_the_nodes_that_vetoed_it(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import expect

    page = stack.page
    await stack.show("#/placements")
    card = page.locator('article[data-mote="dash.render"]')
    await expect(card).to_contain_text("pending")
    vetoes = card.get_by_role("list", name="rules that vetoed nodes for dash.render")
    await expect(vetoes).to_contain_text("capabilities: lacks a gpu")
    for name in ("node-1", "node-2", "node-3"):
        await expect(vetoes).to_contain_text(name)
    # And why a running mote runs where it does: every node's verdict and score.
    work = page.locator('article[data-mote="dash.work"]')
    await expect(work).to_contain_text("running")
    await work.locator("summary").click()
    await expect(work.get_by_role("table")).to_contain_text("spread")
    await stack.shot(request, "placements")


async def test_a_stored_file_shows_its_share_health(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import expect

    page = stack.page
    cap = await stack.client.store.put(b"motes " * 100_000)
    await stack.show("#/store")
    row = page.locator("#files tbody tr[data-si]")
    await expect(row).to_have_count(1)
    await expect(row).to_have_attribute("data-health", "healthy", timeout=10_000)
    report = await stack.client.store.check(cap)  # what `motes check` says: the same
    assert report.healthy == report.blobs == 2  # the manifest and one chunk
    await expect(row.locator("td.shares")).to_contain_text(
        f"{report.healthy}/{report.blobs} blobs healthy, {report.recoverable}/{report.blobs} "
        f"recoverable, {report.missing_shares} shares missing"
    )
    await expect(page.locator("#holdings tbody tr")).to_have_count(3)
    assert cap.startswith("motes:r1:")
    await stack.shot(request, "store")


async def test_logs_follow_and_queues_show(stack: Stack, request: pytest.FixtureRequest) -> None:
    from playwright.async_api import expect

    page = stack.page
    await stack.show("#/logs?app=dash&mote=chatter")
    await expect(page.locator("#loglines")).to_be_attached()
    await stack.client.call("dash.chatter", 4242)
    await expect(page.locator("#loglines")).to_contain_text("chatter 4242", timeout=5000)
    await stack.shot(request, "logs")
    await stack.show("#/queues")
    await expect(page.locator("#queues")).to_be_visible()
    await stack.shot(request, "queues")


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("blocks_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def _texts(page: Any, selector: str) -> list[str]:
    return sorted(t.strip() for t in await page.locator(selector).all_inner_texts())


async def test_a_collection_switches_between_table_kanban_and_wiki_with_the_same_content(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import expect

    page, client = stack.page, stack.client
    example = _example()
    await client.deploy(example.app)
    collection = await example.build(client.blocks)
    await stack.show(f"#/blocks/{collection}?view=table")
    table = page.locator("#block-table")
    await expect(table.locator('.computed[data-status="fresh"]')).to_have_count(4, timeout=15_000)
    revisions = {b.id: b.revision for b in await client.blocks.all()}

    seen = {}
    for kind, scope in (
        ("table", "#block-table"),
        ("kanban", "#block-kanban"),
        ("wiki", "#block-wiki"),
    ):
        await page.get_by_role("button", name=kind).click()
        await expect(page.get_by_role("button", name=kind)).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(page.locator(f"{scope} .computed[data-status='fresh']")).to_have_count(4)
        items = await _texts(page, f"{scope} [data-prop='item']")
        totals = await _texts(page, f"{scope} .computed .value")
        seen[kind] = (items, totals)
        await stack.shot(request, f"blocks-{kind}")
    assert seen["table"] == seen["kanban"] == seen["wiki"]
    assert seen["table"][0] == ["apples", "bread", "cheese", "coffee"]
    assert seen["table"][1] == sorted(["2.7", "2.8", "5.55", "7.9"])
    # The same blocks, untouched: switching views changed no data.
    assert {b.id: b.revision for b in await client.blocks.all()} == revisions
    # The kanban groups by status: the declared groups, in order.
    await page.get_by_role("button", name="kanban").click()
    columns = page.locator("#block-kanban section.column h2")
    await expect(columns).to_have_text(["to buy", "in basket", "paid"])


async def test_editing_an_input_cell_recomputes_the_computed_cell_and_names_its_node(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import expect

    page, client = stack.page, stack.client
    await stack.show("#/blocks/groceries?view=table")
    row = page.locator('#block-table tr[data-block="groceries-bread"]')
    total = row.locator(".computed")
    await expect(total.locator(".value")).to_have_text("2.8")
    await row.locator('[data-prop="qty"]').click()
    field = row.get_by_role("textbox")
    await field.fill("3")
    await field.press("Enter")
    await expect(total.locator(".value")).to_have_text("8.4", timeout=10_000)
    meta = total.locator(".meta")
    await expect(meta).to_contain_text("computed on node-")
    node = await meta.get_attribute("data-node")
    names = {s.record.id: s.record.name for s in await client.ops.nodes()}
    hosts = {names[i.node] for i in await client.ops.ps() if (i.app, i.mote) == ("shop", "total")}
    assert node in hosts
    cell = await client.blocks.cells.state("groceries-bread", "total")
    assert cell.result is not None and cell.result.node_name == node and cell.value == 8.4
    await stack.shot(request, "blocks-edited")


async def test_the_page_is_refused_without_the_link(stack: Stack) -> None:
    page = stack.page
    without = "async p => (await fetch(p, {credentials: 'omit'})).status"
    for path in ("/", "/static/app.js", "/api/nodes", "/api/stream?topics=nodes"):
        assert await page.evaluate(without, path) == 401, path
    spent = await page.goto(stack.link)  # the link was used when the module started
    assert spent is not None and spent.status == 401
    await page.goto(stack.base + "/#/nodes")  # the session (its cookie) still works
    await page.locator("#nodes tbody tr").first.wait_for()


async def test_an_open_page_stays_flat_and_cheap_while_the_mesh_is_busy(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    """A short version of the 10-minute check (``test_soak.py``, marked long)."""
    figures = await busy_page(stack, seconds=12.0, samples=2)
    out = output_dir(request.node.name) / "figures.txt"
    out.write_text(repr(figures) + "\n")
    assert figures["cpu_percent"] < 5.0, figures
    assert figures["heap_growth_bytes"] < 2 * 1024 * 1024, figures
    assert figures["dom_growth"] < 200, figures


async def busy_page(stack: Stack, *, seconds: float, samples: int) -> dict[str, Any]:
    """Keep the mesh busy (calls, errors, log lines) with the motes view open; measure the
    page's heap after collections and the dashboard process's CPU."""
    await stack.show("#/motes")
    await stack.page.locator('#motes tr.mote[data-mote="dash.work"]').wait_for()
    stop = asyncio.Event()
    calls = 0

    async def load() -> None:
        nonlocal calls
        while not stop.is_set():
            calls += 1
            try:
                await stack.client.call("dash.work", calls)
                if calls % 50 == 0:
                    await stack.client.call("dash.chatter", calls)
            except ValueError:
                pass
            await asyncio.sleep(0.002)  # bounded: a few hundred calls a second at most

    async with asyncio.TaskGroup() as tg:
        workers = [tg.create_task(load()) for _ in range(4)]
        await asyncio.sleep(3)  # the views fill; then measure from here
        first = await heap(stack.page)
        cpu0, t0 = cpu_seconds(stack.proc.pid), time.monotonic()
        heaps = [first]
        for _ in range(samples):
            await asyncio.sleep(seconds / samples)
            heaps.append(await heap(stack.page))
        cpu1, t1 = cpu_seconds(stack.proc.pid), time.monotonic()
        stop.set()
        for w in workers:
            await w
    return {
        "seconds": round(t1 - t0, 1),
        "calls": calls,
        "calls_per_s": round(calls / (t1 - t0 + 3), 1),
        "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "heap_bytes": [int(h["heap_bytes"]) for h in heaps],
        "heap_growth_bytes": int(heaps[-1]["heap_bytes"] - first["heap_bytes"]),
        "dom_nodes": [int(h["dom_nodes"]) for h in heaps],
        "dom_growth": int(heaps[-1]["dom_nodes"] - first["dom_nodes"]),
        "listeners": [int(h["listeners"]) for h in heaps],
    }


async def test_a_killed_node_shows_lost_within_2_s_and_its_motes_move(
    stack: Stack, request: pytest.FixtureRequest
) -> None:
    from playwright.async_api import expect

    page, client = stack.page, stack.client
    names = {s.record.id: s.record.name for s in await client.ops.nodes()}
    leader = next(s.record.name for s in await client.ops.nodes() if s.leader)
    hosts = {names[i.node] for i in await client.ops.ps() if i.mote == "work"}
    victim = sorted(hosts - {leader})[0]  # not the leader: its own loss is judged by another
    await stack.show("#/nodes")
    row = page.locator(f'#nodes tr[data-node="{victim}"]')
    await expect(row).to_have_attribute("data-state", "ready")
    killed = time.monotonic()
    await stack.mesh.kill_node(victim)
    await expect(row).to_have_attribute("data-state", "lost", timeout=2000)
    took = time.monotonic() - killed
    assert took < 2.0, took
    await stack.shot(request, "lost")
    await stack.show("#/motes")
    work = page.locator('#motes tr.instance[data-mote="dash.work"]')
    survivors = sorted({"node-1", "node-2", "node-3"} - {victim})

    seen: list[object] = []

    async def moved() -> bool:
        shown = {await r.get_attribute("data-node") for r in await work.all()}
        ready = await page.locator('#motes tr.mote[data-mote="dash.work"] td').nth(1).inner_text()
        seen[:] = [shown, ready]
        have, want = (int(n) for n in ready.split("/"))
        return shown.issubset(survivors) and shown and have == want >= 2

    await eventually(moved, timeout=20, what=f"dash.work off {victim} (showing {seen})")
    await stack.shot(request, "moved")
