"""A mote that burns a known amount of CPU and says how much it measured itself."""

from __future__ import annotations

import time

import motes

app = motes.App("burn")


@app.mote
def burn(seconds: float, payload: bytes) -> tuple[float, bytes]:
    """Spin for ``seconds`` of CPU; return the CPU time measured here, and ``payload``."""
    start = time.process_time()
    while time.process_time() - start < seconds:
        sum(range(1000))
    return time.process_time() - start, payload
