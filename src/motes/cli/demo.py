"""``motes demo``: a 3-node local mesh counts identifiers in the standard library.

Starts a private mesh (its own home in a temporary directory unless ``--home`` is given),
deploys ``examples/wordcount``, maps ``count`` over every ``.py`` file of the running
Python's standard library, reduces the per-file counts and asks the ``top`` mote for the
20 most common; prints them, the calls each node served and the wall time; then checks the
answer against the same computation done in this one process, and stops the mesh. Exits 1
if the answers differ.
"""

from __future__ import annotations

import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

from ..app import load_app_file
from ..errors import BadApp
from ..node.localmesh import LocalMesh
from .render import Table, table_text

__all__ = ["demo", "example_app", "stdlib_sources"]


def example_app() -> Path:
    """``examples/wordcount/app.py`` of the source tree this package runs from."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "wordcount" / "app.py"
        if candidate.is_file():
            return candidate
    raise BadApp("examples/wordcount/app.py not found: run the demo from a clone of the repository")


def stdlib_sources() -> list[tuple[str, str]]:
    """(relative path, text) of every .py file in the standard library, sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if "site-packages" not in p.parts and "dist-packages" not in p.parts
    )
    return [
        (p.relative_to(root).as_posix(), p.read_bytes().decode("utf-8", "replace")) for p in files
    ]


async def demo(nodes: int = 3) -> int:
    app_file = example_app()
    sources = stdlib_sources()
    total_mb = sum(len(t) for _, t in sources) / 1e6
    print(
        f"motes demo: {nodes}-node local mesh, wordcount over "
        f"{len(sources)} stdlib files ({total_mb:.1f} MB)"
    )
    with tempfile.TemporaryDirectory(prefix="motes-demo-") as tmp:
        home = Path(tmp)
        t0 = time.monotonic()
        async with LocalMesh(home, nodes=nodes, write_mesh_file=False) as mesh:
            t_up = time.monotonic()
            print(f"  mesh up in {t_up - t0:.2f} s (lattice {mesh.url})")
            async with mesh.client() as client:
                digest = await client.deploy(app_file)
                t_dep = time.monotonic()
                print(f"  deployed wordcount {digest[7:19]} in {t_dep - t_up:.2f} s")
                merged: Counter[str] = Counter()
                async for counts in client.map("wordcount.count", (text for _, text in sources)):
                    merged.update(counts)
                top = [(w, n) for w, n in await client.call("wordcount.top", dict(merged), 20)]
                t_done = time.monotonic()
                served = Counter[str]()
                names = {s.record.id: s.record.name for s in await client.ops.nodes()}
                for inst in await client.ops.ps():
                    if inst.app == "wordcount" and inst.mote == "count":
                        served[names.get(inst.node, inst.node)] += inst.served
        print()
        rows = [[str(i), w, str(n)] for i, (w, n) in enumerate(top, 1)]
        print(table_text(Table(["#", "IDENTIFIER", "COUNT"], rows)))
        print()
        rows = [[n, str(c)] for n, c in sorted(served.items())]
        print(table_text(Table(["NODE", "CALLS SERVED"], rows)))
        print(
            f"\n  map + reduce wall time: {t_done - t_dep:.2f} s; "
            f"whole demo {time.monotonic() - t0:.2f} s"
        )
    wordcount = load_app_file(app_file)
    count, top_fn = wordcount.target("count"), wordcount.target("top")
    t_local = time.monotonic()
    local: Counter[str] = Counter()
    for _, text in sources:
        local.update(count(text))
    expected = [(w, n) for w, n in top_fn(dict(local), 20)]
    print(f"  single-process check: {time.monotonic() - t_local:.2f} s")
    if top != expected or sum(served.values()) != len(sources):
        print(
            f"  MISMATCH: mesh {top[:3]}... vs local {expected[:3]}...; "
            f"calls served {sum(served.values())} of {len(sources)}"
        )
        return 1
    print(
        "  match: the mesh's top 20 equals the single-process result "
        f"({len(sources)} calls, all served)"
    )
    return 0
