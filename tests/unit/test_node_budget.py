"""A node's budgets for someone else's instances: instances at once, CPU seconds per UTC
day (from the meter's totals), and a worker's memory limit, on a real process."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from motes.app.bundle import MANIFEST
from motes.errors import Forbidden, OverBudget
from motes.identity.grants import RunTerms
from motes.node.budget import Budgets, Hosted, cap_memory, check_bundle
from motes.wire.messages import InstanceSpec

DAY = 86400.0
NOON = 20 * DAY + DAY / 2  # some UTC noon
ADA = Hosted("pada", RunTerms(native=True, instances=2, cpu_s_per_day=10.0))


def test_the_instances_budget_admits_up_to_its_count() -> None:
    budgets = Budgets("nbox")
    budgets.admit(ADA, running=1, now=NOON)

    with pytest.raises(OverBudget) as refused:
        budgets.admit(ADA, running=2, now=NOON)

    assert isinstance(refused.value, Forbidden)
    assert (refused.value.budget, refused.value.used, refused.value.allowed) == ("instances", 2, 2)
    assert "instances budget: 2 of 2 used" in str(refused.value)


def test_cpu_seconds_add_up_over_instances_and_run_out_for_the_rest_of_the_day() -> None:
    budgets = Budgets("nbox")
    assert budgets.record("i1:10", ADA, 4.0, NOON) is None
    budgets.ended("i1:10")  # what it used stays counted
    assert budgets.record("i2:11", ADA, 5.0, NOON + 1) is None
    assert budgets.used("pada", NOON + 1) == 9.0
    assert budgets.spent == {}

    over = budgets.record("i2:11", ADA, 6.5, NOON + 2)

    assert over is not None and (over.budget, over.used, over.allowed) == (
        "cpu_s_per_day",
        10.5,
        10,
    )
    assert budgets.spent == {"pada": "cpu_s_per_day"}
    assert budgets.record("i2:11", ADA, 7.0, NOON + 3) is None  # said once
    with pytest.raises(OverBudget, match="cpu_s_per_day budget"):
        budgets.admit(ADA, running=0, now=NOON + 4)
    bob = Hosted("pbob", RunTerms(cpu_s_per_day=10.0))
    budgets.admit(bob, running=0, now=NOON + 4)  # one person's budget is theirs alone


def test_a_new_utc_day_gives_the_budget_back_counting_from_where_instances_were() -> None:
    budgets = Budgets("nbox")
    budgets.record("i1:10", ADA, 12.0, NOON)
    assert budgets.spent == {"pada": "cpu_s_per_day"}

    tomorrow = NOON + DAY
    budgets.admit(ADA, running=0, now=tomorrow)
    assert budgets.spent == {}
    assert budgets.record("i1:10", ADA, 15.0, tomorrow) is None
    assert budgets.used("pada", tomorrow) == 3.0  # only what it used since midnight


def test_a_workers_memory_is_capped_by_a_cgroup_or_else_by_rlimit_as() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        group = cap_memory(child.pid, 64)
        if group is not None:
            assert group.memory is not None
            assert child.pid in group.pids_in()
            name = "memory.max" if group.v2 else "memory.limit_in_bytes"
            assert int((group.memory / name).read_text()) == 64 * 1024 * 1024
        else:
            limit = resource.prlimit(child.pid, resource.RLIMIT_AS)
            assert limit == (64 * 1024 * 1024, 64 * 1024 * 1024)
    finally:
        child.kill()
        child.wait()
    if group is not None:
        group.remove()
        assert not any(d.exists() for d in group.dirs)


def test_a_bundle_must_run_the_mote_as_its_signed_record_declares(tmp_path: Path) -> None:
    """The worker picks wasm or native from the bundle; the grant was checked against the
    record. A bundle that disagrees (native code for a mote declared wasm) is refused."""
    boxed_mote = {"fuel": 10**9, "memory_mb": 64}
    (tmp_path / MANIFEST).write_text(json.dumps({"wasm": {"boxed": boxed_mote}}))
    spec = InstanceSpec(iid="i1", app="a", mote="m", digest="sha256:x", module="app")
    terms = RunTerms()
    with pytest.raises(Forbidden, match="bundle runs it native, its app record declares wasm"):
        check_bundle(tmp_path, spec, Hosted("bee", terms, "wasm"))
    check_bundle(tmp_path, spec, Hosted("bee", terms, "native"))  # agrees: nothing raised
    boxed = msgspec.structs.replace(spec, mote="boxed")
    check_bundle(tmp_path, boxed, Hosted("bee", terms, "wasm"))
    with pytest.raises(Forbidden, match="bundle runs it wasm"):
        check_bundle(tmp_path, boxed, Hosted("bee", terms, "native"))
