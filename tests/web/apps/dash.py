"""A test app for the dashboard: a busy function, one that never finds a node (it needs a
gpu no node has), and one that writes to its log."""

from __future__ import annotations

import motes

app = motes.App("dash")


@app.mote(min=2)
def work(x: int) -> int:
    if x % 97 == 0:
        raise ValueError(f"{x} is a multiple of 97")
    return x * 2


@app.mote(min=1, needs={"gpu": 1})
def render(scene: str) -> str:
    return scene


@app.mote
def chatter(n: int) -> int:
    print(f"chatter {n}", flush=True)
    return n
