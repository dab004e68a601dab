"""Autoscaling: reported work (in-flight plus queued calls) raises a mote's instance count
up to ``max``, a caller's demand to at least one; ``idle`` seconds without work bring it
back to ``min``. A new leader keeps what the previous one scaled to."""

from __future__ import annotations

from typing import Any

import pytest
from sched_builders import (
    app,
    assign,
    beat,
    elected,
    fresh,
    iids,
    inst,
    mote,
    node,
    per_node,
    snapshot,
)

from motes.scheduler.state import (
    START_GRACE_S,
    AppDeleted,
    AppPut,
    Command,
    Demand,
    NodeLost,
    SchedulerState,
    Tick,
)

NODES = (node("n1"), node("n2"), node("n3"), node("n4"))


def _live(state: SchedulerState, now: float, work: dict[str, int] | None = None) -> list[Command]:
    """Every known node heartbeats at ``now``, all its instances ready; ``work`` rides on
    the first one's."""
    commands: list[Command] = []
    for k, nid in enumerate(sorted(state.nodes)):
        commands += state.handle(beat(state, nid, now, work=work if k == 0 else None))
    return commands


def _settle(state: SchedulerState, now: float, work: dict[str, int], rounds: int = 6) -> None:
    """Heartbeat rounds, 0.1 s apart, until the autoscaler has taken every step it will."""
    for k in range(rounds):
        _live(state, now + k / 10, work)


def _count(state: SchedulerState) -> int:
    return len(iids(state))


# --- scaling out -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("work", "concurrency", "expected"),
    [
        (0, 1, 1),
        (1, 1, 1),
        (2, 2, 1),  # exactly at capacity: no need for more
        (3, 2, 2),
        (8, 2, 4),
        (9, 1, 5),  # capped at max
        (500, 1, 5),
        (64, 64, 1),  # an async mote serves 64 at once
        (65, 64, 2),
    ],
)
def test_work_beyond_capacity_adds_instances_up_to_max(
    work: int, concurrency: int, expected: int
) -> None:
    scaled = app("a", mote(max=5, concurrency=concurrency))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))

    _settle(state, 0.5, work={"i1.1": work})

    assert _count(state) == expected
    assert state.wanted(scaled, scaled.motes[0]) == expected
    assert max(per_node(state).values()) == (2 if expected > len(NODES) else 1)


def test_scaling_out_at_most_doubles_and_waits_for_the_instances_starting() -> None:
    scaled = app("a", mote(max=8))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))

    commands = state.handle(beat(state, "n1", 0.5, work={"i1.1": 100}))

    assert commands == [assign("n2", inst("i1.2", scaled), cause="e1.1")]  # 1 -> 2, not 8
    assert state.explain("a", "m").note == "scaled out to 2 for the reported work (min 1, max 8)"
    # i1.2 is starting: its queue is part of the work, so nothing more until it is ready.
    assert state.handle(beat(state, "n1", 0.6, work={"i1.1": 100})) == []
    commands = state.handle(beat(state, "n2", 0.7))

    assert commands == [
        assign("n3", inst("i1.3", scaled), cause="e1.3"),
        assign("n4", inst("i1.4", scaled), cause="e1.3"),
    ]


def test_the_work_of_every_instance_on_every_node_adds_up() -> None:
    scaled = app("a", mote(min=2, max=8, concurrency=2))
    state, _ = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(scaled,)))

    assert state.handle(beat(state, "n1", 0.5, work={"i1.1": 3})) == []  # 3 calls, 2 instances
    commands = state.handle(beat(state, "n2", 0.6, work={"i1.2": 3}))  # 6 calls: 3 needed

    assert commands == [assign("n3", inst("i1.3", scaled), cause="e1.2")]


def test_work_for_an_instance_the_scheduler_did_not_place_is_ignored() -> None:
    state, _ = fresh(elected(*NODES, apps=(app("a", mote(max=4)),)))

    assert state.handle(beat(state, "n1", 0.5, work={"i9.9": 50})) == []
    assert state.scale == {}


def test_less_work_does_not_scale_in_before_the_mote_has_been_idle() -> None:
    scaled = app("a", mote(max=4, idle=10))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))
    _settle(state, 0.5, work={"i1.1": 4})
    assert _count(state) == 4

    assert _live(state, 1.5, work={"i1.1": 1}) == []
    assert state.handle(Tick(now=1.6)) == []
    assert _count(state) == 4


def _swamped_with_a_crashlooper(state: SchedulerState, t: float) -> None:
    """n1's instance has 50 calls waiting; n2's never gets ready; n3 and n4 serve what
    they are given."""
    state.handle(beat(state, "n1", t, work={"i1.1": 50}))
    state.handle(beat(state, "n2", t, ready=False))
    for nid in ("n3", "n4"):
        state.handle(beat(state, nid, t))
    state.handle(Tick(now=t + 0.5))


def test_an_instance_that_never_starts_holds_scale_out_back_only_for_a_grace() -> None:
    scaled = app("a", mote(min=2, max=6))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))  # i1.1 on n1, i1.2 on n2, at t=0

    for t in range(1, int(START_GRACE_S)):
        _swamped_with_a_crashlooper(state, float(t))
    assert _count(state) == 2  # i1.2 may still be starting: its queue would count twice

    for t in range(int(START_GRACE_S), int(START_GRACE_S) + 3):
        _swamped_with_a_crashlooper(state, float(t))

    assert _count(state) > 2


def test_after_a_failover_a_crashlooping_instance_stops_holding_scale_out_back() -> None:
    old, _ = fresh(elected(*NODES, apps=(app("a", mote(min=2, max=6)),)))
    state, _ = fresh(snapshot(old, epoch=2, now=0.0))

    for t in range(1, int(START_GRACE_S) + 3):
        _swamped_with_a_crashlooper(state, float(t))

    assert _count(state) > 2


# --- demand and idling -----------------------------------------------------------------


def test_demand_starts_one_for_min_zero_and_idling_stops_it() -> None:
    lazy = app("a", mote(min=0, max=4, idle=5))
    state, _ = fresh(elected(node("n1"), node("n2"), apps=(lazy,)))

    assert state.handle(Demand(now=1.0, app="a", mote="m")) == [
        assign("n1", inst("i1.1", lazy), cause="e1.1")
    ]
    assert state.scale == {("a", "m"): 1}
    _live(state, 5.5)
    assert state.handle(Tick(now=6.0)) == []  # exactly `idle` seconds: not yet

    _live(state, 6.1)
    commands = state.handle(Tick(now=6.2))

    assert commands == [assign("n1", cause="e1.7")]
    assert state.scale == {}
    assert state.explain("a", "m").note == "min=0 and no work: an instance starts on the first call"
    # The next call starts one again.
    assert state.handle(Demand(now=7.0, app="a", mote="m")) == [
        assign("n1", inst("i1.2", lazy), cause="e1.8")
    ]


def test_demand_then_work_scales_a_lazy_mote_out() -> None:
    lazy = app("a", mote(min=0, max=3))
    state, _ = fresh(elected(*NODES, apps=(lazy,)), Demand(now=1.0, app="a", mote="m"))

    _settle(state, 1.5, work={"i1.1": 7})

    assert _count(state) == 3


def test_work_keeps_a_mote_scaled_out_then_idling_returns_it_to_min() -> None:
    scaled = app("a", mote(min=1, max=4, idle=2))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))
    _settle(state, 0.1, work={"i1.1": 4})
    assert _count(state) == 4

    for t in range(1, 11):  # one call in flight, every second, for ten seconds
        assert _live(state, float(t), work={"i1.1": 1}) == []
        assert state.handle(Tick(now=t + 0.5)) == []
    assert _count(state) == 4

    for t in (11.0, 12.0):
        _live(state, t)
    assert state.handle(Tick(now=12.0)) == []  # idle for 2 s: not more than `idle` yet
    _live(state, 12.4)
    commands = state.handle(Tick(now=12.5))

    assert [c.assignment.node for c in commands if not isinstance(c, NodeLost)] == [
        "n2",
        "n3",
        "n4",
    ]
    assert iids(state) == ["i1.1"]  # the instances started last are stopped first
    assert state.scale == {}


def test_demand_counts_as_activity() -> None:
    scaled = app("a", mote(min=1, max=4, idle=2))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))
    _settle(state, 0.1, work={"i1.1": 3})
    assert _count(state) == 3

    _live(state, 1.5)
    assert state.handle(Demand(now=2.0, app="a", mote="m")) == []
    _live(state, 3.0)

    assert state.handle(Tick(now=3.5)) == []  # 1.5 s since the demand
    assert _count(state) == 3


def test_deleting_an_app_forgets_its_scale() -> None:
    scaled = app("a", mote(max=4))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))
    _settle(state, 0.1, work={"i1.1": 3})

    state.handle(AppDeleted(now=1.0, name="a"))
    state.handle(AppPut(now=1.1, record=scaled))

    assert state.scale == {}
    assert _count(state) == 1


def test_room_freed_by_a_scale_in_is_used_in_the_same_tick() -> None:
    a = app("a", mote(min=2, needs={"cpu": 1}))  # fitted before b: its second one is pending
    b = app("b", mote(min=0, needs={"cpu": 1}, idle=1))
    state, _ = fresh(
        elected(node("n1", cpus=2), apps=(b,)),
        Demand(now=0.0, app="b", mote="m"),
        AppPut(now=0.1, record=a),
    )
    assert per_node(state, "m") == {"n1": 2}  # one of each
    _live(state, 1.4)

    commands = state.handle(Tick(now=1.5))  # b has been idle for 1.5 s > 1: back to 0

    assert commands == [assign("n1", inst("i1.2", a), inst("i1.3", a), cause="e1.4")]
    assert state.explain("a", "m").placed == 2


# --- a new leader ----------------------------------------------------------------------


def _scaled_to_three(idle: float) -> tuple[SchedulerState, Any]:
    scaled = app("a", mote(min=1, max=4, idle=idle))
    state, _ = fresh(elected(*NODES, apps=(scaled,)))
    _settle(state, 0.1, work={"i1.1": 3})
    assert _count(state) == 3
    return state, scaled


def test_a_new_leader_keeps_what_the_previous_one_scaled_to() -> None:
    old, _ = _scaled_to_three(idle=10)

    state, commands = fresh(snapshot(old, epoch=2, now=5.0))

    assert commands == []
    assert state.scale == {("a", "m"): 3}
    for t in (6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0):
        _live(state, t, work={"i1.1": 3})  # still busy
        assert state.handle(Tick(now=t + 0.5)) == []
    assert _count(state) == 3


def test_a_new_leader_scales_an_idle_mote_in_after_idle_seconds() -> None:
    old, _ = _scaled_to_three(idle=10)
    state, _ = fresh(snapshot(old, epoch=2, now=5.0))

    _live(state, 14.9)
    assert state.handle(Tick(now=15.0)) == []
    _live(state, 15.1)
    state.handle(Tick(now=15.2))

    assert iids(state) == ["i1.1"]


def test_a_tick_that_loses_a_node_still_scales_an_idle_mote_in() -> None:
    scaled = app("a", mote(min=1, max=3, idle=5))
    state, _ = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(scaled,)))
    _settle(state, 0.1, work={"i1.1": 3})
    assert per_node(state) == {"n1": 1, "n2": 1, "n3": 1}
    for nid in ("n1", "n2"):  # n3 goes silent
        state.handle(beat(state, nid, 6.0))

    commands = state.handle(Tick(now=6.5))  # n3 lost, and idle for 5.9 s > 5

    assert [c.node for c in commands if isinstance(c, NodeLost)] == ["n3"]
    assert iids(state) == ["i1.1"]  # back to min: nothing started for the lost instance
    assert state.scale == {}
