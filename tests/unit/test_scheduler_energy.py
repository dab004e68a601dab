"""The energy rule: nodes scored by the estimated joules of a mote's calls there, from
measured history where the mote ran, else from the node's power model."""

from __future__ import annotations

import math

import pytest
from sched_builders import app, beat, elected, fresh, mote, node, per_node

from motes.scheduler.policy import NodeView, judge
from motes.scheduler.policy._types import Estimate
from motes.scheduler.policy.energy import BATCH_WEIGHT, CAP, TOLERANCE, WEIGHT, energy
from motes.scheduler.state import AppDeleted, AppPut, NodeGone, SchedulerState, Tick
from motes.wire.messages import CallCost, Inventory, MoteSpec, Power, Verdict

PI, DESKTOP = 1.5, 15.0
"""Full-load watts per core of the two power profiles."""


def view(joules: float | None, least: float, **fields: object) -> NodeView:
    est = None if joules is None else Estimate(joules=joules, source="model", detail="d")
    return NodeView(
        id="n",
        name="n",
        inventory=Inventory(cpus=4, memory_mb=4096, arch="x86_64", os="linux"),
        labels={},
        energy=est,
        energy_least=least,
        **fields,  # type: ignore[arg-type]
    )


def _energy(state: SchedulerState, nid: str, mote_name: str = "m") -> Verdict:
    row = next(r for r in state.explain("a", mote_name).nodes if r.node == nid)
    return next(v for v in row.verdicts if v.rule == "energy")


# --- the rule alone --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("joules", "least", "usage", "score"),
    [
        (1.0, 1.0, "any", 0.0),  # the cheapest
        (1.2, 1.0, "any", 0.0),  # within the tolerance: as good as the cheapest
        (2.5, 1.0, "any", -WEIGHT * 1.0),  # one doubling past the tolerance
        (2.5, 1.0, "batch", -BATCH_WEIGHT * 1.0),  # batch weighs joules more
        (1000.0, 1.0, "any", -WEIGHT * CAP),  # capped
        (3.0, 0.0, "any", 0.0),  # no live node has an estimate to compare with
    ],
)
def test_the_rule_loses_weight_per_doubling_past_the_tolerance(
    joules: float, least: float, usage: str, score: float
) -> None:
    verdict = energy(MoteSpec(name="m", usage=usage), view(joules, least))  # type: ignore[arg-type]
    assert verdict.ok and verdict.score == pytest.approx(score, abs=1e-3)


def test_the_rule_never_vetoes_and_says_what_it_went_on() -> None:
    m = MoteSpec(name="m")
    assert energy(m, view(None, 1.0)) == Verdict(
        rule="energy", ok=True, reason="the node advertises no power model"
    )
    off = energy(MoteSpec(name="m", energy=False), view(50.0, 1.0))
    assert (off.ok, off.score, off.reason) == (True, 0.0, "not energy-aware (energy=False)")
    reason = energy(m, view(2.0, 1.0)).reason
    assert reason == "model: d; 2.00x the cheapest live node"
    assert TOLERANCE > 1


def test_a_plain_mote_never_piles_onto_a_cheap_node_but_batch_work_does() -> None:
    """Spread's 10 per instance of the same mote beats the plain weight at its cap."""
    dear = view(20.0, 1.0)
    cheap_with_one = view(1.0, 1.0, same_mote=1, instances=1)
    plain, batch = MoteSpec(name="m"), MoteSpec(name="m", usage="batch")
    assert judge(plain, dear)[1] > judge(plain, cheap_with_one)[1]
    assert judge(batch, cheap_with_one)[1] > judge(batch, dear)[1]


# --- the scheduler's estimates ---------------------------------------------------------


def test_without_history_the_power_model_ranks_the_nodes() -> None:
    state, _ = fresh(elected(node("n1", watts=DESKTOP), node("n2", watts=PI), node("n3")))
    state.handle(AppPut(now=1.0, record=app("a", mote("m"))))

    assert per_node(state) == {"n2": 1}  # not n1, the usual tie-break by node id
    dear = _energy(state, "n1")
    assert dear.score < 0
    assert dear.reason == (
        "model: 15 W/core at full load (model:config:owner); no node has measured its calls"
        " yet; 10.00x the cheapest live node"
    )
    assert _energy(state, "n2").score == 0
    assert _energy(state, "n3").reason == "the node advertises no power model"


def test_measured_history_beats_the_model() -> None:
    """n1 is the frugal machine on paper, but this mote costs more there than on n2."""
    a = app("a", mote("m", min=2, max=3))
    state, _ = fresh(elected(node("n1", watts=PI), node("n2", watts=DESKTOP), apps=(a,)))
    assert per_node(state) == {"n1": 1, "n2": 1}  # spread: one each
    slow = {"a.m": CallCost(calls=10, joules=15.0, cpu_s=10.0)}  # 1 s of CPU per call
    fast = {"a.m": CallCost(calls=10, joules=1.5, cpu_s=0.1)}  # 10 ms per call
    assert state.handle(beat(state, "n1", 1.0, costs=slow)) == []  # costs move nothing
    state.handle(beat(state, "n2", 1.0, costs=fast))

    n1, n2 = _energy(state, "n1"), _energy(state, "n2")
    assert n1.reason.startswith("measured: 1.5 J/call measured here (average of 10 calls)")
    assert n2.reason.startswith("measured: 0.15 J/call measured here")
    assert n1.score < n2.score == 0

    # Work arrives: the third instance goes where calls were measured cheapest.
    iid = state.assigned["n1"][0].iid
    state.handle(beat(state, "n1", 2.0, work={iid: 5}))
    assert per_node(state) == {"n1": 1, "n2": 2}


def test_a_node_the_mote_never_ran_on_is_estimated_from_cpu_measured_elsewhere() -> None:
    a = app("a", mote("m"))
    state, _ = fresh(
        elected(node("n1", watts=PI), node("n2", watts=DESKTOP), node("n3", watts=3.0), apps=(a,))
    )
    assert per_node(state) == {"n1": 1}
    state.handle(beat(state, "n1", 1.0, costs={"a.m": CallCost(calls=4, joules=0.6, cpu_s=0.4)}))
    state.handle(beat(state, "n1", 2.0, costs={"a.m": CallCost(calls=1, joules=0.3, cpu_s=0.2)}))

    # The average moves toward the newest report: 0.15 + 0.3 * (0.3 - 0.15) J per call.
    measured = 0.15 + 0.3 * (0.3 - 0.15)
    cpu = 0.1 + 0.3 * (0.2 - 0.1)
    assert _energy(state, "n1").reason.startswith(
        f"measured: {measured:.3g} J/call measured here (average of 5 calls)"
    )
    n2 = _energy(state, "n2")
    assert n2.reason == (
        f"model: {cpu * DESKTOP:.3g} J/call by the power model: {cpu * 1e3:.3g} ms CPU/call"
        f" measured elsewhere x 15 W/core (model:config:owner);"
        f" {cpu * DESKTOP / measured:.2f}x the cheapest live node"
    )
    expected = -WEIGHT * min(math.log2(cpu * DESKTOP / measured / TOLERANCE), CAP)
    assert n2.score == pytest.approx(expected, abs=1e-3)


def test_batch_work_stays_off_a_node_on_battery_however_cheap() -> None:
    batch = app("a", mote("m", usage="batch"))
    state, _ = fresh(
        elected(node("n1", watts=PI), node("n2", watts=3.0), node("n3", watts=DESKTOP)),
    )
    state.handle(beat(state, "n1", 0.5, power=Power(on_battery=True, battery_pct=40.0)))
    state.handle(AppPut(now=1.0, record=batch))

    assert per_node(state) == {"n2": 1}  # the next cheapest, not the dearest
    row = next(r for r in state.explain("a", "m").nodes if r.node == "n1")
    verdicts = {v.rule: v for v in row.verdicts}
    assert not verdicts["owner"].ok and "on battery (40%)" in verdicts["owner"].reason
    assert verdicts["energy"].ok and verdicts["energy"].score == 0  # it is the cheapest


def test_the_cheapest_node_is_the_cheapest_live_one() -> None:
    state, _ = fresh(elected(node("n1", watts=PI), node("n2", watts=DESKTOP)))
    state.handle(beat(state, "n2", 0.5))
    state.handle(beat(state, "n2", 3.0))  # n1 silent past the failure timeout: lost
    state.handle(Tick(now=3.0))
    state.handle(AppPut(now=3.1, record=app("a", mote("m"))))
    assert per_node(state) == {"n2": 1}
    assert _energy(state, "n2").score == 0  # compared with live nodes only


def test_an_energy_blind_mote_ignores_the_models() -> None:
    state, _ = fresh(elected(node("n1", watts=DESKTOP), node("n2", watts=PI)))
    state.handle(AppPut(now=1.0, record=app("a", mote("m", energy=False))))
    assert per_node(state) == {"n1": 1}  # the usual tie-break by node id
    assert _energy(state, "n1").reason == "not energy-aware (energy=False)"


def test_history_is_forgotten_with_its_app_and_its_node() -> None:
    a = app("a", mote("m"))
    state, _ = fresh(elected(node("n1", watts=PI), node("n2", watts=DESKTOP), apps=(a,)))
    state.handle(beat(state, "n1", 1.0, costs={"a.m": CallCost(calls=2, joules=9.0, cpu_s=6.0)}))
    assert _energy(state, "n1").reason.startswith("measured:")

    state.handle(AppDeleted(now=2.0, name="a"))
    state.handle(AppPut(now=2.1, record=a))
    assert _energy(state, "n1").reason.startswith("model:")

    state.handle(beat(state, "n1", 3.0, costs={"a.m": CallCost(calls=2, joules=9.0, cpu_s=6.0)}))
    state.handle(NodeGone(now=4.0, node="n1"))
    assert [r.node for r in state.explain("a", "m").nodes] == ["n2"]
    assert _energy(state, "n2").reason.startswith("model: 15 W/core")  # no cpu history left
