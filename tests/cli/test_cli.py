"""The `motes` command as a user types it: up --detach, deploy, call, ps, nodes, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORDCOUNT = ROOT / "examples" / "wordcount" / "app.py"


def motes(
    home: Path, *args: str, check: bool = True, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "motes.cli", "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MOTES_HEARTBEAT_S": "0.1", "MOTES_LEASE_TTL_S": "1.0"},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"motes {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split()[2] != "Z"


def descendants(pid: int) -> set[int]:
    """Every process whose ancestry leads to ``pid`` (read from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.fixture
def home(tmp_path: Path):
    home = tmp_path / "home"
    yield home
    if (home / "mesh.json").exists():  # a failed test must not leave a mesh running
        motes(home, "down", check=False)


def test_up_deploy_call_ps_down(home: Path) -> None:
    out = motes(home, "up", "--nodes", "3", "--detach", "--label", "node-2:role=worker").stdout
    assert "mesh up: 3 nodes" in out
    info = json.loads((home / "mesh.json").read_text())
    supervisor = info["supervisor_pid"]
    family = descendants(supervisor)
    assert {n["pid"] for n in info["nodes"]} <= family and info["server_pid"] in family

    nodes = json.loads(motes(home, "nodes", "--json").stdout)
    assert sorted(n["name"] for n in nodes) == ["node-1", "node-2", "node-3"]
    assert all(n["state"] == "ready" and n["pid"] > 0 for n in nodes)
    assert next(n for n in nodes if n["name"] == "node-2")["labels"] == {"role": "worker"}
    assert sum(n["leader"] for n in nodes) == 1
    assert all(len(n["id"]) == 13 for n in nodes)
    keys = list((home / "nodes").glob("node-*/node.key"))
    assert len(keys) == 3 and all(k.stat().st_mode & 0o777 == 0o600 for k in keys)

    assert "deployed wordcount" in motes(home, "deploy", str(WORDCOUNT)).stdout
    assert json.loads(motes(home, "call", "wordcount.count", '"a b a"').stdout) == {"a": 2, "b": 1}
    assert json.loads(motes(home, "call", "wordcount.Tally.add", "5", "--key", "carol").stdout) == 5
    assert json.loads(motes(home, "call", "wordcount.Tally.add", "2", "--key", "carol").stdout) == 7

    ps = motes(home, "ps").stdout
    count_rows = [line for line in ps.splitlines() if line.startswith("wordcount.count ")]
    assert len(count_rows) == 3 and all(" ready " in row for row in count_rows)
    assert {row.split()[3] for row in count_rows} == {"node-1", "node-2", "node-3"}
    assert "wordcount" in motes(home, "apps").stdout
    why = motes(home, "why", "wordcount.count").stdout
    assert "3 wanted, 3 placed" in why and "resources" in why and "labels" in why

    bad = motes(home, "call", "wordcount.count", "not json", check=False)
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    unknown = motes(home, "call", "wordcount.nope", '"x"', check=False)
    assert unknown.returncode == 2 and "unknown mote" in unknown.stderr
    remote = motes(home, "call", "wordcount.count", "3", check=False)
    assert remote.returncode == 2 and "Expected `str`, got `int`" in remote.stderr

    family = descendants(supervisor) | {supervisor}
    assert "stopped" in motes(home, "down").stdout
    assert not (home / "mesh.json").exists()
    assert not [pid for pid in family if alive(pid)], "processes left behind after `motes down`"
    assert "no mesh running" in motes(home, "down").stdout


def test_commands_without_a_mesh_say_so(home: Path) -> None:
    result = motes(home, "ps", check=False)
    assert result.returncode == 2
    assert "no mesh is running" in result.stderr and "motes up" in result.stderr


def test_label_must_name_a_node(home: Path) -> None:
    result = motes(home, "up", "--nodes", "2", "--label", "node-9:role=x", check=False)
    assert result.returncode == 2 and "node-9" in result.stderr


def test_foreground_up_stops_cleanly_on_ctrl_c(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "motes.cli", "--home", str(home), "up", "--nodes", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # wait for readiness from the command's own output
            lines.append(line)
            if "Ctrl-C stops the mesh" in line:
                break
        assert any("mesh up" in line for line in lines), "".join(lines)
        family = descendants(proc.pid)
        assert len(family) >= 3  # nats-server and two nodes (and their warm workers)
        proc.send_signal(2)  # SIGINT, as Ctrl-C in a terminal
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "mesh stopped" in out
        assert not [pid for pid in family if alive(pid)], "orphans after Ctrl-C"
        assert not (home / "mesh.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
