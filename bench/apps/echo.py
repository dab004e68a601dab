"""The benchmark's app: echo motes that return their argument.

Deliberately not in a package (no ``__init__.py`` here), so its bundle is this file alone.

Each mote is pinned to one instance (``max=1``), as Ray's side is one actor: the
benchmark compares the call path, not how many processes the autoscaler would start (with
the default ``max=8`` a 256-deep pipelined load scales the sync mote to 8 worker processes,
which on a 2-CPU machine is slower, and makes the mesh change shape between repetitions).
"""

import motes

app = motes.App("bench")


@app.mote(max=1)
def echo(x):
    """Sync: runs inline on the worker's event loop, one call at a time (concurrency 1)."""
    return x


@app.mote(max=1)
async def echo_async(x):
    """Async: runs on the worker's event loop, up to 64 calls at once."""
    return x
