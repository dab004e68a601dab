"""The scheduler's state machine, fed event sequences: what it assigns, and why."""

from __future__ import annotations

import re

import pytest
from sched_builders import (
    RULES,
    app,
    assign,
    beat,
    elected,
    fresh,
    iids,
    inst,
    layout,
    mote,
    node,
    per_node,
)

from motes.scheduler.state import (
    AppDeleted,
    AppPut,
    Assign,
    Demand,
    Heartbeat,
    NodeGone,
    NodeLost,
    NodeUp,
    SchedulerState,
    Tick,
)
from motes.wire.messages import Load, NodeAssignment

A = app("a", mote(min=3))


def test_nothing_is_decided_before_election() -> None:
    state = SchedulerState(failure_timeout=1.5)
    before = [
        NodeUp(now=0.0, record=node("n1")),
        AppPut(now=0.0, record=A),
        Demand(now=0.0, app="a", mote="m"),
        Tick(now=10.0),
    ]
    assert [state.handle(e) for e in before] == [[], [], [], []]
    assert state.epoch == 0
    assert state.assigned == {}

    commands = state.handle(elected(node("n1"), apps=(A,)))

    assert [type(c).__name__ for c in commands] == ["Assign"]
    assert per_node(state) == {"n1": 3}


def test_three_instances_on_three_nodes_go_one_per_node() -> None:
    _, commands = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(A,)))

    assert commands == [
        assign("n1", inst("i1.1", A), cause="e1.0"),
        assign("n2", inst("i1.2", A), cause="e1.0"),
        assign("n3", inst("i1.3", A), cause="e1.0"),
    ]


@pytest.mark.parametrize(
    ("nodes", "wanted", "expected"),
    [
        (1, 3, [3]),
        (2, 3, [1, 2]),
        (3, 4, [1, 1, 2]),
        (3, 6, [2, 2, 2]),
        (4, 2, [1, 1]),
    ],
)
def test_instances_spread_as_evenly_as_nodes_allow(
    nodes: int, wanted: int, expected: list[int]
) -> None:
    records = [node(f"n{i}") for i in range(1, nodes + 1)]
    state, _ = fresh(elected(*records, apps=(app("a", mote(min=wanted)),)))

    assert sorted(per_node(state).values()) == expected


def test_a_silent_node_is_lost_and_its_instances_move_to_live_nodes() -> None:
    state, commands = fresh(
        elected(node("n1"), node("n2"), node("n3"), apps=(A,), now=0.0),  # e1.0
        Heartbeat(now=1.0, node="n1", load=Load()),  # e1.1
        Heartbeat(now=1.0, node="n2", load=Load()),  # e1.2
        Tick(now=2.0),  # e1.3: n3 silent for 2 s > 1.5 s
    )

    assert commands == [
        NodeLost(node="n3", silent_s=2.0, cause="e1.3"),
        assign("n1", inst("i1.1", A), inst("i1.4", A), cause="e1.3"),
        assign("n3", cause="e1.3"),  # fenced: the lost node is told to run nothing
    ]
    assert state.nodes["n3"].alive is False


def test_a_tick_within_the_failure_timeout_changes_nothing() -> None:
    state, commands = fresh(
        elected(node("n1"), apps=(A,), now=0.0),
        Tick(now=1.5),
    )

    assert commands == []
    assert state.nodes["n1"].alive


@pytest.mark.parametrize(
    "event",
    [
        Heartbeat(now=0.5, node="n1", load=Load(instances=1)),
        Heartbeat(now=0.5, node="stranger", load=Load()),
    ],
    ids=["live-node", "unknown-node"],
)
def test_heartbeats_of_live_or_unknown_nodes_decide_nothing(event: Heartbeat) -> None:
    _, commands = fresh(elected(node("n1"), apps=(A,)), event)

    assert commands == []


def test_a_heartbeat_brings_a_lost_node_back() -> None:
    only_a = app("a", mote(labels={"zone": "a"}))
    events = [
        elected(node("n1", labels={"zone": "a"}), node("n2", labels={"zone": "b"}), apps=(only_a,)),
        Heartbeat(now=1.0, node="n2", load=Load()),
        Tick(now=2.0),  # e1.2: n1 lost, its instance has nowhere to go
    ]
    state, commands = fresh(*events)
    assert commands == [NodeLost(node="n1", silent_s=2.0, cause="e1.2"), assign("n1", cause="e1.2")]
    why = state.explain("a", "m")
    assert (why.desired, why.placed) == (1, 0)
    assert why.nodes[0].verdicts[0].reason == "node is lost (no heartbeat)"

    commands = state.handle(Heartbeat(now=2.5, node="n1", load=Load()))

    # Alive again, but on probation for a failure timeout: a flapping node attracts no work.
    assert commands == []
    assert state.nodes["n1"].alive
    liveness = state.explain("a", "m").nodes[0].verdicts[0]
    assert (liveness.ok, liveness.reason) == (False, "back after being lost: on probation")
    for nid in ("n1", "n2"):
        state.handle(Heartbeat(now=3.5, node=nid, load=Load()))
    assert state.handle(Tick(now=3.9)) == []

    commands = state.handle(Tick(now=4.0))

    assert commands == [assign("n1", inst("i1.2", only_a), cause="e1.7")]


def test_a_node_that_left_cleanly_is_forgotten_and_its_instances_move() -> None:
    two = app("a", mote(min=2))
    state, commands = fresh(
        elected(node("n1"), node("n2"), apps=(two,)),
        NodeGone(now=1.0, node="n2"),
    )

    assert commands == [
        assign("n1", inst("i1.1", two), inst("i1.3", two), cause="e1.1"),
        assign("n2", cause="e1.1"),
    ]
    assert "n2" not in state.assigned
    assert [row.node for row in state.explain("a", "m").nodes] == ["n1"]


# --- rules that veto nodes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"zone": "b"}, {"n2": 2}),
        ({"zone": "a", "disk": "ssd"}, {"n3": 2}),
        ({}, {"n1": 1, "n2": 1}),
    ],
)
def test_label_constraints_choose_the_nodes(labels: dict[str, str], expected: dict) -> None:
    nodes = (
        node("n1", labels={"zone": "a"}),
        node("n2", labels={"zone": "b"}),
        node("n3", labels={"zone": "a", "disk": "ssd"}),
    )
    state, _ = fresh(elected(*nodes, apps=(app("a", mote(min=2, labels=labels)),)))

    assert per_node(state) == expected


def test_no_matching_label_leaves_instances_pending_and_says_why() -> None:
    constrained = app("a", mote(min=2, labels={"zone": "c"}))
    state, commands = fresh(
        elected(node("n1", labels={"zone": "a"}), node("n2"), apps=(constrained,))
    )

    assert commands == []
    why = state.explain("a", "m")
    assert (why.desired, why.placed) == (2, 0)
    assert why.note == "2 instance(s) pending: no node passes every rule"
    labels = [row.verdicts[RULES.index("labels")] for row in why.nodes]
    assert [(v.ok, v.reason) for v in labels] == [
        (False, "label mismatch: zone=c (node has 'a')"),
        (False, "label mismatch: zone=c (unset)"),
    ]


def test_a_mote_needing_a_gpu_stays_pending_without_one() -> None:
    gpu_app = app("a", mote(needs={"gpu": 1}))
    state, commands = fresh(elected(node("n1"), apps=(gpu_app,)))

    assert commands == []
    caps = state.explain("a", "m").nodes[0].verdicts[RULES.index("capabilities")]
    assert not caps.ok
    assert caps.reason == "lacks a gpu"

    commands = state.handle(NodeUp(now=1.0, record=node("g1", gpus=1)))

    assert commands == [assign("g1", inst("i1.1", gpu_app), cause="e1.1")]


@pytest.mark.parametrize(
    ("cpus", "placed"),
    [({"n1": 4}, {}), ({"n1": 4, "n2": 16}, {"n2": 1}), ({"n1": 8}, {"n1": 1})],
)
def test_a_node_with_too_few_cpus_is_vetoed(cpus: dict[str, int], placed: dict) -> None:
    nodes = [node(nid, cpus=n) for nid, n in cpus.items()]
    state, _ = fresh(elected(*nodes, apps=(app("a", mote(needs={"cpu": 8})),)))

    assert per_node(state) == placed


def test_the_cpu_veto_says_what_is_free() -> None:
    state, _ = fresh(elected(node("n1", cpus=4), apps=(app("a", mote(needs={"cpu": 8})),)))

    verdict = state.explain("a", "m").nodes[0].verdicts[RULES.index("resources")]

    assert (verdict.ok, verdict.reason) == (False, "needs cpu=8, 4 free of 4")


def test_cpu_claimed_by_earlier_instances_counts() -> None:
    state, _ = fresh(elected(node("n1", cpus=4), apps=(app("a", mote(min=2, needs={"cpu": 3})),)))

    assert per_node(state) == {"n1": 1}
    why = state.explain("a", "m")
    assert why.nodes[0].verdicts[RULES.index("resources")].reason == "needs cpu=3, 1 free of 4"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("spread", {"n1": 1, "n2": 1}), ("pack", {"n1": 2})],
)
def test_pack_motes_share_a_node_spread_motes_do_not(policy: str, expected: dict) -> None:
    two = app("a", mote("x", spread=policy), mote("y", spread=policy))
    state, _ = fresh(elected(node("n1"), node("n2"), apps=(two,)))

    assert per_node(state) == expected


@pytest.mark.parametrize(("policy", "chosen"), [("spread", "big"), ("pack", "small")])
def test_spread_prefers_the_emptier_node_pack_the_fuller(policy: str, chosen: str) -> None:
    nodes = (node("big", cpus=16), node("small", cpus=4))
    state, _ = fresh(elected(*nodes, apps=(app("a", mote(needs={"cpu": 2}, spread=policy)),)))

    assert per_node(state) == {chosen: 1}


# --- demand, versions, removal ---------------------------------------------------------


def test_min_zero_places_nothing_until_demanded_then_exactly_one() -> None:
    lazy = app("a", mote(min=0))
    state, commands = fresh(elected(node("n1"), node("n2"), apps=(lazy,)))
    assert commands == []
    assert state.explain("a", "m").note == (
        "min=0 and no work: an instance starts on the first call"
    )

    first = state.handle(Demand(now=1.0, app="a", mote="m"))
    again = state.handle(Demand(now=1.1, app="a", mote="m"))

    assert first == [assign("n1", inst("i1.1", lazy), cause="e1.1")]
    assert again == []
    assert per_node(state) == {"n1": 1}
    assert state.wanted(lazy, lazy.motes[0]) == 1


@pytest.mark.parametrize(("app_name", "mote_name"), [("nope", "m"), ("a", "nope")])
def test_demand_for_an_undeployed_mote_is_ignored(app_name: str, mote_name: str) -> None:
    state, commands = fresh(
        elected(node("n1"), apps=(app("a", mote(min=0)),)),
        Demand(now=1.0, app=app_name, mote=mote_name),
    )

    assert commands == []
    assert state.scale == {}
    deployed = state.apps["a"]
    assert state.wanted(deployed, deployed.motes[0]) == 0


def test_a_new_digest_replaces_the_old_instances_once_the_new_ones_are_ready() -> None:
    v1 = app("a", mote(min=2), digest="sha256:v1")
    v2 = app("a", mote(min=2), digest="sha256:v2")

    state, commands = fresh(elected(node("n1"), node("n2"), apps=(v1,)), AppPut(now=1.0, record=v2))

    # A surge: the new version starts beside the old one, which keeps serving.
    assert commands == [
        assign("n1", inst("i1.3", v2), inst("i1.1", v1), cause="e1.1"),
        assign("n2", inst("i1.4", v2), inst("i1.2", v1), cause="e1.1"),
    ]

    assert state.handle(beat(state, "n1", 1.5)) == []  # one of two new ones is ready: wait
    commands = state.handle(beat(state, "n2", 1.6))

    assert commands == [
        assign("n1", inst("i1.3", v2), cause="e1.3"),
        assign("n2", inst("i1.4", v2), cause="e1.3"),
    ]
    assert {i.digest for insts in state.assigned.values() for i in insts} == {"sha256:v2"}


def test_putting_the_same_app_again_moves_nothing() -> None:
    _, commands = fresh(elected(node("n1"), apps=(A,)), AppPut(now=1.0, record=A))

    assert commands == []


def test_deleting_an_app_empties_every_node() -> None:
    state, commands = fresh(
        elected(node("n1"), node("n2"), apps=(A,)),
        AppDeleted(now=1.0, name="a"),
    )

    assert commands == [assign("n1", cause="e1.1"), assign("n2", cause="e1.1")]
    assert state.assigned == {"n1": [], "n2": []}
    assert state.explain("a", "m").note == "not deployed"


def test_a_new_leader_keeps_running_instances_where_they_are() -> None:
    placed = NodeAssignment(node="n2", epoch=1, instances=[inst("i1.1", A)])
    two = app("a", mote(min=2))
    snapshot = elected(node("n1"), node("n2"), apps=(two,), epoch=5, assignments={"n2": placed})

    state, commands = fresh(snapshot)

    assert commands == [assign("n1", inst("i5.1", two), epoch=5, cause="e5.0")]
    assert state.assigned["n2"] == [inst("i1.1", A)]


# --- actors ----------------------------------------------------------------------------


def test_actor_shards_are_split_over_its_instances() -> None:
    actor = app("a", mote(kind="actor", shards=8, min=3))

    _, commands = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(actor,)))

    assert commands == [
        assign("n1", inst("i1.1", actor, shards=[0, 3, 6], nshards=8), cause="e1.0"),
        assign("n2", inst("i1.2", actor, shards=[1, 4, 7], nshards=8), cause="e1.0"),
        assign("n3", inst("i1.3", actor, shards=[2, 5], nshards=8), cause="e1.0"),
    ]


def _shards(state: SchedulerState) -> list[int]:
    return sorted(s for insts in state.assigned.values() for i in insts for s in i.shards)


@pytest.mark.parametrize(
    ("shards", "instances", "nodes"),
    [(1, 1, 1), (8, 3, 2), (64, 12, 4), (5, 7, 3), (64, 1, 3)],
)
def test_every_shard_is_owned_exactly_once(shards: int, instances: int, nodes: int) -> None:
    actor = app("a", mote(kind="actor", shards=shards, min=instances, max=16))
    records = [node(f"n{i}") for i in range(nodes)]

    state, _ = fresh(elected(*records, apps=(actor,)))

    assert _shards(state) == list(range(shards))
    assert {i.nshards for insts in state.assigned.values() for i in insts} == {shards}


def test_shards_are_rebalanced_when_an_actor_instance_moves() -> None:
    actor = app("a", mote(kind="actor", shards=16, min=3))
    state, _ = fresh(
        elected(node("n1"), node("n2"), node("n3"), apps=(actor,)),
        Heartbeat(now=1.0, node="n1", load=Load()),
        Heartbeat(now=1.0, node="n2", load=Load()),
        Tick(now=2.0),
    )

    assert per_node(state) == {"n1": 2, "n2": 1}
    assert _shards(state) == list(range(16))


# --- ids and causes --------------------------------------------------------------------


def test_instance_ids_are_unique_and_carry_the_epoch() -> None:
    v2 = app("a", mote(min=3), digest="sha256:v2")
    state = SchedulerState(failure_timeout=1.5)
    # Heartbeats are built when sent: every node reports what it runs as ready.
    events = [
        lambda: elected(node("n1"), node("n2"), apps=(A,), epoch=7),
        lambda: NodeUp(now=0.5, record=node("n3")),
        lambda: AppPut(now=1.0, record=v2),
        lambda: Heartbeat(now=1.2, node="n1", load=Load()),
        lambda: Heartbeat(now=1.2, node="n3", load=Load()),
        lambda: Tick(now=2.0),  # n2 is lost
        lambda: beat(state, "n1", 2.05),
        lambda: beat(state, "n3", 2.05),  # v2 is all ready: v1 is gone
        lambda: AppPut(now=2.1, record=A),
        lambda: beat(state, "n1", 2.2),
        lambda: beat(state, "n3", 2.2),  # v1 is all ready: v2 is gone
    ]
    made = [
        i.iid
        for e in events
        for c in state.handle(e())
        if isinstance(c, Assign)
        for i in c.assignment.instances
    ]

    assert len(set(made)) == 10  # 3 + 3 (v2) + 1 (moved off n2) + 3 (back to v1)
    assert all(re.fullmatch(r"i7\.\d+", iid) for iid in made)
    assert len(iids(state)) == len(set(iids(state))) == 3
    assert {digest for insts in layout(state).values() for _, digest in insts} == {"sha256:v1"}


def test_every_command_names_the_event_that_caused_it() -> None:
    b = app("b", mote())
    state = SchedulerState(failure_timeout=1.5)
    events = [
        elected(node("n1"), apps=(app("a", mote(min=2)),), epoch=3),
        NodeUp(now=0.1, record=node("n2")),
        AppPut(now=0.2, record=b),
        Heartbeat(now=4.9, node="n2", load=Load()),
        Tick(now=5.0),  # n1 is lost
    ]
    causes = [{c.cause for c in state.handle(e)} for e in events]

    assert causes == [{"e3.0"}, set(), {"e3.2"}, set(), {"e3.4"}]


def test_when_every_node_falls_silent_at_once_the_scheduler_blames_itself() -> None:
    # All silent together: this process stalled, which is no evidence against anyone.
    state, commands = fresh(
        elected(node("n1"), node("n2"), apps=(A,)),
        Tick(now=5.0),
    )

    assert commands == []
    assert all(n.alive for n in state.nodes.values())
    assert per_node(state) == {"n1": 2, "n2": 1}


def test_an_assignment_records_its_cause_and_epoch() -> None:
    _, commands = fresh(elected(node("n1"), apps=(A,), epoch=4))

    assert [(c.assignment.cause, c.assignment.epoch) for c in commands] == [("e4.0", 4)]


# --- explanations ----------------------------------------------------------------------


def test_explain_gives_every_node_one_verdict_per_rule() -> None:
    state, _ = fresh(elected(node("n1"), node("n2"), node("n3"), apps=(A,)))

    why = state.explain("a", "m")

    assert why.mote == "a.m"
    assert (why.desired, why.placed, why.note) == (3, 3, "")
    assert [(row.node, row.name, row.placed) for row in why.nodes] == [
        ("n1", "host-n1", 1),
        ("n2", "host-n2", 1),
        ("n3", "host-n3", 1),
    ]
    assert all([v.rule for v in row.verdicts] == RULES for row in why.nodes)


def test_explain_an_unknown_mote() -> None:
    state, _ = fresh(elected(node("n1"), apps=(A,)))

    why = state.explain("a", "ghost")

    assert (why.mote, why.desired, why.placed, why.nodes, why.note) == (
        "a.ghost",
        0,
        0,
        [],
        "not deployed",
    )


# --- bugs ------------------------------------------------------------------------------


def test_an_app_with_non_numeric_needs_does_not_crash_the_scheduler() -> None:
    state, _ = fresh(elected(node("n1"), apps=(A,)))

    state.handle(AppPut(now=1.0, record=app("bad", mote(needs={"cpu": "two"}))))

    assert per_node(state, "m") == {"n1": 3}
