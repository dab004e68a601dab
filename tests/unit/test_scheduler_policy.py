"""Placement rules, one node view at a time: who vetoes, why, and how nodes are ranked."""

from __future__ import annotations

from typing import Any

import pytest
from sched_builders import RULES as RULE_NAMES

from motes.scheduler.policy import RULES, STICKY, NodeView, judge
from motes.scheduler.policy.capabilities import capabilities
from motes.scheduler.policy.labels import labels
from motes.scheduler.policy.liveness import liveness
from motes.scheduler.policy.owner import owner
from motes.scheduler.policy.resources import resources
from motes.scheduler.policy.spread import spread
from motes.wire.messages import Inventory, MoteSpec, Verdict


def view(
    *,
    cpus: int = 4,
    memory_mb: int = 4096,
    gpus: int = 0,
    arch: str = "x86_64",
    os: str = "linux",
    screen: bool = False,
    camera: bool = False,
    node_labels: dict[str, str] | None = None,
    **fields: Any,
) -> NodeView:
    inventory = Inventory(
        cpus=cpus, memory_mb=memory_mb, arch=arch, os=os, gpus=gpus, screen=screen, camera=camera
    )
    return NodeView(id="n1", name="box", inventory=inventory, labels=node_labels or {}, **fields)


def mote(**options: Any) -> MoteSpec:
    return MoteSpec(name="m", **options)


def test_rules_are_judged_in_the_order_motes_why_shows_them() -> None:
    assert [rule.__name__ for rule in RULES] == RULE_NAMES


def test_only_vetoes_that_can_change_under_a_placed_instance_are_sticky() -> None:
    assert [rule.__name__ for rule in STICKY] == [
        "liveness",
        "trust",
        "capabilities",
        "labels",
        "owner",
    ]


@pytest.mark.parametrize(
    ("alive", "drained", "expected"),
    [
        (True, False, Verdict(rule="liveness", ok=True, reason="heartbeating")),
        (False, False, Verdict(rule="liveness", ok=False, reason="node is lost (no heartbeat)")),
        (
            True,
            True,
            Verdict(rule="liveness", ok=False, reason="node is draining (`motes drain`)"),
        ),
        (False, True, Verdict(rule="liveness", ok=False, reason="node is lost (no heartbeat)")),
    ],
)
def test_liveness(alive: bool, drained: bool, expected: Verdict) -> None:
    assert liveness(mote(), view(alive=alive, drained=drained)) == expected


@pytest.mark.parametrize(
    ("needs", "node", "reason"),
    [
        ({"cpu": 8}, view(cpus=4), "needs cpu=8, 4 free of 4"),
        ({"cpu": 2}, view(cpus=4, used={"cpu": 3}), "needs cpu=2, 1 free of 4"),
        ({"cpu": 0.5}, view(cpus=1, used={"cpu": 0.75}), "needs cpu=0.5, 0.25 free of 1"),
        (
            {"memory_mb": 4096},
            view(memory_mb=2048),
            "needs memory_mb=4096 MB, 2048 MB free of 2048 MB",
        ),
        ({"gpu": 1}, view(gpus=0), "needs gpu=1, 0 free of 0"),
        ({"gpu": 2}, view(gpus=2, used={"gpu": 1}), "needs gpu=2, 1 free of 2"),
    ],
)
def test_resources_veto_what_does_not_fit(needs: dict, node: NodeView, reason: str) -> None:
    assert resources(mote(needs=needs), node) == Verdict(rule="resources", ok=False, reason=reason)


@pytest.mark.parametrize(
    ("needs", "node"),
    [
        ({}, view(cpus=1, used={"cpu": 5})),  # needs nothing, fits even an overloaded node
        ({"cpu": 4}, view(cpus=4)),  # exactly full
        ({"cpu": 1, "memory_mb": 1024, "gpu": 1}, view(gpus=1, used={"memory_mb": 3072})),
        ({"screen": True, "arch": "arm64"}, view()),  # not resources: another rule's business
    ],
)
def test_resources_accept_what_fits(needs: dict, node: NodeView) -> None:
    verdict = resources(mote(needs=needs), node)

    assert (verdict.ok, verdict.reason) == (True, "fits")


@pytest.mark.parametrize(
    ("cpus", "used", "need", "spread_score"),
    [(4, 0, 0, 1.0), (4, 1, 1, 0.5), (4, 3, 1, 0.0), (16, 2, 2, 0.75), (3, 0, 1, 0.667)],
)
def test_resources_score_the_free_share_left_and_pack_flips_it(
    cpus: int, used: float, need: float, spread_score: float
) -> None:
    node = view(cpus=cpus, used={"cpu": used})

    spread_verdict = resources(mote(needs={"cpu": need}, spread="spread"), node)
    pack_verdict = resources(mote(needs={"cpu": need}, spread="pack"), node)

    assert spread_verdict.score == spread_score
    assert pack_verdict.score == -spread_score


@pytest.mark.parametrize(
    ("needs", "node", "reason"),
    [
        ({"gpu": 1}, view(), "lacks a gpu"),
        ({"gpu": True}, view(), "lacks a gpu"),
        ({"arch": "arm64"}, view(), "lacks arch=arm64 (node is x86_64)"),
        ({"os": "darwin"}, view(), "lacks os=darwin (node is linux)"),
        (
            {"arch": "x86_64"},
            view(node_labels={"arch": "riscv"}),
            "lacks arch=x86_64 (node is riscv)",
        ),
        ({"screen": True}, view(), "lacks a screen"),
        ({"camera": True}, view(node_labels={"camera": "no"}), "lacks a camera"),
        # A label overrides detection both ways: `screen=false` hides a display it has.
        ({"screen": True}, view(screen=True, node_labels={"screen": "false"}), "lacks a screen"),
        ({"camera": True}, view(screen=True), "lacks a camera"),
        (
            {"gpu": 1, "os": "windows", "screen": True},
            view(),
            "lacks a gpu, os=windows (node is linux), a screen",
        ),
    ],
)
def test_capabilities_veto_nodes_that_lack_them(needs: dict, node: NodeView, reason: str) -> None:
    assert capabilities(mote(needs=needs), node) == Verdict(
        rule="capabilities", ok=False, reason=reason
    )


@pytest.mark.parametrize(
    ("needs", "node"),
    [
        ({}, view()),
        ({"gpu": 1}, view(gpus=1)),
        ({"gpu": 1}, view(node_labels={"gpu": "true"})),  # a label overrides detection
        ({"gpu": 0}, view()),
        ({"arch": "X86_64", "os": "Linux"}, view()),  # case does not matter
        ({"arch": "arm64"}, view(node_labels={"arch": "arm64"})),
        ({"screen": True, "camera": 1}, view(node_labels={"screen": "yes", "camera": "ON"})),
        ({"screen": True, "camera": True}, view(screen=True, camera=True)),  # detected
        ({"screen": True}, view(screen=True, node_labels={"zone": "a"})),  # other labels
        ({"screen": False}, view()),
        ({"cpu": 64}, view()),  # not a capability: resources' business
    ],
)
def test_capabilities_accept_nodes_that_have_them(needs: dict, node: NodeView) -> None:
    assert capabilities(mote(needs=needs), node) == Verdict(
        rule="capabilities", ok=True, reason="has what it needs"
    )


@pytest.mark.parametrize(
    ("wanted", "have", "ok", "reason"),
    [
        ({}, {"zone": "a"}, True, "no constraint"),
        ({"zone": "a"}, {"zone": "a", "disk": "ssd"}, True, "matches zone=a"),
        (
            {"zone": "a", "disk": "ssd"},
            {"zone": "a", "disk": "ssd"},
            True,
            "matches zone=a, disk=ssd",
        ),
        ({"zone": "b"}, {"zone": "a"}, False, "label mismatch: zone=b (node has 'a')"),
        ({"zone": "b"}, {}, False, "label mismatch: zone=b (unset)"),
        (
            {"zone": "a", "disk": "ssd"},
            {"zone": "b"},
            False,
            "label mismatch: zone=a (node has 'b'), disk=ssd (unset)",
        ),
    ],
)
def test_labels(wanted: dict, have: dict, ok: bool, reason: str) -> None:
    verdict = labels(mote(labels=wanted), view(node_labels=have))

    assert verdict == Verdict(rule="labels", ok=ok, reason=reason)


@pytest.mark.parametrize(
    ("same", "instances", "policy", "score"),
    [
        (0, 0, "spread", 0.0),
        (0, 3, "spread", -0.3),
        (0, 3, "pack", 0.3),
        (2, 5, "spread", -20.5),
        (2, 5, "pack", -19.5),
    ],
)
def test_spread_scores(same: int, instances: int, policy: str, score: float) -> None:
    verdict = spread(mote(spread=policy), view(same_mote=same, instances=instances))

    assert verdict == Verdict(
        rule="spread",
        ok=True,
        score=score,
        reason=f"{same} of this mote here, {instances} instances in all",
    )


@pytest.mark.parametrize("policy", ["spread", "pack"])
def test_a_node_without_this_mote_always_beats_one_with_it(policy: str) -> None:
    m = mote(spread=policy, needs={"cpu": 1})
    crowded_but_new = view(cpus=4, used={"cpu": 2}, same_mote=0, instances=7)
    empty_but_has_one = view(cpus=64, same_mote=1, instances=1)

    assert judge(m, crowded_but_new)[1] > judge(m, empty_but_has_one)[1]


def test_judge_sums_the_scores_of_an_eligible_node() -> None:
    ok, score, verdicts = judge(mote(needs={"cpu": 1}), view(cpus=4, same_mote=1, instances=2))

    assert ok
    assert [v.rule for v in verdicts] == [r.__name__ for r in RULES]
    assert score == pytest.approx(sum(v.score for v in verdicts))
    assert score == pytest.approx(0.75 - 10.2)


def test_judge_gives_a_vetoed_node_no_score_but_every_verdict() -> None:
    ok, score, verdicts = judge(mote(needs={"gpu": 1}, labels={"zone": "a"}), view(alive=False))

    assert (ok, score) == (False, 0.0)
    assert [(v.rule, v.ok) for v in verdicts] == [
        ("liveness", False),
        ("trust", True),
        ("resources", False),
        ("capabilities", False),
        ("labels", False),
        ("owner", True),
        ("locality", True),
        ("energy", True),
        ("spread", True),
    ]


# --- owner context ---------------------------------------------------------------------

BATTERY = {"on_battery": True, "battery_pct": 42.0}


@pytest.mark.parametrize(
    ("usage", "fields", "ok", "score", "reason"),
    [
        (
            "any",
            {"present": True, "presence_known": True, **BATTERY},
            True,
            0.0,
            "no owner constraint",
        ),
        ("batch", {}, True, 0.0, "batch: machine idle and on mains power"),
        ("batch", {"presence_known": True}, True, 0.0, "batch: machine idle and on mains power"),
        (
            "batch",
            {"present": True, "presence_known": True},
            False,
            0.0,
            "batch: a person is using this machine",
        ),
        ("batch", BATTERY, False, 0.0, "batch: on battery (42%)"),
        ("batch", {"on_battery": True}, False, 0.0, "batch: on battery"),
        (
            "batch",
            {"on_battery": True, "battery_pct": 87.5},
            False,
            0.0,
            "batch: on battery (87.5%)",
        ),
        # A battery level alone (a laptop on its charger) is mains power.
        ("batch", {"battery_pct": 15.0}, True, 0.0, "batch: machine idle and on mains power"),
        (
            "interactive",
            {"present": True, "presence_known": True},
            True,
            100.0,
            "interactive: the user is here",
        ),
        (
            "interactive",
            {"presence_known": True},
            False,
            0.0,
            "interactive: the user is on another node",
        ),
        ("interactive", {}, True, 0.0, "interactive: nobody ran `motes here` yet"),
        # The user's machine may run on battery: interactive motes follow the user anyway.
        (
            "interactive",
            {"present": True, "presence_known": True, **BATTERY},
            True,
            100.0,
            "interactive: the user is here",
        ),
    ],
)
def test_owner(usage: str, fields: dict, ok: bool, score: float, reason: str) -> None:
    verdict = owner(mote(usage=usage), view(**fields))

    assert verdict == Verdict(rule="owner", ok=ok, score=score, reason=reason)


def test_trust_lets_a_node_run_only_its_owner_or_those_granted_run() -> None:
    from motes.identity.grants import RunTerms
    from motes.scheduler.policy.trust import trust

    m = mote()
    assert trust(m, view()).ok  # no authentication: nobody to ask
    owned = view(trust_enforced=True, owner="pA", app_signer="pA")
    assert trust(m, owned).ok
    stranger = view(trust_enforced=True, owner="pA", app_signer="pB")
    verdict = trust(m, stranger)
    assert not verdict.ok and verdict.reason == "pA has not granted `run` here to pB"
    native = RunTerms(native=True)
    assert trust(m, view(trust_enforced=True, owner="pA", app_signer="pB", run=native)).ok
    revoked = view(trust_enforced=True, admitted=False, owner="pA", app_signer="pA")
    assert not trust(m, revoked).ok
