"""``python -m motes.node --config FILE``: one node agent process.

Its settings (lattice, node name, home and labels, timing) come from the 0600 file its
starter wrote. With ``--held`` it imports everything first and reads that file only once
its starter releases it (``_proc.release``): ``motes up`` starts the interpreters while
the lattice starts and its nodes are admitted. The first SIGTERM or SIGINT drains
(withdraws the node, stops its workers); a second one exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .._proc import process_main, wait_until_released
from ..config import Config, LatticeConfig, load_config
from ..errors import MotesError, Unauthorized
from ..wire.bus import Bus
from .agent import NodeAgent


async def _run(config: Config, draining: asyncio.Event) -> None:
    from ..wire._nats import NatsBus

    bus = await NatsBus.connect(config.lattice, name=f"node {config.node.name}")

    async def connect(lattice: LatticeConfig, name: str) -> Bus:
        return await NatsBus.connect(lattice, name=name)

    agent = NodeAgent(bus, config, connect=connect)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(agent.run())
            await draining.wait()
            agent.stop()
    except Exception:
        if bus.refused:  # say why, rather than the first operation that failed after it
            raise Unauthorized(
                f"the mesh shut node {config.node.name} out: {bus.refused}; "
                "it needs a new invite (`motes invite --node`, then `motes join`)"
            ) from None
        raise
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="motes-node")
    parser.add_argument("--config", required=True, help="this node's settings (a 0600 file)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--held", action="store_true", help="read --config once the starter says so (stdin)"
    )
    ns = parser.parse_args(argv)
    if ns.held:
        wait_until_released(preload=("motes.wire._nats",))
    try:
        config = load_config(env={"MOTES_CONFIG": ns.config})
    except MotesError as exc:
        print(f"motes node: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=ns.log_level,
        format=f"%(asctime)s {config.node.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    try:
        process_main(lambda draining: _run(config, draining))
    except MotesError as exc:
        print(f"motes node: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
