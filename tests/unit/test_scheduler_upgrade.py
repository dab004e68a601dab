"""Surge upgrades: a new digest starts beside the old instances, which keep serving until
as many new ones are ready (in the nodes' heartbeats) as are wanted, or as could be placed."""

from __future__ import annotations

from sched_builders import app, assign, beat, elected, fresh, inst, layout, mote, node, snapshot

from motes.scheduler.state import AppPut, DrainSet, Heartbeat, SchedulerState, Tick
from motes.wire.messages import Load

V1 = app("a", mote(min=2), digest="sha256:v1")
V2 = app("a", mote(min=2), digest="sha256:v2")


def _upgrading(*nodes_: str) -> SchedulerState:
    """V1 placed on ``nodes_``, then V2 put: both versions run."""
    state, _ = fresh(elected(*(node(n) for n in nodes_), apps=(V1,)), AppPut(now=1.0, record=V2))
    return state


def test_the_old_version_serves_until_every_new_instance_is_ready() -> None:
    state = _upgrading("n1", "n2")
    assert layout(state) == {
        "n1": [("i1.3", "sha256:v2"), ("i1.1", "sha256:v1")],
        "n2": [("i1.4", "sha256:v2"), ("i1.2", "sha256:v1")],
    }

    # Readiness of the old instances says nothing about the new version.
    old_ready = Heartbeat(now=1.2, node="n1", load=Load(), ready=frozenset({"i1.1"}))
    assert state.handle(old_ready) == []
    assert state.handle(beat(state, "n1", 1.3)) == []  # i1.3 ready, i1.4 not yet
    assert state.handle(beat(state, "n2", 1.3, ready=False)) == []
    commands = state.handle(beat(state, "n2", 1.4))

    assert commands == [
        assign("n1", inst("i1.3", V2), cause="e1.5"),
        assign("n2", inst("i1.4", V2), cause="e1.5"),
    ]


def test_a_crashlooping_new_version_leaves_the_old_one_serving() -> None:
    state = _upgrading("n1", "n2")

    for t in range(2, 30):  # the new instances never report ready
        for nid in ("n1", "n2"):
            state.handle(
                Heartbeat(now=float(t), node=nid, load=Load(), ready=frozenset({"i1.1", "i1.2"}))
            )
        assert state.handle(Tick(now=t + 0.5)) == []

    assert layout(state) == {
        "n1": [("i1.3", "sha256:v2"), ("i1.1", "sha256:v1")],
        "n2": [("i1.4", "sha256:v2"), ("i1.2", "sha256:v1")],
    }


def test_the_old_version_goes_when_as_many_new_ones_are_ready_as_could_be_placed() -> None:
    v1 = app("a", mote(min=3), digest="sha256:v1")
    v2 = app("a", mote(min=3, needs={"cpu": 2}), digest="sha256:v2")  # two fit on n1
    state, _ = fresh(elected(node("n1", cpus=4), apps=(v1,)), AppPut(now=1.0, record=v2))
    assert state.explain("a", "m").note == ""  # 2 new + 3 old: nothing looks pending

    commands = state.handle(beat(state, "n1", 1.5))

    assert commands == [assign("n1", inst("i1.4", v2), inst("i1.5", v2), cause="e1.2")]


def test_with_nothing_wanted_the_old_version_goes_at_once() -> None:
    lazy = app("a", mote(min=0), digest="sha256:v2")

    state, commands = fresh(elected(node("n1"), apps=(V1,)), AppPut(now=1.0, record=lazy))

    assert commands == [assign("n1", cause="e1.1")]
    assert layout(state) == {}


def test_when_no_node_takes_the_new_version_the_old_one_keeps_serving() -> None:
    gpu_only = app("a", mote(min=2, needs={"gpu": 1}), digest="sha256:v2")

    state, commands = fresh(
        elected(node("n1"), node("n2"), apps=(V1,)), AppPut(now=1.0, record=gpu_only)
    )

    assert commands == []
    assert {d for insts in layout(state).values() for _, d in insts} == {"sha256:v1"}


def test_old_instances_do_not_hold_back_the_new_versions_resources() -> None:
    v1 = app("a", mote(needs={"cpu": 4}), digest="sha256:v1")
    v2 = app("a", mote(needs={"cpu": 4}), digest="sha256:v2")

    _, commands = fresh(elected(node("n1", cpus=4), apps=(v1,)), AppPut(now=1.0, record=v2))

    assert commands == [assign("n1", inst("i1.2", v2), inst("i1.1", v1), cause="e1.1")]


def test_a_lost_old_instance_is_not_started_again() -> None:
    state = _upgrading("n1", "n2")
    state.handle(beat(state, "n1", 1.5, ready=False))

    commands = state.handle(Tick(now=2.0))  # n2 is lost, with i1.4 (new) and i1.2 (old)

    assert layout(state) == {
        "n1": [("i1.3", "sha256:v2"), ("i1.5", "sha256:v2"), ("i1.1", "sha256:v1")]
    }
    assert [c.assignment.node for c in commands[1:]] == ["n1", "n2"]


def test_rolling_back_mid_upgrade_keeps_the_instances_still_running() -> None:
    state = _upgrading("n1", "n2")
    state.handle(Heartbeat(now=1.2, node="n1", load=Load(), ready=frozenset({"i1.1"})))
    state.handle(Heartbeat(now=1.2, node="n2", load=Load(), ready=frozenset({"i1.2"})))

    commands = state.handle(AppPut(now=1.5, record=V1))

    # v1 is current again and ready everywhere: v2 is dropped, nothing new starts.
    assert commands == [
        assign("n1", inst("i1.1", V1), cause="e1.4"),
        assign("n2", inst("i1.2", V1), cause="e1.4"),
    ]


def test_another_apps_upgrade_leaves_this_one_alone() -> None:
    b = app("b", mote("x"))
    state, _ = fresh(elected(node("n1"), node("n2"), apps=(V1, b)))
    before = [i.iid for insts in state.assigned.values() for i in insts if i.app == "b"]

    state.handle(AppPut(now=1.0, record=V2))
    for nid in ("n1", "n2"):
        state.handle(beat(state, nid, 1.5))

    assert [i.iid for insts in state.assigned.values() for i in insts if i.app == "b"] == before


def test_actors_keep_their_old_shards_until_the_new_version_is_ready() -> None:
    v1 = app("a", mote(kind="actor", min=2, shards=4), digest="sha256:v1")
    v2 = app("a", mote(kind="actor", min=2, shards=6), digest="sha256:v2")
    state, commands = fresh(elected(node("n1"), node("n2"), apps=(v1,)), AppPut(now=1.0, record=v2))

    # Each version's key space is owned once over; the old one is not resharded.
    assert commands == [
        assign(
            "n1",
            inst("i1.3", v2, shards=[0, 2, 4], nshards=6),
            inst("i1.1", v1, shards=[0, 2], nshards=4),
            cause="e1.1",
        ),
        assign(
            "n2",
            inst("i1.4", v2, shards=[1, 3, 5], nshards=6),
            inst("i1.2", v1, shards=[1, 3], nshards=4),
            cause="e1.1",
        ),
    ]

    state.handle(beat(state, "n1", 1.5))
    commands = state.handle(beat(state, "n2", 1.5))

    assert commands == [
        assign("n1", inst("i1.3", v2, shards=[0, 2, 4], nshards=6), cause="e1.3"),
        assign("n2", inst("i1.4", v2, shards=[1, 3, 5], nshards=6), cause="e1.3"),
    ]


def test_an_old_actor_instance_keeps_its_shards_when_a_new_one_moves() -> None:
    v1 = app("a", mote(kind="actor", min=2, shards=4), digest="sha256:v1")
    v2 = app("a", mote(kind="actor", min=2, shards=4), digest="sha256:v2")
    state, _ = fresh(
        elected(node("n1"), node("n2"), node("n3"), apps=(v1,)), AppPut(now=1.0, record=v2)
    )
    # The new version is fitted before the old one is counted: it starts beside it.
    assert layout(state) == {
        "n1": [("i1.3", "sha256:v2"), ("i1.1", "sha256:v1")],
        "n2": [("i1.4", "sha256:v2"), ("i1.2", "sha256:v1")],
    }

    for nid in ("n1", "n3"):
        state.handle(beat(state, nid, 1.5, ready=False))
    state.handle(Tick(now=2.0))  # n2 is lost: a new v2 instance takes over its shards

    shards = {(i.iid, i.digest): i.shards for insts in state.assigned.values() for i in insts}
    assert shards == {
        ("i1.3", "sha256:v2"): [0, 2],
        ("i1.5", "sha256:v2"): [1, 3],
        ("i1.1", "sha256:v1"): [0, 2],  # the old one is neither resharded nor replaced
    }


def test_an_upgrade_scaled_out_waits_for_every_wanted_instance() -> None:
    v1 = app("a", mote(min=1, max=4), digest="sha256:v1")
    v2 = app("a", mote(min=1, max=4), digest="sha256:v2")
    state, _ = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(v1,)))
    for t in (0.2, 0.4, 0.6):  # three calls at a time: scaled out to 3, in steps
        for nid in ("n1", "n2", "n3"):
            state.handle(beat(state, nid, t, work={"i1.1": 3} if nid == "n1" else None))
    assert len(layout(state)) == 3
    state.handle(AppPut(now=1.0, record=v2))

    state.handle(beat(state, "n1", 1.5))
    state.handle(beat(state, "n2", 1.5))
    assert sum(1 for insts in state.assigned.values() for i in insts if i.digest == v1.digest) == 3

    state.handle(beat(state, "n3", 1.5))
    assert {d for insts in layout(state).values() for _, d in insts} == {"sha256:v2"}


def test_a_new_leader_mid_upgrade_starts_no_extra_instances() -> None:
    old = _upgrading("n1", "n2")

    state, commands = fresh(snapshot(old, epoch=2, now=1.5))

    assert commands == []  # the old version keeps serving until the new one is ready
    assert state.wanted(V2, V2.motes[0]) == 2


def test_a_new_leader_mid_upgrade_keeps_the_old_version_until_the_new_is_ready() -> None:
    old = _upgrading("n1", "n2")
    state, _ = fresh(snapshot(old, epoch=2, now=1.5))

    for nid in ("n1", "n2"):
        state.handle(beat(state, nid, 2.0))

    assert {d for insts in layout(state).values() for _, d in insts} == {"sha256:v2"}


def test_draining_mid_upgrade_empties_the_node() -> None:
    state = _upgrading("n1", "n2", "n3")

    state.handle(DrainSet(now=1.5, node="n1", drained=True))

    assert "n1" not in layout(state)
