"""map_heavy's app: items that each take 20 ms, asleep (``nap``) or on the CPU (``burn``).

Three instances each (``min=max=3``), which the scheduler spreads one per node on the
benchmark's 3-node mesh. ``burn`` spins until the process has used 20 ms of CPU, so every
contender does the same CPU work however the machine is shared. The same two functions
run in the process pool and in Ray (``bench/drivers/_peer.py``: ``heavy``).
"""

import time

import motes

app = motes.App("heavy")
MS = 20


@app.mote(min=3, max=3)
def nap(x):
    time.sleep(MS / 1000)
    return x


@app.mote(min=3, max=3)
def burn(x):
    end = time.process_time() + MS / 1000
    while time.process_time() < end:
        pass
    return x
