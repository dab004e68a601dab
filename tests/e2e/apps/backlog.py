"""A sync mote slow enough that a burst of durable calls is a backlog (one instance at
first, room for three)."""

import time

import motes

app = motes.App("backlog")


@app.mote(min=1, max=3)
def slow(x: int) -> int:
    time.sleep(0.1)
    return x
