"""A second app, deployed after the scheduler leader is killed."""

import motes

app = motes.App("second")


@app.mote(min=2)
def hello(name: str) -> str:
    return f"hello {name}"
