"""Where `motes up` spends its time: the critical path, process by process.

``python -m bench.startup_timeline [--runs N] [--nodes N]`` runs ``motes --home TMP up
--nodes N --detach`` (3, as ``startup_s`` does) and, polling ``/proc`` every 2 ms, notes
when each process of the mesh first appears under its own command line (the CLI, the
supervisor it starts, nats-server, the authority, each node agent, the first warm
worker), when ``mesh.json`` is written and when the CLI returns; the nodes' logs add when
one became scheduler leader, each store was ready and each node was ready. Then ``motes
down``. It is the evidence behind the ``startup_s`` row in ``bench/RESULTS.md``; the
polling costs a little CPU, so its total runs slightly above the benchmark's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = Path(sys.executable).parent / "motes"


def _cmdline(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _environ(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _label(cmd: str) -> str | None:
    if "motes.runtime.worker" in cmd:
        return "first warm worker exec'd"
    if "motes.node" in cmd:
        node = cmd.split("/nodes/", 1)[1].split("/", 1)[0] if "/nodes/" in cmd else "?"
        return f"{node} agent exec'd"
    if "motes.trust.authority" in cmd:
        return "authority exec'd"
    if "nats-server" in cmd:
        return "nats-server exec'd"
    if "motes.cli" in cmd:
        return "supervisor exec'd"
    if "/motes " in cmd or cmd.endswith("/motes"):
        return "CLI started"
    return None


_LOG_EVENTS = (("is leader", "became leader"), ("store on", "store ready"), (") ready", "ready"))
"""Lines of a node's log that mark a step, and what the timeline calls the step."""


def _log_events(node_log: Path, wall0: float) -> dict[str, float]:
    name = node_log.parent.name
    events: dict[str, float] = {}
    for line in node_log.read_text(errors="replace").splitlines():
        for word, label in _LOG_EVENTS:
            if word in line:
                try:
                    stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
                except ValueError:  # not a line of the agent's own log format
                    continue
                events.setdefault(f"{name} {label}", stamp.timestamp() - wall0)
    return events


def once(nodes: int) -> list[tuple[float, str]]:
    home = tempfile.mkdtemp(prefix="motes-timeline-")
    events: dict[str, float] = {}
    t0 = time.perf_counter()
    wall0 = time.time()
    proc = subprocess.Popen(
        [str(CLI), "--home", home, "up", "--nodes", str(nodes), "--detach"],
        stdout=subprocess.DEVNULL,
    )
    try:
        while True:
            now = time.perf_counter() - t0
            for pid in os.listdir("/proc"):  # every time: a fork shows its parent until exec
                if not pid.isdigit():
                    continue
                cmd = _cmdline(pid)
                if home in cmd or home in _environ(pid):  # settings are files under the home
                    label = _label(cmd)
                    if label is not None:
                        events.setdefault(label, now)
            if "mesh.json written" not in events and (Path(home) / "mesh.json").exists():
                events["mesh.json written"] = now
            if proc.poll() is not None:
                events["CLI returned"] = now
                break
            time.sleep(0.002)
        for node_log in sorted((Path(home) / "nodes").glob("*/node.log")):
            events.update(_log_events(node_log, wall0))
    finally:
        subprocess.run([str(CLI), "--home", home, "down"], stdout=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)
    return sorted(((t, label) for label, t in events.items()), key=lambda e: e[0])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup_timeline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for run in range(1, args.runs + 1):
        print(f"run {run}:")
        last = 0.0
        for t, label in once(args.nodes):
            print(f"  {t * 1000:6.0f} ms  (+{(t - last) * 1000:4.0f})  {label}")
            last = t


if __name__ == "__main__":
    main()
