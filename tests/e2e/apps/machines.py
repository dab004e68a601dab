"""A mote that runs only on the machine labelled ``where=box``."""

import motes

app = motes.App("machines")


@app.mote(min=1, labels={"where": "box"})
def double(x: int) -> int:
    return 2 * x
