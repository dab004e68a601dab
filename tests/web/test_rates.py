"""Rates and latency percentiles from the workers' cumulative reports (pure)."""

from __future__ import annotations

import pytest

from motes.meter import CallMeter, latency_bucket
from motes.web.hub import WINDOW_S, InstView, percentile, rates
from motes.wire.messages import InstanceStatus, Ok


@pytest.mark.parametrize("seconds", [2e-6, 1e-4, 3.3e-3, 0.25, 4.0])
def test_a_bucket_brackets_its_latency_within_19_percent(seconds: float) -> None:
    b = latency_bucket(seconds)
    assert 2 ** (b / 4) <= seconds * 1e6 < 2 ** ((b + 1) / 4)
    middle_ms = percentile({b: 1}, 50)
    assert middle_ms is not None and abs(middle_ms / (seconds * 1e3) - 1) < 0.19


def test_percentiles_of_a_histogram() -> None:
    hist = {latency_bucket(1e-3): 98, latency_bucket(0.1): 2}  # 98 calls of 1 ms, 2 of 100 ms
    p50, p99 = percentile(hist, 50), percentile(hist, 99)
    assert p50 is not None and 0.9 < p50 < 1.1
    assert p99 is not None and 90 < p99 < 110
    assert percentile({}, 50) is None


async def test_the_meter_counts_served_calls_by_latency() -> None:
    meter = CallMeter()
    for _ in range(3):
        meter.end(meter.begin(), Ok(1))
    meter.end(meter.begin(), None)  # dropped: not a served call
    assert sum(meter.latency().values()) == 3


def _status(served: int, failed: int, hist: dict[int, int]) -> InstanceStatus:
    return InstanceStatus(
        iid="i1",
        app="a",
        mote="m",
        digest="d",
        node="n",
        state="ready",
        served=served,
        failed=failed,
        latency=hist,
    )


def test_rates_are_over_the_window_and_fall_to_zero_when_calls_stop() -> None:
    inst = InstView(iid="i1", app="a", mote="m", digest="d", node="n")
    inst.observe(_status(100, 0, {10: 100}), now=0.0)
    inst.observe(_status(300, 10, {10: 250, 20: 50}), now=5.0)
    inst.observe(_status(600, 10, {10: 500, 20: 100}), now=10.0)
    r = rates(inst, now=10.0)
    assert r.calls_s == pytest.approx(50.0)  # 500 calls in 10 s
    assert r.errors_s == pytest.approx(1.0)
    assert r.latency == {10: 400, 20: 100}  # the window's calls, not those before it
    idle = rates(inst, now=10.0 + WINDOW_S + 1)  # no report since: nothing in the window
    assert idle.calls_s == 0 and idle.latency == {} and idle.since_start == {10: 500, 20: 100}
