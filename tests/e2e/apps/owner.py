"""Motes that care where they run: owner context and capabilities."""

import motes

app = motes.App("owner")


@app.mote(kind="batch")
def crunch(x: int) -> int:
    return x * x


@app.mote(kind="interactive")
def ui(x: int) -> str:
    return str(x)


@app.mote(needs={"gpu": 1})
def render(scene: str) -> str:
    return scene.upper()
