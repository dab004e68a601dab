"""What every peer driver shares: the JSON-lines channel to the harness, timing, RSS.

Runs with the *peer's* Python (its virtualenv under ``bench/.peers/``), inside the peer's
network namespace; it imports nothing from Motes or the harness. The protocol:

1. the driver says ``{"hello": "<its network namespace>", "pid": ...}`` and waits for
   ``{"go": true}`` (the harness holds the namespace meanwhile, see ``bench/netns.py``);
2. a long-running driver starts its peer and says ``{"ready": true, ...}``, then answers
   each request ``{"op": NAME, ...}`` with ``{"ok": ...}`` or ``{"error": "..."}`` until
   ``{"op": "quit"}`` or end of input, stops its peer and exits;
   a one-shot driver says ``{"ready": true}``, then ``{"ok": ...}`` once, and exits.

Everything the peer prints goes to stderr (the driver's log); the protocol has stdout
to itself.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

PAYLOAD = b"x"
_out: Any = None


def hello() -> None:
    """Claim stdout for the protocol, say hello, wait for ``go``."""
    global _out
    _out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else written to fd 1 (the peer's own output) goes to the log
    sys.stdout = sys.stderr
    send({"hello": os.readlink("/proc/self/ns/net"), "pid": os.getpid()})
    line = sys.stdin.readline()
    if not line or not json.loads(line).get("go"):
        sys.exit(1)


def send(obj: dict[str, Any]) -> None:
    _out.write(json.dumps(obj) + "\n")
    _out.flush()


def run(serve: Callable[[str], None], startup: Callable[[str, float], None] | None = None) -> None:
    """A driver's ``main``: say hello, then ``serve TMP`` or ``startup TMP IDLE_S``."""
    hello()
    mode, tmp, *rest = sys.argv[1:]
    if mode == "serve":
        serve(tmp)
    elif mode == "startup" and startup is not None:
        startup(tmp, float(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


def serve(handlers: dict[str, Callable[..., Any]]) -> None:
    """Answer requests until ``quit`` or end of input."""
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op", None)
        if op == "quit":
            return
        try:
            gc.collect()
            send({"ok": handlers[op](**request)})
        except Exception as exc:
            traceback.print_exc()
            send({"error": f"{type(exc).__name__}: {exc}"})


def rtt(call: Callable[[], Any], n: int) -> list[int]:
    """Round-trip times in ns of ``n`` calls made one after another (as the harness does)."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        call()
        out[i] = clock() - t0
    return out


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children(parent: int, comm: str) -> list[int]:
    """Pids of ``parent``'s child processes whose command name is ``comm``."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        head, _, rest = stat.rpartition(")")
        if head.split("(", 1)[-1] == comm and int(rest.split()[1]) == parent:
            out.append(int(name))
    return out


def heavy(kind: str, x: int, ms: int) -> int:
    """map_heavy's item: ``ms`` of sleep (``nap``) or of this process's CPU (``burn``),
    as ``bench/apps/heavy.py`` does in a mote; returns ``x``."""
    if kind == "nap":
        time.sleep(ms / 1000)
    else:
        end = time.process_time() + ms / 1000
        while time.process_time() < end:
            pass
    return x
