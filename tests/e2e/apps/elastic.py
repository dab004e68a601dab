"""A min=0 mote that scales with its load and back to zero when idle."""

import time

import motes

app = motes.App("elastic")


@app.mote(min=0, max=3, idle=1.5)
def work(x: int) -> int:
    time.sleep(0.02)
    return x
