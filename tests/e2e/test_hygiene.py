"""What a mesh's processes show to anyone who can read /proc: no secret in any argv or
environment, settings passed as 0600 files, and workers (which host user code) with only
the allow-listed environment."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from motes._proc import ENV_ALLOWED
from motes.client import Mesh
from motes.node.localmesh import LocalMesh
from motes.wire import resources, subjects

from ..conftest import APPS


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat_line = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat_line.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def _read(pid: int, what: str) -> list[bytes]:
    try:
        return [p for p in (Path(f"/proc/{pid}") / what).read_bytes().split(b"\0") if p]
    except OSError:
        return []  # exited meanwhile


def _spellings(secret: bytes) -> list[bytes]:
    return [
        secret,
        secret.hex().encode(),
        base64.b64encode(secret),
        base64.urlsafe_b64encode(secret).rstrip(b"="),
        base64.b32encode(secret).rstrip(b"="),
    ]


async def test_no_secret_in_argv_or_environment_and_workers_get_only_the_allow_list(
    mesh: LocalMesh, client: Mesh
) -> None:
    await client.deploy(APPS / "kit.py")
    await client.store.put(b"something stored, so the convergence secret exists")
    entry = await (await client.bus.kv(resources.STORE)).get(subjects.CONVERGENCE_KEY)
    assert entry is not None and entry.value
    secrets = [entry.value] + [(n.home / "node.key").read_bytes() for n in mesh.nodes]
    forbidden = [s for secret in secrets for s in _spellings(secret)]
    forbidden += [b"node.key", b".creds", b"seed"]

    pids = _children(os.getpid())
    workers = [p for p in pids if any(b"motes.runtime.worker" in a for a in _read(p, "cmdline"))]
    assert len(workers) >= 3 + 3  # the kit's instances, and each node's warm worker
    kinds = {"nats-server": 0, "motes.node": 0, "motes.trust.authority": 0}
    for pid in pids:
        argv = _read(pid, "cmdline")
        environ = _read(pid, "environ")
        for kind in kinds:
            kinds[kind] += any(kind.encode() in a for a in argv)
        for blob in [*argv, *environ]:
            leaked = [f for f in forbidden if f in blob]
            assert not leaked, f"pid {pid}: {blob[:80]!r} shows a secret"
        for i, a in enumerate(argv[:-1]):
            if a == b"--config":  # settings travel as files only their owner reads
                mode = stat.S_IMODE(Path(argv[i + 1].decode()).stat().st_mode)
                assert mode == 0o600, f"pid {pid}: {argv[i + 1]!r} is mode {mode:o}"
    want = {"nats-server": 1, "motes.node": 3, "motes.trust.authority": 1}  # stores: in nodes
    assert kinds == want, kinds
    allowed = ENV_ALLOWED | {"PYTHONUNBUFFERED"}
    for pid in workers:
        names = {v.split(b"=", 1)[0].decode() for v in _read(pid, "environ")}
        assert names <= allowed, f"worker {pid} inherited {sorted(names - allowed)}"
