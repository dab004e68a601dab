"""Motes benchmarks: every figure that matters is a ratio to a peer, measured side by side.

``python -m bench`` (``make bench``) runs every metric against Motes' peers (raw nats-py,
Ray, Dask; Ray and Dask each in its own virtualenv under ``bench/.peers/``, installed on
first use, and run in a loopback-only network namespace); ``--quick`` (``make
bench-quick``) makes fewer calls per repetition and leaves out ``startup`` and the peers'
``map_throughput``. How a run is organised, and how a peer plugs in, is described in
``bench/runner.py``; the latest full run is in ``bench/RESULTS.md``.
"""
