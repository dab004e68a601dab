"""Dask's side of the benchmark, run with Dask's own Python inside a loopback-only namespace.

``dask_driver.py serve TMP``: a ``LocalCluster`` (2 worker processes of 1 thread each, on
127.0.0.1, no dashboard, scratch space under TMP) and a ``Client``, warmed up, then:

- ``call_rtt``: ``client.submit(echo, b"x", pure=False).result()``, one at a time;
- ``call_throughput``: ``n`` submits, then one ``client.gather`` of them all;
- ``map_throughput``: ``client.gather(client.map(echo, range(n), pure=False))``, checked.

``pure=False`` so that identical calls are not folded into one task.

``dask_driver.py startup TMP IDLE_S``: time ``LocalCluster`` (one worker) + ``Client``
until the worker is connected, stay idle IDLE_S seconds, measure the worker process's
RSS, close both, answer once.
"""

from __future__ import annotations

import os
import time

import _peer

PAYLOAD = _peer.PAYLOAD


def echo(x):
    return x


def cluster_kwargs(tmp: str, workers: int) -> dict[str, object]:
    import dask

    dask.config.set({"temporary-directory": tmp})  # the scheduler's scratch space too
    return {
        "n_workers": workers,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": None,
        "local_directory": tmp,
    }


def serve(tmp: str) -> None:
    from distributed import Client, LocalCluster, __version__

    cluster = LocalCluster(**cluster_kwargs(tmp, 2))
    try:
        client = Client(cluster)
        try:
            client.wait_for_workers(2)
            client.gather([client.submit(echo, PAYLOAD, pure=False) for _ in range(200)])

            def call_rtt(mode: str, n: int) -> list[int]:
                return _peer.rtt(lambda: client.submit(echo, PAYLOAD, pure=False).result(), n)

            def call_throughput(mode: str, n: int) -> float:
                t0 = time.perf_counter_ns()
                out = client.gather([client.submit(echo, PAYLOAD, pure=False) for _ in range(n)])
                dt = (time.perf_counter_ns() - t0) / 1e9
                if len(out) != n or any(r != PAYLOAD for r in out):
                    raise RuntimeError("wrong results")
                return n / dt

            def map_throughput(n: int) -> float:
                t0 = time.perf_counter_ns()
                out = client.gather(client.map(echo, range(n), pure=False))
                dt = (time.perf_counter_ns() - t0) / 1e9
                if out != list(range(n)):
                    raise RuntimeError("wrong results")
                return n / dt

            _peer.send({"ready": True, "version": __version__})
            _peer.serve(
                {
                    "call_rtt": call_rtt,
                    "call_throughput": call_throughput,
                    "map_throughput": map_throughput,
                }
            )
        finally:
            client.close()
    finally:
        cluster.close()


def startup(tmp: str, idle_s: float) -> None:
    _peer.send({"ready": True})
    t0 = time.perf_counter()
    from distributed import Client, LocalCluster

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cluster = LocalCluster(**cluster_kwargs(tmp, 1))
    try:
        client = Client(cluster)
        try:
            client.wait_for_workers(1)
            startup_s = time.perf_counter() - t0
            time.sleep(idle_s)
            (pid,) = client.run(os.getpid).values()
            rss = _peer.rss_mb(pid)
        finally:
            client.close()
    finally:
        cluster.close()
    _peer.send({"ok": {"startup_s": startup_s, "rss_mb": rss, "import_s": import_s}})


def main() -> None:
    _peer.run(serve, startup)


if __name__ == "__main__":  # worker processes are spawned: they import this module too
    main()
