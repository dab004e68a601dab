"""``motes dashboard``: serve the live web dashboard from this machine."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..client import Mesh
from .registry import Kind, arg, command

__all__ = ["dashboard"]


@command(
    "dashboard",
    "serve the live web dashboard here (127.0.0.1; prints a one-time link)",
    arg("--port", type=int, default=0, help="port to listen on (default: any free one)"),
    arg(
        "--bind",
        default=None,
        metavar="ADDR",
        help="address to listen on (default 127.0.0.1); another one serves other machines",
    ),
    arg("--no-compute", action="store_true", help="do not compute blocks' cells here"),
    kind=Kind.STREAM,
)
async def dashboard(mesh: Mesh, ns: argparse.Namespace) -> int:
    # Imported here: every other command starts without the web server's modules.
    from ..web import Dashboard
    from ..web.auth import is_loopback

    bind = ns.bind or "127.0.0.1"
    dash = Dashboard(
        mesh, bind=bind, port=ns.port, allow_remote=ns.bind is not None, compute=not ns.no_compute
    )
    await dash.start()
    if not is_loopback(bind):
        print(
            f"motes dashboard: serving on {bind}, beyond this machine, without TLS: anyone "
            "who can reach it still needs the link below",
            file=sys.stderr,
            flush=True,
        )
    started = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(dash.run(started=started))
        await started.wait()
        print(f"motes dashboard: {dash.link()}", flush=True)
        print("(the link works once; Ctrl-C stops the dashboard)", flush=True)
    return 0
