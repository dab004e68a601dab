"""A test app for durable calls: every execution appends a line to a file it is given."""

from __future__ import annotations

import asyncio
import os
import time

import motes

app = motes.App("jobs")


def _note(path: str, text: str) -> None:
    with open(path, "a") as f:  # one small O_APPEND write: lines never interleave
        f.write(f"{text}\n")


@app.mote
def square(path: str, x: int) -> int:
    _note(path, f"square {x}")
    return x * x


@app.mote(min=0)
def fail(message: str) -> None:
    raise ValueError(message)


@app.mote(min=2, concurrency=8)
async def work(path: str, x: int, seconds: float) -> list[int]:
    """Notes its start, works, notes its end: a kill in between leaves a start alone."""
    _note(path, f"start {x} {os.getpid()}")
    await asyncio.sleep(seconds)
    _note(path, f"end {x} {os.getpid()}")
    return [x, os.getpid()]


@app.mote(min=0)
def crunch(path: str, x: int, seconds: float) -> int:
    """Sync and slow: runs longer than the ack wait, so it must stay in progress."""
    _note(path, f"crunch {x}")
    time.sleep(seconds)
    return x


@app.mote(min=0)
def lazy(x: int) -> int:
    return x + 1


@app.mote(min=0, labels={"role": "nowhere"})
def stranded(x: int) -> int:
    return x


@app.actor(min=0)
class Tally:
    def __init__(self) -> None:
        self.n = 0
