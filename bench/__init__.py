"""Motes benchmarks: every figure that matters is a ratio to a peer, measured side by side.

``python -m bench`` (``make bench``) runs every metric; ``--quick`` (``make bench-quick``)
runs the same metrics with fewer calls per repetition. How a run is organised, and how a
peer plugs in, is described in ``bench/runner.py``; the latest full run is in
``bench/RESULTS.md``.
"""
