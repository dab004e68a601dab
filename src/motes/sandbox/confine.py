"""Running a native program confined: bubblewrap, else Landlock, else a refusal.

``run_confined(argv, Confinement(...))`` runs one program and returns its exit status
and output, or raises a typed error:

- ``SandboxLimit`` when it hits a limit: the deadline (``timeout_s``), memory
  (``memory_mb``, by cgroup), processes (``procs``, by cgroup), output (``output_bytes``
  of stdout plus stderr) or file size (``file_mb``). The whole process tree is killed
  first (the PID namespace's init and, where there is one, every process of the cgroup).
- ``SandboxDenied`` when the view asked for is not allowed: a relative or ``..`` path,
  a system path, a node path that does not exist, or one that holds the node's own
  files (``hidden``: the motes home with its keys).
- ``SandboxUnavailable`` when nothing here can confine as asked (one line says why).
  A program is never run unconfined instead.

Under **bubblewrap** the program sees a read-only system (``/usr`` and the few ``/etc``
files the dynamic loader needs), a private ``/proc`` and ``/dev``, a private, bounded
``/tmp``, the declared paths and nothing else; every namespace is new (no network
unless ``net``: then the host's), it has no capabilities, a new session, and dies with
its parent. Its environment is only what is declared (plus ``PATH``, ``HOME``, ``LANG``).

Under **Landlock** (``_landlock``) the program sees the same trees, a fresh directory
as its ``/tmp`` (``TMPDIR``), no TCP (ABI >= 4; refused with ``net=False`` below that),
and its own process group and session. It shares the host's PID namespace and UDP: the
weaker fallback, named in ``Completed.backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import SandboxDenied, SandboxLimit, SandboxUnavailable
from ..wire.messages import Confinement, ExecResult
from . import _landlock
from ._cgroup import Cgroup

__all__ = ["Backend", "Completed", "backend", "run_confined"]

Backend = Literal["bwrap", "landlock"]
_MIB = 1024 * 1024
_SYSTEM_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
)
_NET_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl")
_RESERVED = ("/", "/usr", "/etc", "/proc", "/dev", "/sys", "/tmp", *_SYSTEM_TREES)
_RESERVED_TREES = ("/usr", "/proc", "/dev", "/sys", *_SYSTEM_TREES)
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
_MONITOR_S = 0.02
_CHUNK = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """A confined program that ran to its end (whatever its exit status)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    wall_s: float
    peak_mb: float
    """The cgroup's memory high-water mark (0 where there is no memory cgroup)."""
    cpu_s: float
    """CPU time of the whole process tree, by cgroup (0 where none counts it)."""
    backend: Backend
    enforced: frozenset[str]
    """Limits enforced beyond the deadline and output: ``memory``, ``processes``."""

    def result(self, node: str) -> ExecResult:
        """What a caller gets back: this run, on ``node``."""
        return ExecResult(
            returncode=self.returncode,
            stdout=self.stdout,
            stderr=self.stderr,
            node=node,
            wall_s=self.wall_s,
            cpu_s=self.cpu_s,
            peak_mb=self.peak_mb,
            backend=self.backend,
        )


@functools.cache
def _bwrap_probe() -> str:
    """ "" if bubblewrap runs here with every namespace, else why not."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    try:
        probe = subprocess.run(
            [exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap does not start: {exc}"
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip().splitlines()
        return f"bubblewrap cannot make namespaces here: {detail[-1] if detail else '?'}"
    return ""


def backend(prefer: Backend | Literal["auto"] = "auto", *, net: bool = False) -> Backend:
    """The backend that will confine a run here, or ``SandboxUnavailable`` saying why."""
    if prefer not in ("auto", "bwrap", "landlock"):
        raise SandboxUnavailable(f"no sandbox backend {prefer!r} (bwrap, landlock or auto)")
    why_not = _bwrap_probe()
    if prefer in ("auto", "bwrap") and not why_not:
        return "bwrap"
    if prefer == "bwrap":
        raise SandboxUnavailable(why_not)
    version = _landlock.abi()
    if version < 1:
        head = f"{why_not}; " if why_not else ""
        raise SandboxUnavailable(f"{head}the kernel has no Landlock")
    if not net and version < 4:
        raise SandboxUnavailable(
            f"{why_not}; Landlock ABI {version} cannot deny network (4 can: Linux 6.7)"
        )
    return "landlock"


def _inside(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _view(confine: Confinement, hidden: Sequence[str]) -> list[tuple[str, str, bool]]:
    """The declared paths as (node path, sandbox path, writable), checked."""
    hide = [os.path.realpath(h) for h in hidden if h]
    out: list[tuple[str, str, bool]] = []
    for mapping, writable in ((confine.files, False), (confine.writable, True)):
        for guest, host in mapping.items():
            if not guest.startswith("/") or os.path.normpath(guest) != guest or ".." in guest:
                raise SandboxDenied(guest, "a sandbox path must be absolute and normal (no ..)")
            if guest in _RESERVED or any(_inside(guest, t) for t in _RESERVED_TREES):
                raise SandboxDenied(guest, "it is a system path the sandbox provides itself")
            if not os.path.isabs(host):
                raise SandboxDenied(host, "a node path must be absolute")
            real = os.path.realpath(host)
            if not os.path.exists(real):
                raise SandboxDenied(host, "no such path on this node")
            for h in hide:
                if _inside(real, h) or _inside(h, real):
                    raise SandboxDenied(host, "it holds the node's own files (its keys)")
            out.append((real, guest, writable))
    return out


def _check_limits(confine: Confinement) -> None:
    """Every limit is a positive number (a caller on the wire may send anything)."""
    for name in ("timeout_s", "memory_mb", "procs", "output_bytes", "tmp_mb", "file_mb"):
        value = getattr(confine, name)
        if isinstance(value, bool) or not value > 0 or value != value or value == float("inf"):
            raise SandboxDenied(f"{name}={value!r}", "a limit must be a positive, finite number")


def _env(confine: Confinement, tmp: str) -> dict[str, str]:
    env = dict(_ENV)
    for key, value in confine.env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise SandboxDenied(f"env {key!r}", "not a valid environment variable")
        env[key] = value
    env["HOME"] = env["TMPDIR"] = tmp
    return env


def _bwrap_argv(
    argv: Sequence[str], confine: Confinement, view: list[tuple[str, str, bool]]
) -> list[str]:
    cmd = [
        shutil.which("bwrap") or "bwrap",
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]
    if confine.net:
        cmd.append("--share-net")
    for tree in _SYSTEM_TREES:
        if os.path.islink(tree):
            cmd += ["--symlink", os.readlink(tree), tree]
        elif os.path.isdir(tree):
            cmd += ["--ro-bind", tree, tree]
    for f in _SYSTEM_FILES + (_NET_FILES if confine.net else ()):
        cmd += ["--ro-bind-try", f, f]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    cmd += ["--size", str(confine.tmp_mb * _MIB), "--tmpfs", "/tmp"]
    for host, guest, writable in view:
        cmd += ["--bind" if writable else "--ro-bind", host, guest]
    cmd += ["--chdir", confine.cwd, "--clearenv"]
    for key, value in _env(confine, "/tmp").items():
        cmd += ["--setenv", key, value]
    return [*cmd, "--", *argv]


def _ruleset(
    confine: Confinement, view: list[tuple[str, str, bool]], tmp: str
) -> _landlock.Ruleset:
    rules = _landlock.Ruleset(_landlock.abi())
    for path in (*_SYSTEM_TREES, *_SYSTEM_FILES, "/dev/null", "/dev/urandom", "/dev/zero"):
        rules.paths[path] = _landlock.READ
    if confine.net:
        for path in _NET_FILES:
            rules.paths[path] = _landlock.READ
    for host, guest, writable in view:
        if host != guest:
            raise SandboxDenied(guest, "Landlock cannot move a path: declare it where it is")
        rules.paths[host] = _landlock.WRITE if writable else _landlock.READ
    rules.paths[tmp] = _landlock.WRITE
    return rules


def _preexec(
    confine: Confinement, group: Cgroup | None, rules: _landlock.Ruleset | None
) -> Callable[[], None]:
    fsize = confine.file_mb * _MIB
    memory = confine.memory_mb * _MIB

    def before_exec() -> None:  # in the child, between fork and exec
        if group is not None:
            group.join()
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        if group is None or group.memory is None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if rules is not None:
            rules.apply()

    return before_exec


class _Run:
    """One confined run: the process, its output, the first limit it hit."""

    def __init__(self, what: str, confine: Confinement, group: Cgroup | None) -> None:
        self.what = what
        self.confine = confine
        self.group = group
        self.proc: asyncio.subprocess.Process | None = None
        self.out = bytearray()
        self.err = bytearray()
        self.hit: SandboxLimit | None = None
        self.started = time.monotonic()

    def kill(self, hit: SandboxLimit | None) -> None:
        if hit is not None and self.hit is None:
            self.hit = hit
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its session: bwrap, or the program
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if self.group is not None:
            self.group.kill_all()

    def limit(self, name: str, used: float, allowed: float, unit: str) -> SandboxLimit:
        return SandboxLimit(self.what, name, used, allowed, unit)

    async def pump(self, stream: asyncio.StreamReader | None, buf: bytearray) -> None:
        if stream is None:
            return
        cap = self.confine.output_bytes
        while chunk := await stream.read(_CHUNK):
            total = len(self.out) + len(self.err) + len(chunk)
            if total > cap:
                buf += chunk[: max(cap - len(self.out) - len(self.err), 0)]
                self.kill(self.limit("output", total, cap, "bytes"))
                return
            buf += chunk

    async def feed(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.proc.stdin.write(data)
            await self.proc.stdin.drain()
        self.proc.stdin.close()

    async def watch(self) -> None:
        """Stop a fork bomb at its first refused fork, not at the deadline."""
        group = self.group
        if group is None or group.pids is None:
            return
        while True:
            await asyncio.sleep(_MONITOR_S)
            if group.procs_hit():
                procs = self.confine.procs
                self.kill(self.limit("processes", procs, procs, "processes"))
                return


async def run_confined(
    argv: Sequence[str],
    confine: Confinement,
    *,
    what: str = "",
    stdin: bytes = b"",
    prefer: Backend | Literal["auto"] = "auto",
    hidden: Sequence[str] = (),
) -> Completed:
    """Run ``argv`` confined as ``confine`` says; see the module docstring."""
    if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise SandboxDenied(repr(list(argv)), "argv must be a non-empty list of strings")
    what = what or os.path.basename(argv[0])
    _check_limits(confine)
    chosen = backend(prefer, net=confine.net)
    view = _view(confine, hidden)
    group = await asyncio.to_thread(Cgroup.make, confine.procs, confine.memory_mb)
    tmp = tempfile.mkdtemp(prefix="motes-sbx-") if chosen == "landlock" else ""
    run = _Run(what, confine, group)
    try:
        if chosen == "bwrap":
            cmd, env, rules, cwd = _bwrap_argv(argv, confine, view), None, None, None
        else:
            cmd, env, cwd = list(argv), _env(confine, tmp), tmp
            rules = _ruleset(confine, view, tmp)
        return await _run(run, cmd, env, cwd, stdin, _preexec(confine, group, rules), chosen)
    finally:
        if group is not None:
            await asyncio.to_thread(group.remove)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


async def _run(
    run: _Run,
    cmd: list[str],
    env: dict[str, str] | None,
    cwd: str | None,
    stdin: bytes,
    preexec: Callable[[], None],
    chosen: Backend,
) -> Completed:
    confine = run.confine
    try:
        proc = run.proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env if env is not None else {},
            cwd=cwd,
            preexec_fn=preexec,
            start_new_session=True,
            close_fds=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"{cmd[0]} did not start: {exc}") from None
    async with asyncio.TaskGroup() as tg:
        pumps = [tg.create_task(run.pump(proc.stdout, run.out))]
        pumps.append(tg.create_task(run.pump(proc.stderr, run.err)))
        if stdin:
            tg.create_task(run.feed(stdin))
        watcher = tg.create_task(run.watch())
        try:
            async with asyncio.timeout(confine.timeout_s):
                await proc.wait()
        except TimeoutError:
            took = time.monotonic() - run.started
            run.kill(run.limit("deadline", round(took, 3), confine.timeout_s, "s"))
            await proc.wait()
        run.kill(None)  # whatever it left behind (a daemon of its own) goes with it
        watcher.cancel()
        for pump in pumps:  # every writer is dead: the pipes reach EOF at once
            await pump
    return _outcome(run, proc.returncode, chosen)


def _outcome(run: _Run, code: int | None, chosen: Backend) -> Completed:
    group = run.group
    confine = run.confine
    peak = group.peak_mb() if group is not None else 0.0
    if run.hit is None and group is not None and group.oom_killed():
        run.hit = run.limit("memory", round(peak, 1), confine.memory_mb, "MiB")
    if run.hit is None and group is not None and group.procs_hit():
        run.hit = run.limit("processes", confine.procs, confine.procs, "processes")
    if run.hit is None and code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ):
        run.hit = run.limit("file size", confine.file_mb, confine.file_mb, "MiB")
    if run.hit is not None:
        raise run.hit
    return Completed(
        returncode=code if code is not None else -1,
        stdout=bytes(run.out),
        stderr=bytes(run.err),
        wall_s=time.monotonic() - run.started,
        peak_mb=peak,
        cpu_s=group.cpu_s() if group is not None else 0.0,
        backend=chosen,
        enforced=frozenset(group.enforces if group is not None else set()),
    )
