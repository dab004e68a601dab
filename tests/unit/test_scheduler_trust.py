"""Who gets which sandbox: the trust rule on one node view, and the scheduler honouring
``run`` grants' ``native`` and budgets across event sequences."""

from __future__ import annotations

from typing import Any

import pytest
from sched_builders import app, beat, elected, mote, node, per_node

from motes.identity.grants import RunTerms
from motes.scheduler.policy import NodeView
from motes.scheduler.policy.trust import trust
from motes.scheduler.state import AppPut, Heartbeat, SchedulerState, Trust, TrustSet
from motes.wire.messages import Inventory, Load, MoteSpec

INV = Inventory(cpus=4, memory_mb=4096, arch="x86_64", os="linux")


def view(**fields: Any) -> NodeView:
    base: dict[str, Any] = {"trust_enforced": True, "owner": "pA", "app_signer": "pB"}
    return NodeView(id="n1", name="box", inventory=INV, labels={}, **(base | fields))


NATIVE = MoteSpec(name="m")
WASM = MoteSpec(name="m", sandbox="wasm")


@pytest.mark.parametrize(
    ("spec", "fields", "ok", "reason"),
    [
        (NATIVE, {"trust_enforced": False}, True, "the mesh does not authenticate"),
        (NATIVE, {"admitted": False}, False, "the node is not admitted (or revoked)"),
        (NATIVE, {"app_signer": "pA"}, True, "its owner pA deployed it"),
        (WASM, {"app_signer": "pA"}, True, "its owner pA deployed it"),
        (NATIVE, {}, False, "pA has not granted `run` here to pB"),
        (WASM, {}, False, "pA has not granted `run` here to pB"),
        (
            NATIVE,
            {"run": RunTerms()},
            False,
            "run grant without native: only sandboxed motes of pB here",
        ),
        (WASM, {"run": RunTerms()}, True, "pB may run here (`run` grant, sandboxed)"),
        (NATIVE, {"run": RunTerms(native=True)}, True, "pB may run here (`run` grant, native)"),
        (WASM, {"run": RunTerms(native=True)}, True, "pB may run here (`run` grant, native)"),
        (
            WASM,
            {"run": RunTerms(instances=2), "signer_instances": 2},
            False,
            "run grant's budget: 2 instance(s) of pB's at once, 2 here",
        ),
        (
            WASM,
            {"run": RunTerms(instances=2), "signer_instances": 1},
            True,
            "pB may run here (`run` grant, sandboxed)",
        ),
        (
            NATIVE,
            {"run": RunTerms(native=True), "budget_spent": "cpu_s_per_day"},
            False,
            "run grant's budget: pB's cpu_s_per_day is used up here",
        ),
    ],
)
def test_the_trust_rule(spec: MoteSpec, fields: dict[str, Any], ok: bool, reason: str) -> None:
    verdict = trust(spec, view(**fields))

    assert (verdict.ok, verdict.reason) == (ok, reason)


# --- the state machine -------------------------------------------------------------------

OWNERS = {"n1": "pA", "n2": "pA"}


def placed(runs: dict[str, dict[str, RunTerms]], *motes: MoteSpec) -> SchedulerState:
    """pB's app of ``motes`` deployed on pA's two nodes, under ``runs``."""
    state = SchedulerState(failure_timeout=1.5)
    state.handle(elected(node("n1"), node("n2")))
    state.handle(TrustSet(now=0.1, trust=Trust(owners=OWNERS, runs=runs, deploys={"pB": ("*",)})))
    state.handle(AppPut(now=0.2, record=app("b", *motes), signer="pB"))
    return state


def test_a_run_grant_without_native_places_only_the_wasm_mote() -> None:
    state = placed(
        {"n1": {"pB": RunTerms()}},
        mote("native_one", min=1),
        mote("wasm_one", min=1, sandbox="wasm"),
    )

    assert per_node(state, "wasm_one") == {"n1": 1}
    assert per_node(state, "native_one") == {}
    why = state.explain("b", "native_one")
    reasons = {r.node: next(v.reason for v in r.verdicts if v.rule == "trust") for r in why.nodes}
    assert reasons == {
        "n1": "run grant without native: only sandboxed motes of pB here",
        "n2": "pA has not granted `run` here to pB",
    }
    assert why.note == "1 instance(s) pending: no node passes every rule"


def test_native_granted_the_native_mote_is_placed_and_moves_when_native_is_withdrawn() -> None:
    state = placed({"n2": {"pB": RunTerms(native=True)}}, mote("m", min=1))
    assert per_node(state) == {"n2": 1}

    trust = Trust(owners=OWNERS, runs={"n2": {"pB": RunTerms()}}, deploys={"pB": ("*",)})
    state.handle(TrustSet(now=1.0, trust=trust))

    assert per_node(state) == {}


def test_the_instances_budget_caps_one_nodes_share_of_the_signers_instances() -> None:
    terms = RunTerms(native=True, instances=1)
    state = placed({"n1": {"pB": terms}, "n2": {"pB": terms}}, mote("m", min=3))

    assert per_node(state) == {"n1": 1, "n2": 1}
    verdicts = state.explain("b", "m").nodes[0].verdicts
    trust_verdict = next(v for v in verdicts if v.rule == "trust")
    assert trust_verdict.reason == "run grant's budget: 1 instance(s) of pB's at once, 1 here"


def test_a_node_that_reports_a_budget_spent_loses_the_signers_instances() -> None:
    terms = RunTerms(native=True)
    state = placed({"n1": {"pB": terms}, "n2": {"pB": terms}}, mote("m", min=1))
    (where,) = per_node(state)
    other = "n2" if where == "n1" else "n1"
    state.handle(beat(state, other, 0.5))

    hb = beat(state, where, 0.6)
    spent = Heartbeat(
        now=hb.now, node=where, load=Load(), ready=hb.ready, spent={"pB": "cpu_s_per_day"}
    )
    state.handle(spent)

    assert per_node(state) == {other: 1}
