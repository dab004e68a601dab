"""The ``motes`` command. Thin: parse, call the client or the local mesh, print.

Exit codes: 0 success, 1 the operation failed (a remote error, a failed check),
2 a usage or request error (bad arguments, no mesh running).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from .. import __version__
from .._proc import run_main
from ..config import resolve_home
from ..errors import MotesError, RemoteError, RequestError
from . import commands, store

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="motes", description="Run Python motes across your machines.")
    p.add_argument("--version", action="version", version=f"motes {__version__}")
    home_help = "motes home (default: $MOTES_HOME, then the platform data dir)"
    url_help = "NATS URL of a mesh (default: $MOTES_URL, then the local mesh at the home)"
    p.add_argument("--home", help=home_help)
    p.add_argument("--url", help=url_help)
    # The same options after the command (`motes up --home X`); SUPPRESS keeps the global value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=argparse.SUPPRESS, help=home_help)
    common.add_argument("--url", default=argparse.SUPPRESS, help=url_help)
    commands_ = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    class _Sub:
        @staticmethod
        def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
            return commands_.add_parser(name, parents=[common], **kw)

    sub = _Sub()

    up = sub.add_parser("up", help="start a local mesh: an embedded lattice and N node processes")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NODE:KEY=VALUE",
        help="label a node, e.g. node-1:role=worker (repeatable)",
    )
    up.add_argument("--port", type=int, default=0, help="lattice port (default: any free port)")
    up.add_argument(
        "--detach",
        action="store_true",
        help="return once the mesh is ready; stop it with `motes down`",
    )

    sub.add_parser("down", help="stop the local mesh started with `motes up --detach`")

    node = sub.add_parser(
        "node", help="run one node agent in the foreground, joining the lattice at --url"
    )
    node.add_argument("--name", required=True, help="this node's name, e.g. laptop")
    node.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")

    nodes = sub.add_parser("nodes", help="list the mesh's nodes")
    nodes.add_argument("--json", action="store_true")

    deploy = sub.add_parser("deploy", help="bundle an app file and deploy it")
    deploy.add_argument("file", help="path to the app's .py file (or its directory with app.py)")
    deploy.add_argument("--no-wait", action="store_true", help="return before instances are ready")

    apps = sub.add_parser("apps", help="list deployed apps")
    apps.add_argument("--json", action="store_true")

    ps = sub.add_parser("ps", help="list every instance: mote, version, node, state, in-flight")
    ps.add_argument("--json", action="store_true")

    call = sub.add_parser("call", help="call a mote with JSON arguments and print its JSON result")
    call.add_argument("mote", metavar="APP.MOTE")
    call.add_argument("args", nargs="*", metavar="JSON_ARG")
    call.add_argument("--timeout", type=float, default=None)
    call.add_argument("--key", help="for an actor: the key; then APP.ACTOR.METHOD names the method")

    logs = sub.add_parser("logs", help="worker output and exceptions from every node")
    logs.add_argument("target", metavar="APP[.MOTE]")
    logs.add_argument("-f", "--follow", action="store_true")

    why = sub.add_parser("why", help="every node's verdict, rule by rule, for placing a mote")
    why.add_argument("mote", metavar="APP.MOTE")
    why.add_argument("--json", action="store_true")

    here = sub.add_parser("here", help="tell the mesh you are at this machine (owner context)")
    here.add_argument("--node", help="the node you are at (default: the one on this host)")
    here.add_argument("--away", action="store_true", help="you are at no node")

    drain = sub.add_parser("drain", help="move every instance off a node; place nothing more there")
    drain.add_argument("node", metavar="NODE")
    drain.add_argument("--undo", action="store_true", help="let the node take instances again")

    rollback = sub.add_parser("rollback", help="go back to the app's previous version")
    rollback.add_argument("app", metavar="APP")

    queue = sub.add_parser("queue", help="durable calls waiting or running, per mote")
    queue.add_argument("--json", action="store_true")

    flow = sub.add_parser("flow", help="show or rewire flows")
    flow_cmds = flow.add_subparsers(dest="flow_command", required=True, metavar="ACTION")
    flow_set = flow_cmds.add_parser("set", help="rewire a flow now, keeping items in flight")
    flow_set.add_argument("flow", metavar="APP.FLOW")
    flow_set.add_argument("stages", nargs="+", metavar="STAGE")
    flow_show = flow_cmds.add_parser("show", help="every flow's current stages")
    flow_show.add_argument("flow", nargs="?", metavar="APP[.FLOW]")
    flow_show.add_argument("--json", action="store_true")

    policy_help = "k=3,n=10,happy=7,chunk=1048576,label.KEY=VALUE (default: fitted to the mesh)"
    put = sub.add_parser("put", help="store a file or directory; print its read capability")
    put.add_argument("path")
    put.add_argument("--policy", help=policy_help)
    get = sub.add_parser("get", help="fetch stored data by capability (to stdout, or -o PATH)")
    get.add_argument("cap")
    get.add_argument("-o", "--output", help="write here (a directory cap makes a directory)")
    cat = sub.add_parser("cat", help="write a stored file to stdout")
    cat.add_argument("cap")
    ls = sub.add_parser("ls", help="list a stored directory (or dataset)")
    ls.add_argument("cap")
    ls.add_argument("--caps", action="store_true", help="show each entry's read capability")
    check = sub.add_parser("check", help="count a stored file's shares in the mesh")
    check.add_argument("cap")
    check.add_argument("--repair", action="store_true", help="regenerate missing shares")
    sub.add_parser("du", help="what each node stores and caches")
    dataset = sub.add_parser("dataset", help="mutable, named collections of stored data")
    ds_cmds = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    ds_create = ds_cmds.add_parser("create", help="a new empty dataset; keeps its write cap here")
    ds_create.add_argument("name")
    ds_create.add_argument("--policy", help=policy_help)
    ds_add = ds_cmds.add_parser("add", help="store PATH and add it to the dataset")
    ds_add.add_argument("name")
    ds_add.add_argument("path")
    ds_add.add_argument("--as", dest="as_name", help="its name in the dataset (default: basename)")
    ds_cmds.add_parser("list", help="datasets whose write capability is kept here")
    mount = sub.add_parser("mount", help="a read-only FUSE view of a stored directory")
    mount.add_argument("cap")
    mount.add_argument("dir")

    demo = sub.add_parser("demo", help="3-node mesh counts identifiers in the standard library")
    demo.add_argument("--nodes", type=int, default=3)
    return p


_HANDLERS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "up": commands.up,
    "down": commands.down,
    "node": commands.node,
    "nodes": commands.nodes,
    "deploy": commands.deploy,
    "apps": commands.apps,
    "ps": commands.ps,
    "call": commands.call,
    "logs": commands.logs,
    "why": commands.why,
    "demo": commands.demo,
    "queue": commands.queue,
    "flow": commands.flow,
    "here": commands.here,
    "drain": commands.drain,
    "rollback": commands.rollback,
    "put": store.put,
    "get": store.get,
    "cat": store.cat,
    "ls": store.ls,
    "check": store.check,
    "du": store.du,
    "dataset": store.dataset,
    "mount": store.mount,
}


def main(argv: list[str] | None = None) -> None:
    ns = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    ns.home = resolve_home(ns.home)
    try:
        code = run_main(_HANDLERS[ns.command](ns))
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


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


if __name__ == "__main__":
    main()
