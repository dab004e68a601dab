"""Ray's side of the benchmark, run with Ray's own Python inside a loopback-only namespace.

``ray_driver.py serve TMP``: ``ray.init()`` a private local cluster (2 CPUs, no dashboard,
its files under TMP), create one actor, warm up, then answer the harness's requests:

- ``call_rtt`` (mode ``actor``): ``ray.get(actor.echo.remote(b"x"))``, one at a time;
- ``call_throughput``: ``n`` calls all submitted, then one ``ray.get`` of them all, to the
  actor (mode ``actor``: one sync actor, one call at a time, as a sync mote) or as tasks
  (mode ``tasks``: ``echo.remote(b"x")``, run on the cluster's worker processes);
- ``map_throughput``: ``ray.get([echo.remote(x) for x in range(n)])``, results checked;
- ``map_heavy``: the same over ``_peer.heavy`` (20 ms of sleep or CPU an item), each task
  asking for 2/3 of a CPU so that three run at once, as three instances do in Motes.

``ray_driver.py startup TMP IDLE_S``: time ``ray.init()`` (after ``import ray``), stay idle
IDLE_S seconds, measure the raylet's RSS, ``ray.shutdown()``, answer once.
"""

from __future__ import annotations

import logging
import os
import time

import _peer

PAYLOAD = _peer.PAYLOAD


def init_kwargs(tmp: str) -> dict[str, object]:
    return {
        "address": "local",  # always a new private cluster, never one found on the machine
        "num_cpus": 2,
        "include_dashboard": False,
        "_node_ip_address": "127.0.0.1",
        "_temp_dir": tmp,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }


def serve(tmp: str) -> None:
    import ray

    ray.init(**init_kwargs(tmp))
    try:

        @ray.remote
        class Echo:
            def echo(self, x):
                return x

        @ray.remote
        def echo(x):
            return x

        heavy = ray.remote(num_cpus=2 / 3)(_peer.heavy)

        actor = Echo.remote()
        ray.get(actor.echo.remote(PAYLOAD))
        ray.get([echo.remote(i) for i in range(200)])

        def call_rtt(mode: str, n: int) -> list[int]:
            submit = actor.echo.remote if mode == "actor" else echo.remote
            return _peer.rtt(lambda: ray.get(submit(PAYLOAD)), n)

        def call_throughput(mode: str, n: int) -> float:
            submit = actor.echo.remote if mode == "actor" else echo.remote
            t0 = time.perf_counter_ns()
            out = ray.get([submit(PAYLOAD) for _ in range(n)])
            dt = (time.perf_counter_ns() - t0) / 1e9
            if len(out) != n or any(r != PAYLOAD for r in out):
                raise RuntimeError("wrong results")
            return n / dt

        def map_throughput(n: int) -> float:
            t0 = time.perf_counter_ns()
            out = ray.get([echo.remote(x) for x in range(n)])
            dt = (time.perf_counter_ns() - t0) / 1e9
            if out != list(range(n)):
                raise RuntimeError("wrong results")
            return n / dt

        def map_heavy(kind: str, n: int, ms: int) -> float:
            t0 = time.perf_counter_ns()
            out = ray.get([heavy.remote(kind, x, ms) for x in range(n)])
            dt = (time.perf_counter_ns() - t0) / 1e9
            if out != list(range(n)):
                raise RuntimeError("wrong results")
            return dt

        _peer.send({"ready": True, "version": ray.__version__})
        _peer.serve(
            {
                "call_rtt": call_rtt,
                "call_throughput": call_throughput,
                "map_throughput": map_throughput,
                "map_heavy": map_heavy,
            }
        )
    finally:
        ray.shutdown()


def startup(tmp: str, idle_s: float) -> None:
    _peer.send({"ready": True})
    t0 = time.perf_counter()
    import ray

    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.init(**init_kwargs(tmp))
    startup_s = time.perf_counter() - t0
    try:
        time.sleep(idle_s)
        raylets = _peer.children(os.getpid(), "raylet")
        if len(raylets) != 1:
            raise RuntimeError(f"expected one raylet, found {raylets}")
        rss = _peer.rss_mb(raylets[0])
    finally:
        ray.shutdown()
    _peer.send({"ok": {"startup_s": startup_s, "rss_mb": rss, "import_s": import_s}})


def main() -> None:
    _peer.run(serve, startup)


if __name__ == "__main__":
    main()
