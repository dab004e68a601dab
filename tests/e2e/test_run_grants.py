"""Who gets which sandbox, end to end on an authenticated mesh: a person's native motes
run on someone else's node only with `run --native` there; without `run` nothing of
theirs does; `motes why` names the rule and what is missing. The grant's budgets hold
on the node: instances at once, each worker's memory (a cgroup here, else RLIMIT_AS),
and CPU seconds per day, past which the node stops their instances and says so."""

from __future__ import annotations

import re
import resource
from pathlib import Path

from motes.client import Mesh
from motes.testing import FAST, eventually, local_mesh

from .test_trust import cli, invite

HI = """import motes
app = motes.App("bapp")

@app.mote(min=2)
def hi(x: str) -> str:
    return "hi " + x
"""
BURN = """import time
import motes
app = motes.App("bburn")

@app.mote
def burn(seconds: float) -> float:
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass
    return seconds
"""


async def trust_reason(admin: Mesh, mote: str) -> str:
    why = await admin.ops.why(mote)
    (node,) = why.nodes
    return next(v.reason for v in node.verdicts if v.rule == "trust")


async def says(admin: Mesh, mote: str, reason: str) -> None:
    async def now() -> bool:
        return await trust_reason(admin, mote) == reason

    await eventually(now, timeout=20, what=f"motes why {mote}: {reason}")


def memory_limit(pid: int) -> int:
    """The memory limit of process ``pid``: its cgroup's, else its RLIMIT_AS."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "motes-sbx-" not in path:
            continue
        if controllers == "memory":
            return int(Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text())
        if controllers == "":
            return int(Path(f"/sys/fs/cgroup{path}/memory.max").read_text())
    return resource.prlimit(pid, resource.RLIMIT_AS)[0]


async def test_run_without_native_runs_nothing_native_and_why_names_the_rule(
    tmp_path: Path,
) -> None:
    async with local_mesh(tmp_path / "a", nodes=1) as mesh, mesh.client(timing=FAST) as admin:
        admin_cli = (mesh.home, "--url", mesh.url)
        (status,) = await admin.ops.nodes()
        box = status.record.id
        bee = tmp_path / "bee"
        token = invite(
            mesh, "--person", "bee", "--grant", "deploy:bapp", "--grant", "call:bapp",
            "--grant", "deploy:bburn", "--grant", "call:bburn",
        )  # fmt: skip
        cli(bee, "join", token)
        bee_id = cli(bee, "id", "--json").stdout.split('"id":"', 1)[1].split('"', 1)[0]
        (tmp_path / "bapp.py").write_text(HI)
        cli(bee, "deploy", str(tmp_path / "bapp.py"))

        # No run grant: nothing of bee's runs on the owner's node.
        await says(admin, "bapp.hi", f"{admin.principal} has not granted `run` here to {bee_id}")
        assert (await admin.ops.why("bapp.hi")).placed == 0

        # run without native: still nothing (hi is a native mote), and why says so.
        out = cli(*admin_cli, "grant", "bee", "run", box).stdout
        assert "(sandboxed only)" in out, out
        plain = re.search(r"\(grant (\w+)\)", out)
        assert plain is not None
        await says(
            admin, "bapp.hi", f"run grant without native: only sandboxed motes of {bee_id} here"
        )
        assert (await admin.ops.why("bapp.hi")).placed == 0
        listed = cli(*admin_cli, "grants").stdout
        assert f"run {box} (sandboxed only)" in listed, listed

        # run --native, one instance at once, 200 MB each: one of hi's two is placed.
        cli(*admin_cli, "revoke", "--grant", plain.group(1))
        cli(
            *admin_cli, "grant", "bee", "run", box, "--native", "--instances", "1",
            "--memory-mb", "200",
        )  # fmt: skip
        await says(
            admin, "bapp.hi", f"run grant's budget: 1 instance(s) of {bee_id}'s at once, 1 here"
        )
        assert cli(bee, "call", "bapp.hi", '"bee"').stdout.strip() == '"hi bee"'
        why = await admin.ops.why("bapp.hi")
        assert (why.desired, why.placed) == (2, 1), why
        (running,) = [i for i in await admin.ops.ps() if i.app == "bapp" and i.state == "ready"]
        assert memory_limit(running.pid) == 200 * 1024 * 1024
        listed = cli(*admin_cli, "grants").stdout
        assert f"run {box} (native, 1 instance(s), 200 MB each)" in listed, listed


async def test_past_its_cpu_seconds_a_day_the_node_stops_the_persons_instances(
    tmp_path: Path,
) -> None:
    async with local_mesh(tmp_path / "a", nodes=1) as mesh, mesh.client(timing=FAST) as admin:
        (status,) = await admin.ops.nodes()
        bee = tmp_path / "bee"
        cli(
            bee,
            "join",
            invite(mesh, "--person", "bee", "--grant", "deploy:bburn", "--grant", "call:bburn"),
        )
        bee_id = cli(bee, "id", "--json").stdout.split('"id":"', 1)[1].split('"', 1)[0]
        cli(
            mesh.home, "--url", mesh.url, "grant", "bee", "run", status.record.id, "--native",
            "--cpu-s-per-day", "0.3",
        )  # fmt: skip
        (tmp_path / "bburn.py").write_text(BURN)
        cli(bee, "deploy", str(tmp_path / "bburn.py"))
        assert cli(bee, "call", "bburn.burn", "0.5").stdout.strip() == "0.5"

        # The meter's report puts bee over budget: the node stops the instance, refuses
        # more, and its heartbeat tells the scheduler, which places nothing there.
        await says(
            admin, "bburn.burn", f"run grant's budget: {bee_id}'s cpu_s_per_day is used up here"
        )

        async def stopped() -> bool:
            ps = [i for i in await admin.ops.ps() if i.app == "bburn"]
            return all(i.state != "ready" for i in ps)

        await eventually(stopped, timeout=20, what="bee's instance stopping")
        assert (await admin.ops.why("bburn.burn")).placed == 0
