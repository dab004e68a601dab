"""The ``motes`` command: parse, load the settings once, run one registered command.

Exit codes: 0 success, 1 the operation failed (a remote error, a failed check),
2 a usage or request error (bad arguments, no mesh running).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from .. import __version__
from .._proc import run_main
from ..client import connect
from ..config import Config, load_config
from ..errors import MotesError, RemoteError, RequestError
from . import dashboard, exec_cmds, local, mesh_cmds, store, trust_cmds, usage_cmds
from .registry import COMMANDS, Command, Kind
from .render import json_text, text

__all__ = ["main"]

_ = (
    dashboard,
    exec_cmds,
    local,
    mesh_cmds,
    store,
    trust_cmds,
    usage_cmds,
)  # importing them registers their commands

_HOME_HELP = "motes home (default: $MOTES_HOME, then the platform data dir)"
_URL_HELP = "NATS URL of a mesh (default: $MOTES_URL, then the local mesh at the home)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motes", description="Run Python motes across your machines.")
    p.add_argument("--version", action="version", version=f"motes {__version__}")
    p.add_argument("--home", help=_HOME_HELP)
    p.add_argument("--url", help=_URL_HELP)
    # The same options after the command (`motes up --home X`); SUPPRESS keeps the global value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=_HOME_HELP)
    common.add_argument("--url", default=argparse.SUPPRESS, help=_URL_HELP)
    top = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, Any] = {}
    for cmd in sorted(COMMANDS.values(), key=lambda c: c.kind is not Kind.LOCAL):
        head, _, sub = cmd.name.partition(" ")
        if sub:
            if head not in groups:
                group = top.add_parser(head, help=_GROUPS.get(head, ""), parents=[common])
                groups[head] = group.add_subparsers(dest="action", required=True, metavar="ACTION")
            parser = groups[head].add_parser(sub, help=cmd.help, parents=[common])
        else:
            parser = top.add_parser(head, help=cmd.help, parents=[common])
        for a in cmd.args:
            a.add_to(parser)
        if cmd.json:
            parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(_command=cmd)
    return p


_GROUPS = {
    "flow": "show or rewire flows",
    "dataset": "mutable, named collections of stored data",
}


async def _run(cmd: Command, config: Config, ns: argparse.Namespace) -> int:
    if cmd.kind is Kind.LOCAL:
        return int(await cmd.run(config, ns))
    async with connect(config=config) as mesh:
        if cmd.kind is Kind.STREAM:
            return int(await cmd.run(mesh, ns))
        view = await cmd.run(mesh, ns)
    out = json_text(view) if getattr(ns, "json", False) else text(view)
    if out:
        print(out)
    return int(view.code)


def main(argv: list[str] | None = None) -> None:
    ns = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    try:
        flags = {"lattice": {"servers": ns.url}} if ns.url else {}
        config = load_config(ns.home, flags=flags)
        code = run_main(_run(ns._command, config, ns))
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `motes ps | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except RemoteError as exc:
        print(f"motes: {exc}", file=sys.stderr)
        code = 1
    except RequestError as exc:
        print(f"motes: {exc}", file=sys.stderr)
        code = 2
    except MotesError as exc:
        print(f"motes: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
