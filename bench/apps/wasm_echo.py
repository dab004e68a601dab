"""The wasm benchmark's app: one echo function declared natively and as a wasm mote.

Not in a package, so its bundle is this file alone; each mote pinned to one instance.
"""

import motes

app = motes.App("wasmbench")


def echo(x):
    return x


app.mote(name="echo_native", max=1)(echo)
app.mote(name="echo_wasm", max=1, sandbox="wasm")(echo)
