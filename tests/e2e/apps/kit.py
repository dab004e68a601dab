"""A test app exercising every kind of mote."""

from __future__ import annotations

import asyncio
import os

import motes

app = motes.App("kit")


@app.mote(min=3)
def echo(x: object) -> object:
    return x


@app.mote
def add(a: int, b: int = 0) -> int:
    return a + b


@app.mote
def boom(message: str) -> None:
    raise ValueError(message)


@app.mote
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@app.mote
def shout(text: str) -> int:
    print(f"shouting {text}")
    return os.getpid()


@app.mote(min=0)
def lazy(x: int) -> int:
    return x * 2


@app.mote(min=0, needs={"gpu": 1})
def render(scene: str) -> str:
    return scene


@app.mote(min=0, labels={"role": "nowhere"})
def stranded(x: int) -> int:
    return x


@app.actor
class Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, n: int) -> int:
        self.total += n
        return self.total

    def pid(self) -> int:
        return os.getpid()
