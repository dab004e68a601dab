"""An app of heavy items: each ``nap`` takes 30 ms, so a map over them must spread."""

import os
import time

import motes

app = motes.App("naps")


@app.mote(min=3, max=3)
def nap(x: int) -> list[int]:
    time.sleep(0.03)
    return [x, os.getpid()]
