"""The network decides: placement by need and owner context, autoscaling, failover, upgrade.

Real nats-server, real node and worker processes; counts are asserted, never timings.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

from motes.client import Mesh
from motes.errors import MotesError
from motes.node.localmesh import LocalMesh
from motes.testing import FAST, eventually, local_mesh

from ..conftest import APPS


async def placed(client: Mesh, mote: str, names: dict[str, str]) -> list[str]:
    """Node names of the ready instances of ``app.mote``, sorted."""
    app, _, name = mote.partition(".")
    return sorted(
        names[i.node]
        for i in await client.ops.ps()
        if (i.app, i.mote) == (app, name) and i.state == "ready"
    )


async def node_names(client: Mesh) -> dict[str, str]:
    return {s.record.id: s.record.name for s in await client.ops.nodes()}


async def test_owner_context_and_capabilities(tmp_path: Path) -> None:
    labels = {"node-2": {"power": "battery"}, "node-3": {"gpu": "true"}}
    async with local_mesh(tmp_path, nodes=3, labels=labels) as mesh:
        async with mesh.client(timing=FAST) as client:
            names = await node_names(client)
            await client.ops.here("node-1")
            await client.deploy(APPS / "owner.py")

            async def settled(want: dict[str, list[str]]) -> bool:
                got = {m: await placed(client, m, names) for m in want}
                return got == want

            # Batch: not where the user is (node-1), not on battery (node-2).
            # Interactive: where the user is. The gpu mote: only the gpu node.
            first = {"owner.crunch": ["node-3"], "owner.ui": ["node-1"], "owner.render": ["node-3"]}
            await eventually(lambda: settled(first), what=f"placement {first}")
            why = await client.ops.why("owner.crunch")
            reasons = {n.name: [v.reason for v in n.verdicts if not v.ok] for n in why.nodes}
            assert reasons["node-1"] == ["batch: a person is using this machine"]
            assert reasons["node-2"] == ["batch: on battery"]
            assert reasons["node-3"] == []

            # The user moves to node-3: the interactive mote follows, the batch one leaves.
            await client.ops.here("node-3")
            second = {
                "owner.crunch": ["node-1"],
                "owner.ui": ["node-3"],
                "owner.render": ["node-3"],
            }
            await eventually(lambda: settled(second), what=f"placement {second}")
            assert await client.call("owner.crunch", 7) == 49
            assert await client.call("owner.ui", 1) == "1"

            # Draining node-1 moves the batch mote... nowhere it may go: it stays pending.
            await client.ops.drain("node-1")
            await eventually(lambda: settled({"owner.crunch": []}), what="crunch off node-1")
            why = await client.ops.why("owner.crunch")
            assert why.placed == 0 and "pending" in why.note
            assert "liveness: node is draining (`motes drain`)" in why.vetoes()
            await client.ops.drain("node-1", drained=False)
            await eventually(lambda: settled({"owner.crunch": ["node-1"]}), what="crunch back")


async def test_a_gpu_mote_with_no_gpu_stays_pending_and_why_says_so(client: Mesh) -> None:
    digest = await client.deploy(APPS / "owner.py")  # returns: render is pending, not awaited
    assert not [i for i in await client.ops.ps() if i.mote == "render" and i.digest == digest]
    why = await client.ops.why("owner.render")
    assert why.desired == 1 and why.placed == 0
    assert "instance(s) pending" in why.note
    assert all(any(v.reason == "lacks a gpu" for v in n.verdicts) for n in why.nodes)
    assert await client.call("owner.crunch", 3) == 9  # the rest of the app runs


async def test_scale_from_zero_to_many_and_back_to_zero(client: Mesh) -> None:
    await client.deploy(APPS / "elastic.py")
    assert [i for i in await client.ops.ps() if i.mote == "work"] == []
    seen: list[int] = []
    results: Counter[str] = Counter()

    progressed = asyncio.Event()

    async def caller(worker: int) -> None:
        for i in range(60):
            try:
                assert await client.call("elastic.work", i, timeout=20) == i
                results["ok"] += 1
            except MotesError as exc:
                results[type(exc).__name__] += 1
            if sum(results.values()) % 10 == 0:
                progressed.set()

    async def watch() -> None:
        """How many instances are ready, looked at after every ten calls."""
        while True:
            await progressed.wait()
            progressed.clear()
            seen.append(
                len([i for i in await client.ops.ps() if i.mote == "work" and i.state == "ready"])
            )

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(*(caller(w) for w in range(6)))
    finally:
        watcher.cancel()
    assert results == Counter({"ok": 360}), results  # no call failed, cold start included
    assert max(seen) >= 2, f"never scaled out: {seen}"
    assert max(seen) <= 3  # max=3

    async def scaled_to_zero() -> bool:
        return not [i for i in await client.ops.ps() if i.mote == "work"]

    await eventually(scaled_to_zero, timeout=20, what="scale back to zero after idle")
    assert await client.call("elastic.work", 5) == 5  # and up again on demand


def write_version(path: Path, version: int) -> Path:
    path.write_text(
        f"""
import motes

app = motes.App("live")


@app.mote(min=2)
def version(x: int) -> int:
    return {version}


@app.actor
class Account:
    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, n: int) -> int:
        self.balance += n
        return self.balance
"""
    )
    return path


async def test_live_upgrade_and_rollback_under_steady_load(tmp_path: Path, client: Mesh) -> None:
    app_file = write_version(tmp_path / "live.py", 1)
    v1 = await client.deploy(app_file)
    outcomes: Counter[str] = Counter()
    versions: Counter[int] = Counter()
    deposits = 0
    stop = asyncio.Event()

    async def load() -> None:
        """Call after call, each waiting for the last one's answer: a steady load."""
        nonlocal deposits
        account = client.actor("live.Account", "acme")
        while not stop.is_set():
            try:
                versions[await client.call("live.version", 0, timeout=15)] += 1
                await account.deposit(1, timeout=15)
                deposits += 1
                outcomes["ok"] += 1
            except MotesError as exc:
                outcomes[type(exc).__name__] += 1

    async def served_by(version: int, count: int) -> bool:
        return versions[version] >= count

    runners = [asyncio.create_task(load()) for _ in range(4)]
    try:
        await eventually(lambda: served_by(1, 50), what="steady load on v1")
        v2 = await client.deploy(write_version(app_file, 2))
        assert v2 != v1
        await eventually(lambda: served_by(2, 50), what="v2 serving")

        async def v1_retired() -> bool:
            return not [i for i in await client.ops.ps() if i.digest == v1]

        await eventually(v1_retired, what="v1 instances drained and stopped")
        rolled = await client.apps.rollback("live")
        assert rolled == v1
        mark = versions[1]
        await eventually(lambda: served_by(1, mark + 50), what="v1 serving again")
    finally:
        stop.set()
        await asyncio.gather(*runners)
    assert set(outcomes) == {"ok"}, outcomes  # zero failed calls
    assert await client.actor("live.Account", "acme").deposit(0) == deposits  # none lost


async def test_a_lost_node_is_replaced_and_a_frozen_one_does_not_double_serve(
    client: Mesh, mesh: LocalMesh
) -> None:
    await client.deploy(APPS / "kit.py")
    names = await node_names(client)
    by_name = {v: k for k, v in names.items()}
    outcomes: Counter[str] = Counter()
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            try:
                assert await client.call("kit.echo", "x", timeout=10) == "x"
                outcomes["ok"] += 1
            except MotesError as exc:  # allowed: a typed error, never a hang
                outcomes[type(exc).__name__] += 1

    runners = [asyncio.create_task(load()) for _ in range(3)]
    try:
        victim, frozen = "node-3", "node-2"
        before = {
            i.iid for i in await client.ops.ps() if i.node in (by_name[victim], by_name[frozen])
        }
        await mesh.kill_node(victim)  # SIGKILL: the node and its workers die at once
        echo_elsewhere = lambda: _echo_count_without(client, by_name[victim], 3)  # noqa: E731
        await eventually(echo_elsewhere, what="echo back to 3 instances on live nodes")

        # Freeze another node (agent and workers) past the failure timeout, then wake it:
        # its instances were placed elsewhere meanwhile, so it must stop them, not serve.
        mesh.signal_node_group(frozen, signal.SIGSTOP)

        async def frozen_declared_lost() -> bool:
            try:
                why = await client.ops.why("kit.echo")
            except MotesError:  # the frozen node may have been the leader: wait for the next
                return False
            row = next(n for n in why.nodes if n.name == frozen)
            return row.placed == 0 and any(
                v.reason.startswith("node is lost") for v in row.verdicts
            )

        await eventually(frozen_declared_lost, what="the frozen node declared lost")
        mesh.signal_node_group(frozen, signal.SIGCONT)

        async def frozen_stopped() -> bool:
            insts = [i for i in await client.ops.ps() if i.mote == "echo"]
            return bool(insts) and all(i.node != by_name[frozen] for i in insts)

        await eventually(frozen_stopped, what="the woken node dropping its stale instances")
    finally:
        stop.set()
        await asyncio.gather(*runners)
    assert outcomes["ok"] > 0
    assert set(outcomes) <= {"ok", "CallTimeout", "NoInstance"}, outcomes
    # The dead node comes back with its old home and key: same id, nothing stale runs.
    await mesh.restart_node(victim)
    await mesh.wait_ready()
    assert by_name[victim] in await node_names(client)
    echo = [i for i in await client.ops.ps() if i.mote == "echo"]
    assert not [i for i in echo if i.iid in before], "an instance from before the kill runs again"
    assert len(echo) == (await client.ops.why("kit.echo")).placed  # exactly what is assigned
    assert await client.call("kit.echo", "back") == "back"


async def _echo_count_without(client: Mesh, node: str, n: int) -> bool:
    ready = [i for i in await client.ops.ps() if i.mote == "echo" and i.state == "ready"]
    return len(ready) >= n and all(i.node != node for i in ready)
