"""The scheduler and the machines' owners: drain, presence (``motes here``), battery, and
vetoes that start failing under instances already placed (they move, then stay put)."""

from __future__ import annotations

import pytest
from sched_builders import RULES, app, assign, beat, elected, fresh, inst, mote, node, per_node

from motes.scheduler.state import AppPut, DrainSet, NodeUp, PresenceSet, SchedulerState
from motes.wire.messages import NodeAssignment, Power, Verdict

TWO = app("a", mote(min=2))


def _verdict(
    state: SchedulerState, rule: str, nid: str, mote_name: str = "m", app_name: str = "a"
) -> Verdict:
    row = next(r for r in state.explain(app_name, mote_name).nodes if r.node == nid)
    return row.verdicts[RULES.index(rule)]


# --- drain -----------------------------------------------------------------------------


def test_a_drained_node_is_emptied_and_takes_nothing_new() -> None:
    state, commands = fresh(
        elected(node("n1"), node("n2"), node("n3"), apps=(TWO,)),  # n1: i1.1, n2: i1.2
        DrainSet(now=1.0, node="n1", drained=True),
    )

    assert commands == [
        assign("n1", cause="e1.1"),
        assign("n3", inst("i1.3", TWO), cause="e1.1"),
    ]
    verdict = _verdict(state, "liveness", "n1")
    assert (verdict.ok, verdict.reason) == (False, "node is draining (`motes drain`)")

    # A new app avoids it too, even though it is the emptiest node.
    commands = state.handle(AppPut(now=1.5, record=app("b", mote("x"))))
    assert commands == [
        assign("n2", inst("i1.2", TWO), inst("i1.4", app("b", mote("x")), "x"), cause="e1.2")
    ]


def test_undraining_allows_the_node_again_but_moves_nothing_back() -> None:
    state, _ = fresh(
        elected(node("n1"), node("n2"), node("n3"), apps=(TWO,)),
        DrainSet(now=1.0, node="n1", drained=True),
    )

    commands = state.handle(DrainSet(now=2.0, node="n1", drained=False))

    assert commands == []  # placed instances are sticky: n2 and n3 keep theirs
    assert per_node(state) == {"n2": 1, "n3": 1}
    assert _verdict(state, "liveness", "n1").ok
    # ...and the next placement is free to use it.
    b = app("b", mote("x"))
    assert state.handle(AppPut(now=2.5, record=b)) == [
        assign("n1", inst("i1.4", b, "x"), cause="e1.3")
    ]


def test_draining_every_node_leaves_the_mote_pending_until_one_is_undrained() -> None:
    state, commands = fresh(
        elected(node("n1"), node("n2"), apps=(TWO,)),
        DrainSet(now=1.0, node="n1", drained=True),
        DrainSet(now=1.1, node="n2", drained=True),
    )

    assert commands == [assign("n2", cause="e1.2")]  # n2 had taken n1's: it moves no further
    assert per_node(state) == {}
    why = state.explain("a", "m")
    assert (why.desired, why.placed) == (2, 0)
    assert why.note == "2 instance(s) pending: no node passes every rule"

    commands = state.handle(DrainSet(now=2.0, node="n2", drained=False))

    assert commands == [assign("n2", inst("i1.4", TWO), inst("i1.5", TWO), cause="e1.3")]


def test_a_new_leader_honours_drains_and_moves_what_a_drained_node_still_runs() -> None:
    placed = NodeAssignment(node="n1", epoch=1, instances=[inst("i1.1", TWO), inst("i1.2", TWO)])
    snapshot = elected(
        node("n1"),
        node("n2"),
        apps=(TWO,),
        epoch=2,
        assignments={"n1": placed},
        drained=frozenset({"n1"}),
    )

    state, commands = fresh(snapshot)

    assert commands == [
        assign("n1", epoch=2, cause="e2.0"),
        assign("n2", inst("i2.1", TWO), inst("i2.2", TWO), epoch=2, cause="e2.0"),
    ]
    assert state.drained == {"n1"}


# --- presence (`motes here`) -----------------------------------------------------------

DESK = app("a", mote("job", usage="batch"), mote("ui", usage="interactive"))


def test_presence_moves_interactive_motes_to_the_user_and_batch_motes_away() -> None:
    state, commands = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(DESK,)))
    # Nobody is known to be anywhere: both go where they fit best.
    assert commands == [
        assign("n1", inst("i1.1", DESK, "job"), cause="e1.0"),
        assign("n2", inst("i1.2", DESK, "ui"), cause="e1.0"),
    ]

    commands = state.handle(PresenceSet(now=1.0, node="n1"))

    assert commands == [
        assign("n1", inst("i1.4", DESK, "ui"), cause="e1.1"),  # the user is here now
        assign("n2", inst("i1.3", DESK, "job"), cause="e1.1"),  # off the machine in use
    ]
    assert _verdict(state, "owner", "n1", "job").reason == "batch: a person is using this machine"
    assert _verdict(state, "owner", "n2", "ui").reason == "interactive: the user is on another node"
    assert _verdict(state, "owner", "n1", "ui").score == 100.0


def test_presence_moving_on_moves_the_interactive_mote_again() -> None:
    state, _ = fresh(
        elected(node("n1"), node("n2"), apps=(DESK,), presence="n1"),
        PresenceSet(now=1.0, node="n2"),
    )

    assert per_node(state, "ui") == {"n2": 1}
    assert per_node(state, "job") == {"n1": 1}


def test_forgetting_presence_moves_nothing() -> None:
    state, _ = fresh(elected(node("n1"), node("n2"), apps=(DESK,), presence="n1"))
    before = dict(state.assigned)

    assert state.handle(PresenceSet(now=1.0, node=None)) == []
    assert state.assigned == before
    assert _verdict(state, "owner", "n2", "ui").reason == "interactive: nobody ran `motes here` yet"


def test_interactive_instances_all_go_where_the_user_is() -> None:
    ui = app("a", mote("ui", usage="interactive", min=3))

    state, _ = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(ui,), presence="n2"))

    assert per_node(state) == {"n2": 3}


def test_an_interactive_mote_waits_while_the_users_node_is_drained() -> None:
    ui = app("a", mote("ui", usage="interactive"))
    state, commands = fresh(
        elected(node("n1"), node("n2"), apps=(ui,), presence="n1"),
        DrainSet(now=1.0, node="n1", drained=True),
    )

    assert commands == [assign("n1", cause="e1.1")]
    assert state.explain("a", "ui").placed == 0


# --- battery ---------------------------------------------------------------------------

BATCH = app("a", mote(usage="batch"), mote("any"))


def test_a_node_going_on_battery_sheds_its_batch_motes_only() -> None:
    state, _ = fresh(elected(node("n1"), node("n2"), apps=(BATCH,)))
    assert per_node(state, "m") == {"n1": 1}
    assert per_node(state, "any") == {"n2": 1}

    commands = state.handle(beat(state, "n1", 0.5, power=Power(on_battery=True, battery_pct=40)))

    assert commands == [
        assign("n1", cause="e1.1"),
        assign("n2", inst("i1.2", BATCH, "any"), inst("i1.3", BATCH), cause="e1.1"),
    ]
    assert _verdict(state, "owner", "n1").reason == "batch: on battery (40%)"

    # Back on mains: allowed again, but nothing moves back by itself.
    assert state.handle(beat(state, "n1", 1.0, power=Power(on_battery=False))) == []
    assert _verdict(state, "owner", "n1").ok


def test_a_power_battery_label_keeps_batch_motes_off_for_good() -> None:
    nodes = (node("n1", labels={"power": "battery"}), node("n2"))
    spread_out = app("a", mote(usage="batch", min=2), mote("any", min=2))

    state, _ = fresh(elected(*nodes, apps=(spread_out,)))

    assert per_node(state, "m") == {"n2": 2}
    assert per_node(state, "any") == {"n1": 1, "n2": 1}
    assert _verdict(state, "owner", "n1").reason == "batch: on battery"


def test_a_batch_mote_with_only_battery_nodes_stays_pending() -> None:
    state, commands = fresh(
        elected(node("n1", labels={"power": "battery"}), apps=(app("a", mote(usage="batch")),))
    )

    assert commands == []
    assert state.explain("a", "m").note == "1 instance(s) pending: no node passes every rule"


def test_a_heartbeat_that_only_repeats_the_power_state_decides_nothing() -> None:
    on_battery = Power(on_battery=True, battery_pct=40)
    state, _ = fresh(elected(node("n1"), node("n2"), apps=(BATCH,)))
    state.handle(beat(state, "n1", 0.5, power=on_battery))

    assert state.handle(beat(state, "n1", 1.0, power=on_battery)) == []


def test_a_node_updating_its_record_is_still_on_battery() -> None:
    state, _ = fresh(elected(node("n1"), apps=(app("a", mote(usage="batch")),)))
    state.handle(beat(state, "n1", 0.5, power=Power(on_battery=True)))
    assert per_node(state) == {}

    commands = state.handle(NodeUp(now=0.6, record=node("n1", labels={"zone": "a"})))

    assert commands == []  # a battery-powered laptop does not start a batch job
    assert per_node(state) == {}


# --- labels and capabilities change under placed instances -----------------------------


def test_an_instance_moves_when_its_node_loses_a_required_label() -> None:
    zoned = app("a", mote(labels={"zone": "a"}))
    state, _ = fresh(
        elected(node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "a"}), apps=(zoned,))
    )
    assert per_node(state) == {"n1": 1}

    commands = state.handle(NodeUp(now=1.0, record=node("n1", labels={"zone": "b"})))

    assert commands == [assign("n1", cause="e1.1"), assign("n2", inst("i1.2", zoned), cause="e1.1")]


@pytest.mark.parametrize(
    ("labels", "moves"),
    [({"screen": "false"}, True), ({"screen": "yes"}, False), ({"zone": "a"}, False)],
)
def test_a_screen_hidden_by_a_label_moves_the_instance(labels: dict, moves: bool) -> None:
    kiosk = app("a", mote(needs={"screen": True}))
    state, _ = fresh(elected(node("n1", screen=True), node("n2", screen=True), apps=(kiosk,)))

    state.handle(NodeUp(now=1.0, record=node("n1", screen=True, labels=labels)))

    assert per_node(state) == ({"n2": 1} if moves else {"n1": 1})


def test_a_screen_mote_goes_only_where_a_screen_was_detected() -> None:
    kiosk = app("a", mote(needs={"screen": True, "camera": True}, min=2))

    state, _ = fresh(
        elected(
            node("n1"), node("n2", screen=True, camera=True), node("n3", screen=True), apps=(kiosk,)
        )
    )

    assert per_node(state) == {"n2": 2}
    assert _verdict(state, "capabilities", "n3").reason == "lacks a camera"
