"""The benchmark's app: echo motes that return their argument.

Deliberately not in a package (no ``__init__.py`` here), so its bundle is this file alone.
"""

import motes

app = motes.App("bench")


@app.mote
def echo(x):
    """Sync: runs on the worker's executor thread, one call at a time (concurrency 1)."""
    return x


@app.mote
async def echo_async(x):
    """Async: runs on the worker's event loop, up to 64 calls at once."""
    return x
