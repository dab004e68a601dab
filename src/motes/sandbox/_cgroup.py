"""A cgroup per confined run, where this machine lets us make one: the processes and
memory limits that rlimits cannot give (``RLIMIT_NPROC`` does not bind root, and
``RLIMIT_AS`` is virtual memory, not memory used).

cgroup v2 (a writable directory under our own cgroup with ``pids`` and ``memory``
enabled) or v1 (the ``pids`` and ``memory`` hierarchies, writable under our own path,
and ``cpuacct`` where it is mounted, for the CPU time a run used).
``Cgroup.make`` returns None where neither works; the caller then says the limit is
enforced by rlimits only. The child joins by writing ``0`` to ``cgroup.procs`` before it
execs (``join``), so every process it forks is counted from the first. A node agent
moves a running worker in instead (``adopt``): the memory budget of a ``run`` grant.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Cgroup"]

_ROOT = Path("/sys/fs/cgroup")


def _own_paths() -> dict[str, str]:
    """Controller (``""`` for v2) -> our cgroup's path, from ``/proc/self/cgroup``."""
    paths: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            paths[c] = path
    return paths


def _events(path: Path, key: str) -> int:
    """A counter from a ``*.events`` or ``memory.oom_control`` file (0 if absent)."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


@dataclass(slots=True)
class Cgroup:
    """The cgroup directories of one run (one for v2, one per controller for v1)."""

    pids: Path | None = None
    memory: Path | None = None
    cpuacct: Path | None = None
    """v1 only: v2 counts CPU time in every cgroup (``cpu.stat``)."""
    v2: bool = False
    dirs: list[Path] = field(default_factory=list)

    @classmethod
    def make(cls, procs: int | None, memory_mb: int) -> Cgroup | None:
        """A new group limited to ``procs`` processes (None: no bound) and ``memory_mb``."""
        name = f"motes-sbx-{os.getpid()}-{secrets.token_hex(4)}"
        own = _own_paths()
        group = cls._make_v2(own, name) or cls._make_v1(own, name)
        if group is None:
            return None
        try:
            group._limit(procs, memory_mb)
        except OSError:
            group.remove()
            return None
        return group

    @classmethod
    def _make_v2(cls, own: dict[str, str], name: str) -> Cgroup | None:
        if "" not in own or not (_ROOT / "cgroup.controllers").exists():
            return None
        path = _ROOT / own[""].lstrip("/") / name
        try:
            path.mkdir()
        except OSError:
            return None
        if not ((path / "pids.max").exists() and (path / "memory.max").exists()):
            with contextlib.suppress(OSError):
                path.rmdir()
            return None
        return cls(pids=path, memory=path, v2=True, dirs=[path])

    @classmethod
    def _make_v1(cls, own: dict[str, str], name: str) -> Cgroup | None:
        group = cls()
        for controller in ("pids", "memory", "cpuacct"):
            base = _ROOT / controller
            if controller not in own or not (base / "cgroup.procs").exists():
                continue
            path = base / own[controller].lstrip("/") / name
            try:
                path.mkdir()
            except OSError:
                continue
            group.dirs.append(path)
            setattr(group, controller, path)
        if group.pids is None and group.memory is None:
            group.remove()  # CPU accounting alone limits nothing
            return None
        return group

    def _limit(self, procs: int | None, memory_mb: int) -> None:
        if self.pids is not None and procs is not None:
            (self.pids / "pids.max").write_text(str(procs))
        if self.memory is not None:
            limit = str(memory_mb * 1024 * 1024)
            if self.v2:
                (self.memory / "memory.max").write_text(limit)
                with contextlib.suppress(OSError):
                    (self.memory / "memory.swap.max").write_text("0")
            else:
                (self.memory / "memory.limit_in_bytes").write_text(limit)
                with contextlib.suppress(OSError):  # no swap accounting: nothing to bound
                    (self.memory / "memory.memsw.limit_in_bytes").write_text(limit)

    @property
    def enforces(self) -> set[str]:
        return {n for n, p in (("processes", self.pids), ("memory", self.memory)) if p}

    def join(self) -> None:
        """Move the calling process here (run in the child, before exec)."""
        for d in self.dirs:
            fd = os.open(d / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)

    def adopt(self, pid: int) -> None:
        """Move a running process here (a node's worker, given its memory budget)."""
        for d in self.dirs:
            (d / "cgroup.procs").write_text(str(pid))

    def procs_hit(self) -> bool:
        """A fork was refused: the processes limit was reached."""
        return self.pids is not None and _events(self.pids / "pids.events", "max") > 0

    def oom_killed(self) -> bool:
        if self.memory is None:
            return False
        if self.v2:
            return _events(self.memory / "memory.events", "oom_kill") > 0
        return _events(self.memory / "memory.oom_control", "oom_kill") > 0

    def peak_mb(self) -> float:
        if self.memory is None:
            return 0.0
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        try:
            return int((self.memory / name).read_text()) / (1024 * 1024)
        except (OSError, ValueError):
            return 0.0

    def cpu_s(self) -> float:
        """CPU time (user + system) every process of the group has used; 0 if unknown."""
        try:
            if self.v2 and self.pids is not None:
                return _events(self.pids / "cpu.stat", "usage_usec") / 1e6
            if self.cpuacct is not None:
                return int((self.cpuacct / "cpuacct.usage").read_text()) / 1e9
        except (OSError, ValueError):
            pass
        return 0.0

    def pids_in(self) -> list[int]:
        out: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                out.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        return sorted(out)

    def kill_all(self) -> None:
        """SIGKILL every process still in the group (the whole tree, escaped or not)."""
        if self.v2 and self.pids is not None and (self.pids / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (self.pids / "cgroup.kill").write_text("1")
        for pid in self.pids_in():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, wait_s: float = 2.0) -> None:
        """Kill what is left and remove the directories (bounded wait for the kernel)."""
        deadline = time.monotonic() + wait_s
        while self.pids_in() and time.monotonic() < deadline:
            self.kill_all()
            time.sleep(0.005)
        for d in self.dirs:
            with contextlib.suppress(OSError):
                d.rmdir()
