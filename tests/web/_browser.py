"""What the browser tests share: Debian's Chromium driven by Playwright (never a browser
Playwright downloads), a `motes dashboard` process, and where screenshots go.

``make test`` installs both where it can (``make browser``); where it cannot, the tests
skip and say which is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from motes.node.localmesh import LocalMesh

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MOTES_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return (
            f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set MOTES_CHROMIUM)"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright; `make browser`)"
    return None


def skip_without_browser() -> None:
    reason = browser_missing()
    if reason:
        pytest.skip(reason)


def output_dir(name: str) -> Path:
    """Where a test writes its screenshots: test-results/<test>/ (or $MOTES_TEST_OUTPUT)."""
    root = Path(os.environ.get("MOTES_TEST_OUTPUT", REPO / "test-results"))
    out = root / re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.asynccontextmanager
async def dashboard_process(mesh: LocalMesh, *extra: str) -> AsyncIterator[tuple[Any, str]]:
    """``motes --home HOME --url URL dashboard`` as the mesh's owner: the process and the
    one-time link it printed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "motes.cli",
        "--home",
        str(mesh.home),
        "--url",
        mesh.url,
        "dashboard",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        link = ""
        async with asyncio.timeout(60):
            while not link:
                line = (await proc.stdout.readline()).decode()
                if not line:
                    err = (await proc.stderr.read()).decode() if proc.stderr else ""
                    raise AssertionError(f"motes dashboard exited: {err[-2000:]}")
                if line.startswith("motes dashboard: "):
                    link = line.split(": ", 1)[1].strip()
        yield proc, link
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A fresh browser profile in headless Chromium; yields a Playwright BrowserContext."""
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="motes-chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1400, "height": 900},
            )
            try:
                yield context
            finally:
                await context.close()


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def heap(page: Any) -> dict[str, float]:
    """The page's JS heap after a full collection, and its DOM nodes and listeners."""
    cdp = await page.context.new_cdp_session(page)
    try:
        await cdp.send("HeapProfiler.collectGarbage")
        usage = await cdp.send("Runtime.getHeapUsage")
        await cdp.send("Performance.enable")
        metrics = {
            m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]
        }
    finally:
        await cdp.detach()
    return {
        "heap_bytes": float(usage["usedSize"]),
        "dom_nodes": metrics.get("Nodes", 0.0),
        "listeners": metrics.get("JSEventListeners", 0.0),
    }
