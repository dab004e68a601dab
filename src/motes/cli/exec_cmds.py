"""``motes exec -- ARGV``: run a native program on a node of the mesh, confined there.

What the program writes goes to this process's stdout and stderr, and its exit status
is ours; a refusal or a limit it hit is a typed error (exit 2), as for every command.
"""

from __future__ import annotations

import argparse
import sys

from ..client import Mesh
from ..errors import RequestError
from ..node.inventory import parse_labels
from .registry import Kind, arg, command

__all__: list[str] = []


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    try:
        return parse_labels(items)
    except ValueError as exc:
        raise RequestError(f"{flag}: {exc}") from None


@command(
    "exec",
    "run a native program on a node, confined (bubblewrap, else Landlock): motes exec -- ARGV",
    arg("--node", help="the node (name or id); default: any that will run it"),
    arg("--label", action="append", default=[], metavar="KEY=VALUE", help="pick a node by label"),
    arg("--file", action="append", default=[], metavar="INSIDE=NODE_PATH", help="read-only"),
    arg("--writable", action="append", default=[], metavar="INSIDE=NODE_PATH"),
    arg("--net", action="store_true", help="let it use the network (default: none)"),
    arg("--timeout", type=float, default=30.0, help="seconds; then its whole tree is killed"),
    arg("--memory", type=int, default=256, metavar="MIB"),
    arg("--stdin", action="store_true", help="pass this process's stdin to it"),
    arg("argv", nargs=argparse.REMAINDER, metavar="-- ARGV"),
    kind=Kind.STREAM,
)
async def exec_(mesh: Mesh, ns: argparse.Namespace) -> int:
    argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
    if not argv:
        raise RequestError("name the program to run: motes exec [OPTIONS] -- PROGRAM [ARGS]")
    done = await mesh.exec(
        argv,
        files=_pairs(ns.file, "--file"),
        writable=_pairs(ns.writable, "--writable"),
        net=ns.net,
        timeout=ns.timeout,
        memory_mb=ns.memory,
        stdin=sys.stdin.buffer.read() if ns.stdin else b"",
        node=ns.node,
        labels=_pairs(ns.label, "--label"),
    )
    sys.stdout.buffer.write(done.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(done.stderr)
    sys.stderr.flush()
    return done.returncode if done.returncode >= 0 else 128 - done.returncode  # a signal
