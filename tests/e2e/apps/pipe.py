"""A test app for flows: each stage stamps the item; the last one notes it in a file."""

from __future__ import annotations

import time
from typing import Any

import motes

app = motes.App("pipe")


def _stamp(item: dict[str, Any], stage: str) -> dict[str, Any]:
    time.sleep(item.get("pause", 0.0))
    return {**item, "trail": [*item["trail"], stage]}


@app.mote
def fetch(item: dict[str, Any]) -> dict[str, Any]:
    return _stamp(item, "fetch")


@app.mote
def parse(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("bad"):
        raise ValueError(f"cannot parse item {item['id']}")
    return _stamp(item, "parse")


@app.mote
def enrich(item: dict[str, Any]) -> dict[str, Any]:
    return _stamp(item, "enrich")


@app.mote
def store(item: dict[str, Any]) -> dict[str, Any]:
    item = _stamp(item, "store")
    with open(item["log"], "a") as f:  # one line per item that reached the end
        f.write(f"{item['id']}\n")
    return item


@app.actor(min=0)
class Ledger:
    def add(self, n: int) -> int:
        return n


app.flow("ingest", ["fetch", "parse", "store"])
app.flow("short", [fetch])
