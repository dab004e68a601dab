"""Data locality: a mote that declares what it reads goes where that data already is."""

from __future__ import annotations

from sched_builders import app, elected, fresh, mote, node, per_node

from motes.scheduler.policy import NodeView
from motes.scheduler.policy.locality import WEIGHT, locality
from motes.scheduler.state import AppPut, DataHeld
from motes.wire.messages import Inventory, MoteSpec

SI = "ab" * 16
MIB = 2**20


def view(here: int, most: int) -> NodeView:
    return NodeView(
        id="n",
        name="n",
        inventory=Inventory(cpus=4, memory_mb=4096, arch="x86_64", os="linux"),
        labels={},
        reads_here=here,
        reads_most=most,
    )


def test_the_rule_scores_by_the_share_of_the_reads_held() -> None:
    reader = MoteSpec(name="m", reads=[SI])
    assert locality(reader, view(64 * MIB, 64 * MIB)).score == WEIGHT
    assert locality(reader, view(16 * MIB, 64 * MIB)).score == WEIGHT / 4
    half = locality(reader, view(32 * MIB, 64 * MIB))
    assert half.reason == "holds 32.0 MiB of its reads (the most any node holds: 64.0 MiB)"
    assert locality(reader, view(0, 0)).reason == "no node holds its reads yet"
    assert locality(MoteSpec(name="m"), view(5, 5)).score == 0


def test_a_reader_is_placed_on_the_node_holding_its_data_and_why_says_so() -> None:
    state, _ = fresh(elected(node("n1"), node("n2"), node("n3")))
    state.handle(DataHeld(now=0.5, node="n1", files={SI: 3 * MIB}))
    state.handle(DataHeld(now=0.5, node="n3", files={SI: 64 * MIB, "cd" * 16: 1}))
    state.handle(AppPut(now=1.0, record=app("a", mote("m", reads=[SI]))))
    assert per_node(state) == {"n3": 1}
    why = state.explain("a", "m")
    row = next(r for r in why.nodes if r.node == "n3")
    assert any(v.rule == "locality" and v.score == WEIGHT for v in row.verdicts)


def test_holdings_alone_move_nothing_already_running() -> None:
    state, _ = fresh(elected(node("n1"), node("n2")))
    state.handle(AppPut(now=1.0, record=app("a", mote("m", reads=[SI]))))
    assert state.handle(DataHeld(now=2.0, node="n2", files={SI: MIB})) == []


def test_a_mote_without_reads_ignores_holdings() -> None:
    state, _ = fresh(elected(node("n1"), node("n2")))
    state.handle(DataHeld(now=0.5, node="n2", files={SI: 64 * MIB}))
    state.handle(AppPut(now=1.0, record=app("a", mote("m"))))
    assert per_node(state) == {"n1": 1}  # the usual tie-break, by node id
