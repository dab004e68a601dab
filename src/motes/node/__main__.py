"""``python -m motes.node``: one node agent process.

The first SIGTERM or SIGINT drains (withdraws the node, stops its workers); a second one
exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .._proc import run_main
from ..config import Timing
from ..errors import MotesError
from ..wire.bus import Lattice
from .agent import NodeAgent
from .inventory import parse_labels


async def _run(ns: argparse.Namespace) -> None:
    lattice = await Lattice.connect(ns.url, name=f"node {ns.name}")
    agent = NodeAgent(
        lattice,
        url=ns.url,
        home=Path(ns.home),
        name=ns.name,
        labels=parse_labels(ns.label),
        timing=Timing.from_env(),
    )
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            sys.exit(1)
        agent.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await agent.run()
    finally:
        await lattice.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="motes-node")
    parser.add_argument("--url", required=True, help="the lattice's NATS URL")
    parser.add_argument("--home", required=True, help="this node's directory (key, bundles)")
    parser.add_argument("--name", required=True)
    parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--log-level", default="INFO")
    ns = parser.parse_args(argv)
    logging.basicConfig(
        level=ns.log_level,
        format=f"%(asctime)s {ns.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    try:
        run_main(_run(ns))
    except MotesError as exc:
        print(f"motes node: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
