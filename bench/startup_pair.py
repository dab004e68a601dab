"""`motes up` of two source trees side by side: start-up time and an idle node's RSS.

``python -m bench.startup_pair --base DIR [--other DIR] [--reps N] [--nodes N]`` runs
``motes --home TMP up --nodes N --detach`` with ``PYTHONPATH=DIR/src`` for each tree in
turn, ``reps`` times, timing until the CLI returns; 3 s later it reads the first node's
RSS (agent plus any store service process: ``contenders.node_rss_mb``), then ``motes
down``. On a shared, noisy machine the absolute times say little; the ratio of the two
medians, measured interleaved, is the figure for a change to start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

from .contenders import node_rss_mb

CLI = Path(sys.executable).parent / "motes"
HERE = Path(__file__).resolve().parent.parent


def once(tree: Path, nodes: int) -> tuple[float, float]:
    """(seconds until ``motes up`` returned, the first node's RSS in MiB 3 s later)."""
    home = tempfile.mkdtemp(prefix="motes-pair-")
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    try:
        t0 = time.perf_counter()
        up = [str(CLI), "--home", home, "up", "--nodes", str(nodes), "--detach"]
        subprocess.run(up, env=env, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - t0
        info = json.loads((Path(home) / "mesh.json").read_text())
        time.sleep(3)
        rss = node_rss_mb(int(info["nodes"][0]["pid"]), Path(home) / "nodes" / "node-1")
    finally:
        subprocess.run([str(CLI), "--home", home, "down"], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)
    return elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup_pair")
    parser.add_argument("--base", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--other", type=Path, default=HERE, help="default: this tree")
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "other": args.other.resolve()}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for _ in range(args.reps):
        for name, tree in trees.items():
            runs[name].append(once(tree, args.nodes))
            t, rss = runs[name][-1]
            print(f"  {name:5} {t:6.2f} s  {rss:5.1f} MiB", flush=True)
    medians = {name: median(t for t, _ in r) for name, r in runs.items()}
    for name, r in runs.items():
        print(
            f"{name} ({trees[name]}): median {medians[name]:.2f} s, "
            f"{median(m for _, m in r):.1f} MiB"
        )
    print(f"other / base: {medians['other'] / medians['base']:.2f} (start-up time)")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
